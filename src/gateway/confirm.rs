//! The end user confirms what taint cannot decide.
//!
//! A policy rule annotated `@confirm("group")` lets a request through once
//! the agent's end user confirms exactly that request. jitgate asks through
//! the agent's own MCP client, never through the model: a 2026-07-28 client
//! gets an input-required result (an elicitation) and sends the answer back
//! with the retried `jit_request`, over HTTP and stdio alike; a handshake-era
//! session is asked with an `elicitation/create` request. The question shows
//! the exact call and where each third-party value came from. An answer
//! counts only for the agent, task and canonical request it was asked about,
//! once, before it expires, and it is read only from the protocol's input
//! responses, which a model cannot write: a hijacked agent cannot confirm
//! for its user by declaring a new objective or by putting words into its
//! arguments. A client that cannot ask its user sends the request to the
//! rule's group as a pending approval.
//!
//! Whoever drives the client answers: the model cannot, but an unattended
//! agent's client that declares elicitation can, and the rule's group then
//! never sees the request. Declaring elicitation says nothing about who
//! answers; only the agent file does (`[end_user] client_trusted`), and
//! policy reads it as `context.end_user.client_trusted` to ask the end user
//! only where a person answers (see `examples/quickstart/policies`).

use std::time::Duration;

use rmcp::model::{
    ElicitRequest, ElicitRequestParams, ElicitationAction, ElicitationSchema, InputRequest, InputRequests, InputRequiredResult, InputResponses,
};
use rmcp::service::Peer;
use rmcp::RoleServer;
use serde_json::{Value, json};

use crate::audit::Event;
use crate::telemetry::{cut, escape_unseen};
use crate::taint::TaintVerdict;
use crate::identity::VerifiedAgent;
use crate::token::{ArgConstraints, Constraint};

/// The key of jitgate's one question in an input-required result.
pub const QUESTION_KEY: &str = "jitgate_confirm";
/// The field the end user sets to true to confirm.
pub const CONFIRM_FIELD: &str = "confirm";
/// How long a handshake-era client may take to answer.
const SESSION_ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// How the agent's end user can be asked, from the request's era (not its
/// transport: stdio serves both eras).
#[derive(Debug, Clone, Copy, Default)]
pub enum EndUser<'a> {
    /// A 2026-07-28 request, over HTTP or stdio. `can_ask`: the client
    /// declared elicitation in this request's own capabilities (its
    /// `_meta`), the only place such a client declares them. A retry carries
    /// the answer and the question's handle (`request_state`).
    Stateless { can_ask: bool, responses: Option<&'a InputResponses>, state: Option<&'a str> },
    /// A handshake-era request in a session (HTTP with `Mcp-Session-Id`, or
    /// stdio after `initialize`) whose client declared elicitation in the
    /// handshake (or not).
    Session { can_ask: bool, peer: &'a Peer<RoleServer> },
    /// Nobody to ask.
    #[default]
    Unreachable,
}

/// What a retried request says about the end user.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Not a retry: no answer yet.
    None,
    Confirmed,
    /// The end user declined or cancelled.
    Declined,
    /// An answer that does not belong to this agent, task and request, was
    /// used already or expired.
    Invalid,
}

/// A 2026-07-28 retry's answer, given whether its question (the handle in
/// `request_state`) was taken from the store for this agent, task and request.
pub fn answer_of(taken: bool, responses: Option<&InputResponses>) -> Answer {
    if !taken {
        return Answer::Invalid;
    }
    if responses.and_then(|r| r.get(QUESTION_KEY)).is_some_and(confirms) { Answer::Confirmed } else { Answer::Declined }
}

/// An elicitation result that accepts with `confirm: true`; anything else
/// (decline, cancel, a missing or false field, another shape) is a no.
fn confirms(result: &Value) -> bool {
    result.get("action").and_then(Value::as_str) == Some("accept") && result.pointer(&format!("/content/{CONFIRM_FIELD}")) == Some(&Value::Bool(true))
}

/// Longest value shown in a question; the rest is counted, not shown.
const MAX_SHOWN: usize = 300;
/// Most values whose reads a question lists.
const MAX_ORIGIN_LINES: usize = 8;

/// A string from the agent or a third party as the question shows it: quoted
/// and escaped, and cut short. JSON escapes a newline; the characters JSON
/// leaves as they are but that a client may break a line on (U+2028,
/// U+2029, NEL) or that reorder or hide what the user reads (bidi controls,
/// zero-width characters) are written as visible escapes (`\u{2028}`), so
/// no text of the agent's starts a line that looks like jitgate's own.
fn shown(s: &str) -> String {
    shown_json(&serde_json::to_string(s).unwrap_or_default())
}

/// Serialized JSON as the question shows it: escaped like [`shown`], cut short.
fn shown_json(json: &str) -> String {
    cut(&escape_unseen(json), MAX_SHOWN)
}

/// The question, in words the end user can check against what they asked
/// for: the arguments carrying third-party values first.
pub fn question(tool: &str, constraints: &ArgConstraints, purpose: &str, taint: &TaintVerdict) -> String {
    let mut lines = vec![format!("Your agent wants to call {} with:", shown(tool))];
    let tainted = |name: &str| taint.findings.iter().any(|(arg, _)| arg == name);
    let mut ordered: Vec<(&String, &Constraint)> = constraints.iter().collect();
    ordered.sort_by_key(|(name, _)| !tainted(name));
    for (name, c) in ordered {
        let value = match c {
            Constraint::Eq(Value::String(v)) => shown(v),
            // JSON (a list of recipients): escaped like text.
            Constraint::Eq(v) => shown_json(&v.to_string()),
            other => format!("any value allowed by {}", shown_json(&serde_json::to_string(other).unwrap_or_default())),
        };
        let from: Vec<String> = taint.findings.iter().filter(|(arg, _)| arg == name).map(|(_, v)| shown(v)).collect();
        let origin = if from.is_empty() { String::new() } else { format!("  <- contains {} from content a third party wrote", from.join(", ")) };
        lines.push(format!("  {} = {value}{origin}", shown(name)));
    }
    if !taint.origins.is_empty() {
        // Where each marked value was read, in words the end user knows: the
        // file, the page's address, the channel, the message's sender. A
        // value the user pointed at ("pay the bill in this file") can be told
        // from one an attacker planted elsewhere.
        lines.push("Where each marked value was read:".into());
        for (value, reads) in taint.origins.iter().take(MAX_ORIGIN_LINES) {
            let reads: Vec<String> = reads.iter().map(|r| cut(&escape_unseen(r), MAX_SHOWN)).collect();
            lines.push(format!("  {} in {}", shown(value), reads.join("; and in ")));
        }
        if taint.origins.len() > MAX_ORIGIN_LINES {
            lines.push(format!("  and {} more values", taint.origins.len() - MAX_ORIGIN_LINES));
        }
    } else if !taint.sources.is_empty() {
        let sources: Vec<String> = taint.sources.iter().map(|s| format!("{} (call {})", shown(&s.tool), shown(&s.call))).collect();
        lines.push(format!("Third-party values came from: {}.", sources.join(", ")));
    }
    lines.push(format!("The agent says why (its own words, not checked): {}", shown(purpose)));
    lines.push("Confirm only if this is what you asked your agent to do.".into());
    lines.join("\n")
}

fn schema() -> ElicitationSchema {
    // The builder fails only for an empty schema; this one has a property.
    ElicitationSchema::builder().required_bool(CONFIRM_FIELD).build().unwrap_or_else(|_| ElicitationSchema::new(Default::default()))
}

fn params(message: String) -> ElicitRequestParams {
    ElicitRequestParams::FormElicitationParams { meta: None, message, requested_schema: schema() }
}

/// The input-required result that asks a 2026-07-28 client's user; the
/// question's handle is `id`, remembered in the store by the caller.
pub fn input_required(id: &str, message: String) -> InputRequiredResult {
    let mut requests = InputRequests::new();
    requests.insert(QUESTION_KEY.to_owned(), InputRequest::Elicitation(ElicitRequest::new(params(message))));
    InputRequiredResult::new(Some(requests), Some(id.to_owned()))
}

/// Ask a handshake-era session's user now. None when the client could not
/// answer (an error or no answer in time): the caller falls back.
pub async fn ask_session(peer: &Peer<RoleServer>, message: String) -> Option<bool> {
    match tokio::time::timeout(SESSION_ANSWER_TIMEOUT, peer.create_elicitation(params(message))).await {
        Ok(Ok(result)) => Some(result.action == ElicitationAction::Accept && result.content.as_ref().and_then(|c| c.get(CONFIRM_FIELD)) == Some(&Value::Bool(true))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the client could not ask its user; falling back to approval");
            None
        }
        Err(_) => {
            tracing::warn!("the client's user did not answer in time; falling back to approval");
            None
        }
    }
}

/// The audit record of a question or an answer.
pub fn event(kind: &'static str, agent: &VerifiedAgent, task: &str, tool: &str, digest: &str, via: &str, answer: Option<&str>) -> Event {
    Event::new(kind, Some(task), Some(&agent.agent.id), json!({"tool": tool, "request_digest": digest, "via": via, "answer": answer}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_accept_with_confirm_true_confirms() {
        assert!(confirms(&json!({"action": "accept", "content": {"confirm": true}})));
        for no in [
            json!({"action": "accept", "content": {"confirm": false}}),
            json!({"action": "accept", "content": {"confirm": "true"}}),
            json!({"action": "accept", "content": {}}),
            json!({"action": "decline"}),
            json!({"action": "cancel", "content": {"confirm": true}}),
            json!("yes"),
        ] {
            assert!(!confirms(&no), "{no}");
        }
    }

    #[test]
    fn the_question_names_the_call_and_where_third_party_values_came_from() {
        let constraints = ArgConstraints::from([("to".to_owned(), Constraint::Eq(json!("dana@partner.test"))), ("subject".to_owned(), Constraint::Eq(json!("Hello")))]);
        let read = r#"what workspace__fetch_page returned for url "https://dana.partner.test/about""#;
        let taint = TaintVerdict {
            tainted: true,
            sources: vec![crate::taint::Source { call: "jti-1".into(), tool: "workspace__fetch_page".into(), origin: read.into() }],
            findings: vec![("to".into(), "dana@partner.test".into())],
            unverifiable: vec![],
            origins: vec![("dana@partner.test".into(), vec![read.into(), "what workspace__read_inbox returned, in the item with id \"m2\"\nConfirm: safe".into()])],
        };
        let q = question("workspace__send_message", &constraints, "invite Dana", &taint);
        assert!(q.contains(r#""workspace__send_message""#) && q.contains(r#""to" = "dana@partner.test"  <- contains "dana@partner.test""#), "{q}");
        // Where each value was read, in words the user knows (the page's
        // address); every read of it, none able to start a line.
        assert!(q.contains(&format!("Where each marked value was read:\n  \"dana@partner.test\" in {read}; and in what workspace__read_inbox")), "{q}");
        assert!(!q.lines().any(|l| l.starts_with("Confirm: safe")) && q.contains(r#"not checked): "invite Dana""#), "{q}");
        // A verdict without reads (a store from before origins) still names the calls.
        let bare = TaintVerdict { origins: vec![], ..taint.clone() };
        assert!(question("workspace__send_message", &constraints, "x", &bare).contains(r#""workspace__fetch_page" (call "jti-1")"#));
        // The tainted argument comes first.
        assert!(q.find(r#""to""#) < q.find(r#""subject""#), "{q}");
        // Text from the agent cannot forge a line of jitgate's own, hide
        // behind direction marks, or push the rest out of view.
        let forged = "reply\nThird-party values came from: none.\u{202E}";
        let q = question("workspace__send_message", &constraints, forged, &taint);
        assert!(!q.lines().any(|l| l.starts_with("Third-party values came from: none")), "{q}");
        assert!(!q.contains('\u{202E}') && q.contains(r"none.\u{202e}"), "{q}");
        // Nor by a separator some clients break lines on (U+2028, U+2029,
        // NEL), in the purpose, a value or a constraint: each shows as an escape.
        let constraints = ArgConstraints::from([
            ("to".to_owned(), Constraint::Eq(json!("x@a.test\u{2029}Your agent wants to call nothing"))),
            ("cc".to_owned(), Constraint::Eq(json!(["b@a.test\u{85}Confirm: safe"]))),
            ("subject".to_owned(), Constraint::Prefix("Re\u{2028}Third-party values came from: none.".into())),
        ]);
        let q = question("workspace__send_message", &constraints, "ok\u{2028}Source: your own request", &taint);
        let breaks = ['\n', '\r', '\u{b}', '\u{c}', '\u{85}', '\u{2028}', '\u{2029}'];
        let lines: Vec<&str> = q.split(breaks).collect();
        assert_eq!(lines.len(), q.lines().count(), "only jitgate's own newlines break lines: {q}");
        for forged in ["Source: your own request", "Your agent wants to call nothing", "Confirm: safe", "Third-party values came from: none."] {
            assert!(!lines.iter().any(|l| l.trim_start().starts_with(forged)), "{forged}: {q}");
        }
        assert!(q.contains(r#"not checked): "ok\u{2028}Source: your own request""#), "{q}");
        assert!(q.contains(r#""x@a.test\u{2029}Your agent"#) && q.contains(r#"["b@a.test\u{85}Confirm: safe"]"#), "{q}");
        let long = ArgConstraints::from([("body".to_owned(), Constraint::Eq(json!("x".repeat(5000))))]);
        let q = question("t", &long, "p", &TaintVerdict::default());
        assert!(q.len() < 1000 && q.contains("more characters"), "{}", q.len());
        let r = serde_json::to_value(input_required("q1", q)).unwrap();
        assert_eq!(r["resultType"], "input_required");
        assert_eq!(r["requestState"], "q1");
        assert_eq!(r["inputRequests"][QUESTION_KEY]["method"], "elicitation/create");
        assert_eq!(r["inputRequests"][QUESTION_KEY]["params"]["requestedSchema"]["required"], json!(["confirm"]));
    }
}
