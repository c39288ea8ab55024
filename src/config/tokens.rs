//! `[tokens]`: capability tokens' lifetimes and what a downstream failure ends.

#[allow(unused_imports)]
use super::*;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawTokens {
    #[serde(default, with = "source::duration::option")]
    pub(in crate::config) default_ttl: Option<Duration>,
    #[serde(default, with = "source::duration::option")]
    pub(in crate::config) task_ttl: Option<Duration>,
    #[serde(default, with = "source::duration::option")]
    pub(in crate::config) max_task_ttl: Option<Duration>,
    pub(in crate::config) on_downstream_failure: Option<OnDownstreamFailure>,
}

/// What a failed downstream call (crash, timeout, protocol error) revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDownstreamFailure {
    /// The whole task: its live tokens die and it ends.
    RevokeTask,
    /// Only the token of the failed call (already consumed; recorded).
    RevokeToken,
}

/// Capability token and task lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct TokenSettings {
    /// Token TTL when neither the request nor the manifest asks for less.
    pub default_ttl: Duration,
    /// Task TTL when `jit_begin_task` gives none.
    pub task_ttl: Duration,
    /// Upper bound on any task's TTL.
    pub max_task_ttl: Duration,
    pub on_downstream_failure: OnDownstreamFailure,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            // A token is single-use and bound to exact arguments, so its
            // lifetime is not what limits it; it must outlast a model turn
            // (tens of seconds) and a person pasting it into a tool by hand.
            default_ttl: Duration::from_secs(5 * 60),
            task_ttl: Duration::from_secs(30 * 60),
            max_task_ttl: Duration::from_secs(8 * 3600),
            on_downstream_failure: OnDownstreamFailure::RevokeTask,
        }
    }
}
