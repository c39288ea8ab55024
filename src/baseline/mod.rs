//! Checks of chained follow-on requests against what an agent normally does
//! ([`profile`]: declared and learned baselines, transitions, rates, hours)
//! and against where their values came from ([`taint`]). The verdicts fill
//! `context.baseline` and `context.taint` for policy; a score at the agent's
//! drift threshold quarantines it.

pub mod profile;
/// The taint ledger lives below the store, which keeps it; reachable here
/// as before.
pub use crate::taint;

pub use profile::LEARNED_SUFFIX;
