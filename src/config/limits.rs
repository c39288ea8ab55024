//! `[limits]`: sizes, counts and times that bound what one agent can take.

#[allow(unused_imports)]
use super::*;

/// Default limit on one JSON-RPC message (request body or stdio line).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Default cap on a relayed tool result: 4 MiB of JSON.
pub const DEFAULT_MAX_RESULT_BYTES: usize = 4 * 1024 * 1024;

/// Default limit on tool calls in flight per agent session.
pub const DEFAULT_MAX_CONCURRENT_CALLS: usize = 16;

/// Default per-call timeout when a manifest sets none.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Default time a downstream server has to start and answer `initialize`.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawLimits {
    pub(in crate::config) max_message_bytes: Option<Spanned<usize>>,
    pub(in crate::config) max_result_bytes: Option<Spanned<usize>>,
    pub(in crate::config) max_concurrent_calls_per_session: Option<Spanned<usize>>,
    pub(in crate::config) max_active_tasks_per_agent: Option<Spanned<usize>>,
    pub(in crate::config) max_pending_approvals_per_agent: Option<Spanned<usize>>,
    pub(in crate::config) max_sessions_per_agent: Option<Spanned<usize>>,
    pub(in crate::config) max_listen_streams_per_agent: Option<Spanned<usize>>,
    pub(in crate::config) max_delegation_depth: Option<Spanned<usize>>,
    #[serde(default, with = "source::duration::option")]
    pub(in crate::config) call_timeout: Option<Duration>,
    #[serde(default, with = "source::duration::option")]
    pub(in crate::config) startup_timeout: Option<Duration>,
    #[serde(default, with = "source::duration::option")]
    pub(in crate::config) instance_lease: Option<Duration>,
    #[serde(default, with = "source::duration::option")]
    pub(in crate::config) header_read_timeout: Option<Duration>,
    #[serde(default, with = "source::duration::option")]
    pub(in crate::config) body_read_timeout: Option<Duration>,
}

/// Resource limits with safe defaults.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message_bytes: usize,
    /// The largest tool result (serialized JSON) relayed from a downstream
    /// server; a larger one is refused with `downstream_result_too_large`.
    /// rmcp drops any single downstream message over 16 MiB before parsing.
    pub max_result_bytes: usize,
    pub max_concurrent_calls_per_session: usize,
    /// Active tasks one agent may hold at once.
    pub max_active_tasks_per_agent: usize,
    /// Approvals one agent may have pending at once.
    pub max_pending_approvals_per_agent: usize,
    /// How deep delegations may nest: 1, a task's agent may delegate and its
    /// child may not; 2, the child may delegate once more.
    pub max_delegation_depth: usize,
    /// Handshake-era sessions one agent may hold open on one process.
    pub max_sessions_per_agent: usize,
    /// 2026-07-28 `subscriptions/listen` streams one agent may hold open on
    /// one process.
    pub max_listen_streams_per_agent: usize,
    pub call_timeout: Duration,
    pub startup_timeout: Duration,
    /// How long a gateway process's lease lasts without renewal; when it
    /// lapses (the process crashed), another process on the store revokes
    /// the handshake-era sessions it served.
    pub instance_lease: Duration,
    /// How long an HTTP client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// How long an HTTP client may take to send a request's body.
    pub body_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_result_bytes: DEFAULT_MAX_RESULT_BYTES,
            max_concurrent_calls_per_session: DEFAULT_MAX_CONCURRENT_CALLS,
            max_active_tasks_per_agent: 64,
            max_pending_approvals_per_agent: 16,
            max_delegation_depth: 2,
            max_sessions_per_agent: 32,
            max_listen_streams_per_agent: 32,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            instance_lease: DEFAULT_INSTANCE_LEASE,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
        }
    }
}

/// Default lease of a gateway process in the store.
pub(in crate::config) const DEFAULT_INSTANCE_LEASE: Duration = Duration::from_secs(30);

pub(in crate::config) const MIN_INSTANCE_LEASE: Duration = Duration::from_secs(3);

pub(in crate::config) fn validate_limits(file: &SourceFile, raw: RawLimits) -> Result<Limits, SourceError> {
    let mut limits = Limits::default();
    if let Some(v) = raw.max_message_bytes {
        if *v.get_ref() < 1024 {
            return Err(file.error_at(Some(v.span()), "limits.max_message_bytes must be at least 1024"));
        }
        limits.max_message_bytes = *v.get_ref();
    }
    if let Some(v) = raw.max_result_bytes {
        if !(1024..=16 * 1024 * 1024).contains(v.get_ref()) {
            return Err(file.error_at(Some(v.span()), "limits.max_result_bytes must be between 1024 and 16777216 (16 MiB, the most any downstream message may carry)"));
        }
        limits.max_result_bytes = *v.get_ref();
    }
    if let Some(v) = raw.max_concurrent_calls_per_session {
        if *v.get_ref() == 0 {
            return Err(file.error_at(Some(v.span()), "limits.max_concurrent_calls_per_session must be at least 1"));
        }
        limits.max_concurrent_calls_per_session = *v.get_ref();
    }
    for (value, name, target) in [
        (raw.max_active_tasks_per_agent, "max_active_tasks_per_agent", &mut limits.max_active_tasks_per_agent),
        (raw.max_pending_approvals_per_agent, "max_pending_approvals_per_agent", &mut limits.max_pending_approvals_per_agent),
        (raw.max_sessions_per_agent, "max_sessions_per_agent", &mut limits.max_sessions_per_agent),
        (raw.max_listen_streams_per_agent, "max_listen_streams_per_agent", &mut limits.max_listen_streams_per_agent),
        (raw.max_delegation_depth, "max_delegation_depth", &mut limits.max_delegation_depth),
    ] {
        if name == "max_delegation_depth" && value.as_ref().is_some_and(|v| *v.get_ref() > 16) {
            return Err(file.error_at(value.as_ref().map(|v| v.span()), "limits.max_delegation_depth must be 1-16"));
        }
        if let Some(v) = value {
            if *v.get_ref() == 0 {
                return Err(file.error_at(Some(v.span()), format!("limits.{name} must be at least 1")));
            }
            *target = *v.get_ref();
        }
    }
    if let Some(d) = raw.call_timeout {
        limits.call_timeout = d;
    }
    if let Some(d) = raw.startup_timeout {
        limits.startup_timeout = d;
    }
    for (value, target) in [(raw.header_read_timeout, &mut limits.header_read_timeout), (raw.body_read_timeout, &mut limits.body_read_timeout)] {
        if let Some(d) = value {
            if d.is_zero() {
                return Err(file.error_at(None, "limits.header_read_timeout and limits.body_read_timeout must be above zero"));
            }
            *target = d;
        }
    }
    if let Some(d) = raw.instance_lease {
        if d < MIN_INSTANCE_LEASE {
            return Err(file.error_at(None, "limits.instance_lease must be at least 3s (leases are renewed every second)"));
        }
        limits.instance_lease = d;
    }
    Ok(limits)
}
