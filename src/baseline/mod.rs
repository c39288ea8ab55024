//! Checks of chained follow-on requests against what an agent normally does
//! and against where their values came from. Today: taint tracking
//! ([`taint`]); its verdict fills `context.taint` for policy.

pub mod taint;
