//! End-to-end: per-call intent, single-use capability tokens, phases and
//! provable revocation, through the real gateway and example server.
//! Each attack is refused next to the legitimate call working.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;


fn inspect(dep: &Deployment, token: &str) -> serde_json::Value {
    let (code, out, err) = jitgate(&["token", "inspect", token, "--json", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    serde_json::from_str(&out).unwrap()
}

const PLAN: &str = r#"[{"name": "read", "tools": ["workspace__read_inbox", "workspace__read_note"]}, {"name": "reply", "tools": ["workspace__send_message"]}]"#;

fn plan() -> serde_json::Value {
    serde_json::from_str(PLAN).unwrap()
}

#[tokio::test]
async fn a_full_task_works_phase_by_phase_and_nothing_works_after_its_end() {
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let triage = gw.connect(&dep.mint("triage")).await;
    let names: Vec<String> = triage.peer().list_all_tools().await.unwrap().into_iter().map(|t| t.name.to_string()).collect();
    for meta in ["jit_begin_task", "jit_request", "jit_next_phase", "jit_end_task"] {
        assert!(names.contains(&meta.to_owned()), "{names:?}");
    }

    // Without a token nothing is forwarded.
    let r = raw_call(&triage, "workspace__read_note", json!({"name": "q3-plan.md"})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("capability_required"));
    assert!(text_of(&r).contains("jit_begin_task") && text_of(&r).contains("jit_request") && text_of(&r).contains("jit_call"), "the whole way to a token: {}", text_of(&r));

    let task = begin(&triage, plan()).await.unwrap();
    let read = request(&triage, &task, "workspace__read_note", json!({"name": "q3-plan.md"})).await.unwrap();
    // A send is not in the current phase's plan; the denial says where it is planned.
    let denied = request(&triage, &task, "workspace__send_message", json!({"to": "alice@example.org", "subject": "Q3", "body": "x"})).await.unwrap_err();
    assert!(text_of(&denied).contains("phase-plan") && text_of(&denied).contains("phase `reply`"), "{}", text_of(&denied));

    let r = call_with_token(&triage, "workspace__read_note", json!({"name": "q3-plan.md"}), &read).await.unwrap();
    assert!(text_of(&r).contains("Ship the billing export"), "{}", text_of(&r));
    // Replay of the consumed token.
    let r = call_with_token(&triage, "workspace__read_note", json!({"name": "q3-plan.md"}), &read).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("token_replayed"));

    // A token of the read phase that is never used dies with the phase.
    let unused = request(&triage, &task, "workspace__read_inbox", json!({})).await.unwrap();
    // Skipping and going back are refused.
    let r = raw_call(&triage, "jit_next_phase", json!({"task": task, "phase": "read"})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("phase_order"));
    let r = raw_call(&triage, "jit_next_phase", json!({"task": task, "phase": "reply"})).await.unwrap();
    assert_eq!(r.is_error, Some(false), "{}", text_of(&r));
    let r = call_with_token(&triage, "workspace__read_inbox", json!({}), &unused).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("token_revoked"), "{}", text_of(&r));
    assert_eq!(inspect(&dep, &unused)["reason"], "phase 1 ended");

    let send_args = json!({"to": "alice@example.org", "subject": "Q3", "body": "Summary: billing export, 2h response."});
    let send = request(&triage, &task, "workspace__send_message", send_args.clone()).await.unwrap();
    let spare = request(&triage, &task, "workspace__send_message", send_args.clone()).await.unwrap();
    let r = call_with_token(&triage, "workspace__send_message", send_args.clone(), &send).await.unwrap();
    assert_eq!(r.is_error, Some(false), "{}", text_of(&r));
    let r = raw_call(&triage, "jit_end_task", json!({"task": task, "outcome": "done"})).await.unwrap();
    assert_eq!(r.is_error, Some(false));

    // After the end: the unused token is dead, no new token, no phase change.
    let r = call_with_token(&triage, "workspace__send_message", send_args.clone(), &spare).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("token_revoked"), "{}", text_of(&r));
    assert_eq!(inspect(&dep, &spare)["reason"], "task ended: done");
    let r = request(&triage, &task, "workspace__send_message", send_args).await.unwrap_err();
    assert_eq!(refusal_code(&r).as_deref(), Some("task_inactive"));
    let outbox = std::fs::read_to_string(dep.workspace_state.join("outbox.jsonl")).unwrap();
    assert_eq!(outbox.lines().count(), 1, "exactly one message was sent: {outbox}");
}

#[tokio::test]
async fn a_token_is_bound_to_its_tool_arguments_session_and_agent() {
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let triage_token = dep.mint("triage");
    let triage = gw.connect(&triage_token).await;
    let task = begin(&triage, plan()).await.unwrap();
    let tok = |args: serde_json::Value| {
        let (triage, task) = (&triage, task.clone());
        async move { request(triage, &task, "workspace__read_note", args).await.unwrap() }
    };

    // Another tool with a read_note token.
    let t = tok(json!({"name": "q3-plan.md"})).await;
    let r = call_with_token(&triage, "workspace__read_inbox", json!({}), &t).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("token_wrong_tool"));
    // Other arguments (the sensitive note instead of the plan).
    let t = tok(json!({"name": "q3-plan.md"})).await;
    let r = call_with_token(&triage, "workspace__read_note", json!({"name": "customer-acme.md"}), &t).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("arguments_not_authorized"));
    // The same agent in another session.
    let t = tok(json!({"name": "q3-plan.md"})).await;
    let other_session = gw.connect(&triage_token).await;
    let r = call_with_token(&other_session, "workspace__read_note", json!({"name": "q3-plan.md"}), &t).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("token_wrong_session"));
    // Another agent (its own session) with a stolen token.
    let t = tok(json!({"name": "q3-plan.md"})).await;
    let janitor = gw.connect(&dep.mint("janitor")).await;
    let r = call_with_token(&janitor, "workspace__read_note", json!({"name": "q3-plan.md"}), &t).await.unwrap();
    assert!(matches!(refusal_code(&r).as_deref(), Some("token_wrong_session" | "token_wrong_agent")), "{}", text_of(&r));
    // Another agent cannot even see the task.
    let r = request(&janitor, &task, "workspace__read_note", json!({"name": "q3-plan.md"})).await.unwrap_err();
    assert_eq!(refusal_code(&r).as_deref(), Some("task_not_found"));

    // The token carried in _meta works too, and the original holder can still use a fresh one.
    let t = tok(json!({"name": "q3-plan.md"})).await;
    let mut meta = serde_json::Map::new();
    meta.insert("jitgate/capability".into(), t.clone().into());
    let mut params = rmcp::model::CallToolRequestParams::new("workspace__read_note").with_arguments(args(json!({"name": "q3-plan.md"})));
    params.meta = Some(rmcp::model::RequestMetaObject(rmcp::model::MetaObject(meta)));
    let r = triage.peer().call_tool(params).await.unwrap();
    assert!(text_of(&r).contains("Q3 plan"), "{}", text_of(&r));
}

#[tokio::test]
async fn thirty_two_concurrent_uses_of_one_token_forward_exactly_once() {
    let dep = Deployment::new(&Setup { limits: "max_concurrent_calls_per_session = 64".into(), ..Setup::default() });
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let janitor = std::sync::Arc::new(gw.connect(&dep.mint("janitor")).await);
    let task = begin(&janitor, json!([{"name": "p", "tools": ["workspace__send_message"]}])).await.unwrap();
    let send = json!({"to": "alice@example.org", "subject": "once", "body": "only once"});
    let token = request(&janitor, &task, "workspace__send_message", send.clone()).await.unwrap();
    let calls: Vec<_> = (0..32)
        .map(|_| {
            let (c, t, a) = (janitor.clone(), token.clone(), send.clone());
            tokio::spawn(async move { call_with_token(&c, "workspace__send_message", a, &t).await.unwrap() })
        })
        .collect();
    let mut ok = 0;
    for c in calls {
        let r = c.await.unwrap();
        if r.is_error == Some(false) {
            ok += 1;
        } else {
            assert_eq!(refusal_code(&r).as_deref(), Some("token_replayed"), "{}", text_of(&r));
        }
    }
    assert_eq!(ok, 1);
    let outbox = std::fs::read_to_string(dep.workspace_state.join("outbox.jsonl")).unwrap();
    assert_eq!(outbox.lines().count(), 1);
}

#[tokio::test]
async fn operator_revocation_refuses_tokens_and_cancels_in_flight_calls() {
    let dep = Deployment::new(&Setup::default());
    dep.add_faulty_server(|m| m.replace("call_timeout = \"30s\"", "call_timeout = \"120s\""));
    let gw = Gateway::start(&dep);
    gw.wait_server("faulty", "ready").await;
    let tester = std::sync::Arc::new(gw.connect(&dep.mint("tester")).await);
    let cfg = dep.config.to_str().unwrap().to_owned();

    // --token
    let task = begin(&tester, json!([{"name": "p", "tools": ["faulty__read_note", "faulty__fault_hang"]}])).await.unwrap();
    let t1 = request(&tester, &task, "faulty__read_note", json!({"name": "welcome.md"})).await.unwrap();
    let jti = inspect(&dep, &t1)["claims"]["jti"].as_str().unwrap().to_owned();
    let (code, _, err) = jitgate(&["revoke", "--config", &cfg, "--token", &jti, "--reason", "suspicious"]);
    assert_eq!(code, Some(0), "{err}");
    let r = call_with_token(&tester, "faulty__read_note", json!({"name": "welcome.md"}), &t1).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("token_revoked"));
    assert!(text_of(&r).contains("operator: suspicious"), "{}", text_of(&r));
    let ok = request(&tester, &task, "faulty__read_note", json!({"name": "welcome.md"})).await.unwrap();
    assert!(text_of(&call_with_token(&tester, "faulty__read_note", json!({"name": "welcome.md"}), &ok).await.unwrap()).contains("Welcome"));

    // --task while a call of the task hangs downstream: the call is cancelled.
    let hang = request(&tester, &task, "faulty__fault_hang", json!({})).await.unwrap();
    let spare = request(&tester, &task, "faulty__read_note", json!({"name": "welcome.md"})).await.unwrap();
    let in_flight = {
        let t = tester.clone();
        tokio::spawn(async move { call_with_token(&t, "faulty__fault_hang", json!({}), &hang).await.unwrap() })
    };
    // Revoke only once the call is running downstream (the gateway's debug log says so).
    eventually(Duration::from_secs(30), || {
        let forwarding = gw.log().lines().any(|l| l.contains("faulty__fault_hang") && l.contains("forwarding"));
        async move { forwarding.then_some(()) }
    })
    .await;
    let (code, _, err) = jitgate(&["revoke", "--config", &cfg, "--task", &task]);
    assert_eq!(code, Some(0), "{err}");
    let r = tokio::time::timeout(Duration::from_secs(20), in_flight).await.expect("in-flight call must be cancelled").unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("cancelled"), "{}", text_of(&r));
    // The trace shows the revocation once, with the call the gateway cut off.
    let tree = eventually(Duration::from_secs(10), || {
        let (_, tree, _) = jitgate(&["trace", &task, "--config", &cfg]);
        async move { tree.contains("1 call(s) cancelled").then_some(tree) }
    })
    .await;
    assert_eq!(tree.matches("revoked (task)").count(), 1, "{tree}");
    let r = call_with_token(&tester, "faulty__read_note", json!({"name": "welcome.md"}), &spare).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("token_revoked"));
    assert_eq!(refusal_code(&request(&tester, &task, "faulty__read_note", json!({"name": "welcome.md"})).await.unwrap_err()).as_deref(), Some("task_inactive"));

    // --agent: every task and token of the agent.
    let task2 = begin(&tester, json!([{"name": "p", "tools": ["faulty__read_note"]}])).await.unwrap();
    let t2 = request(&tester, &task2, "faulty__read_note", json!({"name": "welcome.md"})).await.unwrap();
    let (code, _, err) = jitgate(&["revoke", "--config", &cfg, "--agent", "tester"]);
    assert_eq!(code, Some(0), "{err}");
    let r = call_with_token(&tester, "faulty__read_note", json!({"name": "welcome.md"}), &t2).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("token_revoked"));
    // Revocation ends held authority; the agent can still start a new task.
    let r = call(&tester, "faulty__read_note", json!({"name": "welcome.md"})).await.unwrap();
    assert!(text_of(&r).contains("Welcome"), "{}", text_of(&r));
}

#[tokio::test]
async fn downstream_failure_and_session_end_revoke_what_the_task_holds() {
    let dep = Deployment::new(&Setup::default());
    dep.add_faulty_server(|m| m);
    let gw = Gateway::start(&dep);
    gw.wait_server("faulty", "ready").await;
    let tester = gw.connect(&dep.mint("tester")).await;
    let task = begin(&tester, json!([{"name": "p", "tools": ["faulty__fault_crash", "faulty__read_note"]}])).await.unwrap();
    let crash = request(&tester, &task, "faulty__fault_crash", json!({})).await.unwrap();
    let after = request(&tester, &task, "faulty__read_note", json!({"name": "welcome.md"})).await.unwrap();
    let r = call_with_token(&tester, "faulty__fault_crash", json!({}), &crash).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("downstream_crashed"));
    let state = inspect(&dep, &after);
    assert_eq!(state["state"], "revoked");
    assert_eq!(state["reason"], "downstream failure: downstream_crashed");

    // Session end: the client disconnects; its tokens die with the session.
    gw.wait_server("faulty", "ready").await;
    let task = begin(&tester, json!([{"name": "p", "tools": ["faulty__read_note"]}])).await.unwrap();
    let held = request(&tester, &task, "faulty__read_note", json!({"name": "welcome.md"})).await.unwrap();
    tester.cancel().await.unwrap();
    let state = eventually(Duration::from_secs(20), || {
        let s = inspect(&dep, &held);
        async move { (s["state"] == "revoked").then_some(s) }
    })
    .await;
    assert_eq!(state["reason"], "session ended");
}

#[tokio::test]
async fn restart_keeps_consumed_and_revoked_tokens_dead_and_rotation_keeps_old_tokens_valid() {
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let triage = gw.connect(&dep.mint("triage")).await;
    let task = begin(&triage, plan()).await.unwrap();
    let used = request(&triage, &task, "workspace__read_note", json!({"name": "q3-plan.md"})).await.unwrap();
    assert_eq!(call_with_token(&triage, "workspace__read_note", json!({"name": "q3-plan.md"}), &used).await.unwrap().is_error, Some(false));
    let before_rotation = request(&triage, &task, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap();
    let old_kid = inspect(&dep, &before_rotation)["kid"].clone();

    // JWKS serves the key; rotation adds one; the old token still verifies and works.
    let jwks: serde_json::Value = reqwest::get(format!("{}/.well-known/jwks.json", gw.base)).await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    let (code, _, err) = jitgate(&["keys", "rotate", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let jwks = eventually(Duration::from_secs(10), || async {
        let j: serde_json::Value = reqwest::get(format!("{}/.well-known/jwks.json", gw.base)).await.ok()?.json().await.ok()?;
        (j["keys"].as_array()?.len() == 2).then_some(j)
    })
    .await;
    assert!(jwks["keys"].as_array().unwrap().iter().all(|k| k.get("d").is_none()), "never publish private keys");
    let after_rotation = request(&triage, &task, "workspace__read_note", json!({"name": "q3-plan.md"})).await.unwrap();
    assert_ne!(inspect(&dep, &after_rotation)["kid"], old_kid, "new tokens use the new key");
    assert_eq!(inspect(&dep, &before_rotation)["signature"], "valid");
    let r = call_with_token(&triage, "workspace__read_note", json!({"name": "welcome.md"}), &before_rotation).await.unwrap();
    assert_eq!(r.is_error, Some(false), "{}", text_of(&r));

    // Restart the gateway (its session still open): what was consumed or revoked stays so.
    gw.stop();
    drop(triage);
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    assert_eq!(inspect(&dep, &used)["state"], "consumed");
    // Unused authority of the stopped process's sessions is revoked, and the store says why.
    let held = inspect(&dep, &after_rotation);
    assert_eq!((held["state"].as_str(), held["reason"].as_str()), (Some("revoked"), Some("the gateway process serving the session stopped")));
    let triage = gw.connect(&dep.mint("triage")).await;
    let r = call_with_token(&triage, "workspace__read_note", json!({"name": "q3-plan.md"}), &used).await.unwrap();
    assert!(refusal_code(&r).is_some(), "a consumed token must stay dead after restart");
    // And the legitimate flow works on the restarted gateway.
    assert!(text_of(&call(&triage, "workspace__read_note", json!({"name": "q3-plan.md"})).await.unwrap()).contains("Q3 plan"));
}
