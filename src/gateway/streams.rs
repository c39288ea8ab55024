//! Open `subscriptions/listen` streams, counted per agent.
//!
//! A 2026-07-28 stream holds a request, a task and a subscription to the
//! tool set open for as long as the credential that opened it lasts, so
//! without a bound one agent could hold any number of them. They are bounded
//! per agent on this process (`limits.max_listen_streams_per_agent`), as
//! handshake-era sessions are (`limits.max_sessions_per_agent`). A stream's
//! place is given back when it ends, however it ends: the guard lives in
//! the stream's own future, which is dropped when the stream closes.

use std::collections::HashMap;
use std::sync::Mutex;

/// The open streams of every agent on this process.
#[derive(Debug, Default)]
pub struct ListenStreams {
    open: Mutex<HashMap<String, usize>>,
}

/// One open stream's place; given back when dropped.
#[derive(Debug)]
pub struct StreamPlace<'a> {
    streams: &'a ListenStreams,
    agent: String,
}

impl ListenStreams {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for one more stream of `agent`, or None when it holds `max`.
    pub fn open(&self, agent: &str, max: usize) -> Option<StreamPlace<'_>> {
        let mut open = self.lock();
        let n = open.get(agent).copied().unwrap_or(0);
        if n >= max {
            return None;
        }
        open.insert(agent.to_owned(), n + 1);
        Some(StreamPlace { streams: self, agent: agent.to_owned() })
    }

    /// How many streams `agent` holds open.
    pub fn held_by(&self, agent: &str) -> usize {
        self.lock().get(agent).copied().unwrap_or(0)
    }
}

impl Drop for StreamPlace<'_> {
    fn drop(&mut self) {
        let mut open = self.streams.lock();
        if let Some(n) = open.get_mut(&self.agent) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.agent);
            }
        }
    }
}

/// The refusal of a stream over the bound, for the agent: what the bound is
/// and what to do.
pub fn too_many_streams(max: usize) -> rmcp::ErrorData {
    rmcp::ErrorData::new(
        rmcp::model::ErrorCode::INVALID_REQUEST,
        format!(
            "this agent already holds {max} subscriptions/listen streams on this gateway (limits.max_listen_streams_per_agent); \
             close streams it no longer reads (cancel their requests) before opening another: one stream carries every tool list change"
        ),
        Some(serde_json::json!({ "code": "too_many_listen_streams", "max": max })),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_bounded_per_agent_and_given_back_when_they_close() {
        let streams = ListenStreams::default();
        let mut held: Vec<StreamPlace<'_>> = (0..32).map(|_| streams.open("a", 32).unwrap()).collect();
        assert!(streams.open("a", 32).is_none(), "the 33rd stream of one agent is refused");
        // Another agent is not held up by the first.
        let b = streams.open("b", 32).unwrap();
        assert_eq!((streams.held_by("a"), streams.held_by("b")), (32, 1));
        // A stream that closes gives its place back.
        held.pop();
        let again = streams.open("a", 32);
        assert!(again.is_some());
        assert!(streams.open("a", 32).is_none());
        drop((held, again, b));
        assert_eq!((streams.held_by("a"), streams.held_by("b")), (0, 0));
        assert!(streams.lock().is_empty(), "nothing kept for agents without streams");
    }

    #[test]
    fn the_refusal_names_the_limit_and_what_to_do() {
        let e = too_many_streams(32);
        assert!(e.message.contains("32 subscriptions/listen streams") && e.message.contains("limits.max_listen_streams_per_agent"), "{}", e.message);
        assert!(e.message.contains("close streams"), "{}", e.message);
        assert_eq!(e.data.unwrap()["code"], "too_many_listen_streams");
    }
}
