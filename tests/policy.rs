//! Cedar policy through the real gateway, with the quick start's shipped
//! policies: per-team tool sets, approved issuers, approvals by people (not
//! agents), the production time window, break-glass with review,
//! quarantine, and reload with a broken file. Each test shows the refused
//! case and the legitimate one.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const SUPPORT_ALL: &str = r#"name = "support-wide"
id = "spiffe://jitgate.local/agent/support-wide"
team = "support"
allowed_tools = ["workspace__*"]
"#;

const SALES: &str = r#"name = "sales"
id = "spiffe://jitgate.local/agent/sales"
team = "sales"
allowed_tools = ["workspace__*"]
"#;

fn quickstart_setup() -> Setup {
    Setup {
        policies: quickstart_policies(),
        agents: vec![("support-wide.toml".into(), SUPPORT_ALL.into()), ("sales.toml".into(), SALES.into())],
        ..Setup::default()
    }
}

async fn http(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = if method == "GET" { client.get(url) } else { client.post(url) };
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn jitgate_with_credential(args: &[&str], credential: &str, dep: &Deployment) -> (Option<i32>, String, String) {
    let path = dep.path(&format!("cred-{}.jwt", std::process::id()));
    std::fs::write(&path, credential).unwrap();
    let mut all: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    all.extend(["--config".into(), dep.config.display().to_string(), "--credential".into(), path.display().to_string()]);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    jitgate(&refs)
}

fn code_and_text(r: &rmcp::model::CallToolResult) -> (String, String) {
    (refusal_code(r).unwrap_or_default(), text_of(r))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_team_tool_sets_and_default_deny() {
    let dep = Deployment::new(&quickstart_setup());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;

    // Support may send mail (its tool set) ...
    let triage = gw.connect(&dep.mint("triage")).await;
    let sent = call(&triage, "workspace__send_message", json!({"to": "alice@example.org", "subject": "Hi", "body": "Hello"})).await.unwrap();
    assert_ne!(sent.is_error, Some(true), "{}", text_of(&sent));

    // ... but a support agent may not even plan a critical tool, although its agent file allows it.
    let wide = gw.connect(&dep.mint("support-wide")).await;
    let refused = begin(&wide, json!([{"name": "read", "tools": ["workspace__read_note"]}, {"name": "clean", "tools": ["workspace__delete_note"]}])).await.unwrap_err();
    let (code, text) = code_and_text(&refused);
    assert_eq!(code, "policy_denied", "{text}");
    assert!(text.contains("`workspace__delete_note` (no policy permits"), "{text}");
    assert!(text.contains("allowed: workspace__read_note"), "the answer says what would be allowed: {text}");
    assert!(begin(&wide, json!([{"name": "read", "tools": ["workspace__read_note"]}])).await.is_ok());

    // A team no policy names gets nothing (default deny), and the answer leaks no policy text.
    let sales = gw.connect(&dep.mint("sales")).await;
    let refused = begin(&sales, json!([{"name": "read", "tools": ["workspace__read_note"]}])).await.unwrap_err();
    let (code, text) = code_and_text(&refused);
    assert_eq!(code, "policy_denied");
    assert!(!text.contains("permit (") && !text.contains("principal in"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_approved_issuers_may_act() {
    let other = jitgate::keys::KeyPair::from_seed(&[9; 32]);
    let dep = Deployment::new(&quickstart_setup());
    dep.append_config(&format!(
        "\n[[identity.issuers]]\nname = \"ci\"\niss = \"https://ci.example\"\ntrust_domain = \"spiffe://jitgate.local\"\npublic_keys = [\"{}\"]\n",
        other.public().to_b64url()
    ));
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let ci_identity = jitgate::identity::mint(&other, "https://ci.example", "spiffe://jitgate.local/agent/triage", GATEWAY_ID, now, 600).unwrap();
    // The identity verifies (the issuer is configured), but policy does not let it act.
    let ci = gw.connect(&ci_identity).await;
    let refused = begin(&ci, json!([{"name": "read", "tools": ["workspace__read_note"]}])).await.unwrap_err();
    let (code, text) = code_and_text(&refused);
    assert_eq!(code, "policy_denied");
    assert!(text.contains("approved-issuers-only") && text.contains("approved issuer"), "{text}");
    // The same agent from the approved issuer works.
    let dev = gw.connect(&dep.mint("triage")).await;
    let r = call(&dev, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap();
    assert!(text_of(&r).contains("Welcome"), "{}", text_of(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destructive_tools_need_a_person_to_approve_the_exact_request() {
    let dep = Deployment::new(&quickstart_setup());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let agent_identity = dep.mint("janitor");
    let janitor = gw.connect(&agent_identity).await;
    let task = begin(&janitor, json!([{"name": "clean", "tools": ["workspace__delete_note"]}])).await.unwrap();
    let ask = |name: &str| json!({"task": task, "tool": "workspace__delete_note", "arguments": {"name": name}, "purpose": "remove an old meeting note"});

    // Policy asks for approval instead of issuing a token.
    let r = raw_call(&janitor, "jit_request", ask("meeting-2026-11-20.md")).await.unwrap();
    let pending = answer(&r);
    assert_eq!(pending["decision"], "pending_approval", "{pending}");
    assert_eq!(pending["group"], "platform-oncall");
    let id = pending["approval"].as_str().unwrap().to_owned();
    // Asking again returns the same pending approval, and the status says pending.
    let again = answer(&raw_call(&janitor, "jit_request", ask("meeting-2026-11-20.md")).await.unwrap());
    assert_eq!(again["approval"], id.as_str());
    let status = answer(&raw_call(&janitor, "jit_approval_status", json!({"approval": id})).await.unwrap());
    assert_eq!(status["state"], "pending");

    // The agent cannot approve its own request: not over HTTP, not with the CLI.
    let url = format!("{}/approvals/{id}/approve", gw.base);
    let (status, body) = http("POST", &url, Some(&agent_identity), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("approver_is_agent")), "{body}");
    let (code, _, err) = jitgate_with_credential(&["approvals", "approve", &id], &agent_identity, &dep);
    assert_ne!(code, Some(0));
    assert!(err.contains("agent identity"), "{err}");
    // No credential, and a person outside the group, are refused too.
    let (status, _) = http("POST", &url, None, None).await;
    assert_eq!(status, 401);
    let bob = dep.mint_approver("bob@example.org", "support-leads");
    let (status, body) = http("POST", &url, Some(&bob), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("approver_not_in_group")), "{body}");
    assert!(std::fs::read_dir(dep.workspace_state.join("notes")).unwrap().any(|e| e.unwrap().file_name() == "meeting-2026-11-20.md"));

    // A person of the group approves with the CLI.
    let alice = dep.mint_approver("alice@example.org", "platform-oncall");
    let (code, out, err) = jitgate_with_credential(&["approvals", "list", "--json"], &alice, &dep);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&id), "{out}");
    let (code, _, err) = jitgate_with_credential(&["approvals", "approve", &id, "--note", "old note, fine"], &alice, &dep);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("WARN"), "an approval that went as asked is no warning: {err}");
    let status = answer(&raw_call(&janitor, "jit_approval_status", json!({"approval": id})).await.unwrap());
    assert_eq!((status["state"].as_str(), status["decided_by"].as_str()), (Some("approved"), Some("alice@example.org")));

    // The approval does not cover a different argument: that is a new pending request.
    let other = answer(&raw_call(&janitor, "jit_request", ask("q3-plan.md")).await.unwrap());
    assert_eq!(other["decision"], "pending_approval");
    assert_ne!(other["approval"], id.as_str());

    // The exact request now gets a token, and the call deletes the note.
    let granted = answer(&raw_call(&janitor, "jit_request", ask("meeting-2026-11-20.md")).await.unwrap());
    assert_eq!(granted["decision"], "allow", "{granted}");
    assert_eq!(granted["approval"]["approved_by"], "alice@example.org");
    let token = granted["token"].as_str().unwrap();
    let done = call_with_token(&janitor, "workspace__delete_note", json!({"name": "meeting-2026-11-20.md"}), token).await.unwrap();
    assert_ne!(done.is_error, Some(true), "{}", text_of(&done));
    assert!(!dep.workspace_state.join("notes/meeting-2026-11-20.md").exists());

    // The approval was spent on that one token: the same request needs a new approval.
    let next = answer(&raw_call(&janitor, "jit_request", ask("meeting-2026-11-20.md")).await.unwrap());
    assert_eq!(next["decision"], "pending_approval");
    assert_ne!(next["approval"], id.as_str());
    // Deciding the spent approval again is refused.
    let (status, body) = http("POST", &url, Some(&alice), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("approval_not_pending")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_or_expired_approval_gives_no_token() {
    let dep = Deployment::new(&Setup { limits: String::new(), ..quickstart_setup() });
    dep.append_config("\n[approvals]\npending_ttl = \"2s\"\n");
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let janitor = gw.connect(&dep.mint("janitor")).await;
    let task = begin(&janitor, json!([{"name": "clean", "tools": ["workspace__delete_note"]}])).await.unwrap();
    let ask = |name: &str| json!({"task": task, "tool": "workspace__delete_note", "arguments": {"name": name}, "purpose": "tidy"});
    let alice = dep.mint_approver("alice@example.org", "platform-oncall");

    // Denied over HTTP: a reason is required; the agent is told who denied and why.
    let id = answer(&raw_call(&janitor, "jit_request", ask("welcome.md")).await.unwrap())["approval"].as_str().unwrap().to_owned();
    let (status, body) = http("POST", &format!("{}/approvals/{id}/deny", gw.base), Some(&alice), Some(json!({}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("reason_required")));
    let (status, body) = http("POST", &format!("{}/approvals/{id}/deny", gw.base), Some(&alice), Some(json!({"reason": "welcome note stays"}))).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("denied")), "{body}");
    let r = raw_call(&janitor, "jit_request", ask("welcome.md")).await.unwrap();
    let (code, text) = code_and_text(&r);
    assert_eq!(code, "approval_denied");
    assert!(text.contains("alice@example.org") && text.contains("welcome note stays"), "{text}");
    assert!(dep.workspace_state.join("notes/welcome.md").exists());

    // Unknown approval ids are refused clearly.
    let (status, body) = http("POST", &format!("{}/approvals/apr_nope/approve", gw.base), Some(&alice), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("approval_not_found")));
    let r = raw_call(&janitor, "jit_approval_status", json!({"approval": "apr_nope"})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("approval_not_found"));

    // Nobody decided in time: the approval expires and can no longer be approved.
    let id = answer(&raw_call(&janitor, "jit_request", ask("q3-plan.md")).await.unwrap())["approval"].as_str().unwrap().to_owned();
    let url = format!("{}/approvals/{id}", gw.base);
    eventually(Duration::from_secs(20), || async {
        let (_, body) = http("GET", &url, Some(&alice), None).await;
        (body["state"] == "expired").then_some(())
    })
    .await;
    let (status, body) = http("POST", &format!("{url}/approve"), Some(&alice), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("approval_not_pending")), "{body}");
    // The agent asking again opens a fresh approval, which a person can approve.
    let fresh = answer(&raw_call(&janitor, "jit_request", ask("q3-plan.md")).await.unwrap());
    let fresh_id = fresh["approval"].as_str().unwrap().to_owned();
    assert_ne!(fresh_id, id);
    let (status, _) = http("POST", &format!("{}/approvals/{fresh_id}/approve", gw.base), Some(&alice), None).await;
    assert_eq!(status, 200);
    assert_eq!(answer(&raw_call(&janitor, "jit_request", ask("q3-plan.md")).await.unwrap())["decision"], "allow");
}

/// A policy that allows production changes only in the given UTC hours.
fn window_policy(hours: &[i64]) -> String {
    let cond: Vec<String> = hours.iter().map(|h| format!("context.time.hour == {h}")).collect();
    format!(
        "@id(\"production-changes-in-window\")\n@reason(\"production changes only in the window\")\nforbid (principal, action == Action::\"Request\", resource)\nwhen {{ resource.environment == \"production\" }}\nunless {{ {} }};\n",
        cond.join(" || ")
    )
}

fn utc_hour() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    (now % 86_400) / 3600
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_changes_only_in_the_window_and_policies_reload() {
    // The shipped rule is checked with `policy explain` at fixed times; the
    // gateway is checked with windows around the current hour, swapped by reload.
    let dep = Deployment::new(&quickstart_setup());
    let explain = |at: &str| {
        let (code, out, err) = jitgate(&[
            "policy", "explain", "--config", dep.config.to_str().unwrap(), "--agent", "janitor", "--tool", "workspace__rotate_api_key", "--at", at, "--json",
        ]);
        assert_eq!(code, Some(0), "{err}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    let night = explain("2026-11-28T22:00:00Z");
    assert_eq!(night["decision"], "deny");
    assert_eq!(night["policies"][0]["id"], "production-changes-in-window");
    let day = explain("2026-11-25T10:00:00Z");
    assert_eq!((day["decision"].as_str(), day["approval_group"].as_str()), (Some("needs_approval"), Some("platform-oncall")));

    let policy_file = dep.path("policies/30-environments.cedar");
    let h = utc_hour();
    std::fs::write(&policy_file, window_policy(&[(h + 2) % 24, (h + 3) % 24])).unwrap();
    std::fs::write(dep.path("policies/20-approvals.cedar"), "// approvals off for this test\n").unwrap();
    std::fs::write(dep.path("policies/25-platform-critical.cedar"), "permit (principal in Team::\"platform\", action == Action::\"Request\", resource) when { resource.risk == \"critical\" };\n").unwrap();
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let janitor = gw.connect(&dep.mint("janitor")).await;
    let key_before = std::fs::read_to_string(dep.workspace_state.join("api_key")).unwrap_or_default();
    let task = begin(&janitor, json!([{"name": "rotate", "tools": ["workspace__rotate_api_key"]}])).await.unwrap();
    let ask = json!({"task": task, "tool": "workspace__rotate_api_key", "arguments": {}, "purpose": "scheduled rotation"});
    let refused = request_with(&janitor, ask.clone()).await.unwrap_err();
    let (code, text) = code_and_text(&refused);
    assert_eq!(code, "policy_denied");
    assert!(text.contains("production-changes-in-window") && text.contains("only in the window"), "{text}");

    // A broken policy file is rejected with its location; the set in force stays.
    std::fs::write(dep.path("policies/99-broken.cedar"), "permit (principal, action, resource)\nwhen { resource.owner == \"x\" };\n").unwrap();
    eventually(Duration::from_secs(15), || async { gw.log().contains("policy reload REJECTED").then_some(()) }).await;
    assert!(gw.log().contains("99-broken.cedar:2:"), "{}", gw.log());
    let (code, _, err) = jitgate(&["check", "--offline", "--config", dep.config.to_str().unwrap()]);
    assert_ne!(code, Some(0));
    assert!(err.contains("99-broken.cedar:2:") && err.contains("owner"), "{err}");
    assert_eq!(refusal_code(&request_with(&janitor, ask.clone()).await.unwrap_err()).as_deref(), Some("policy_denied"));

    // Fixed, with a window around now: reloaded, and the change goes through.
    std::fs::remove_file(dep.path("policies/99-broken.cedar")).unwrap();
    std::fs::write(&policy_file, window_policy(&[h, (h + 1) % 24])).unwrap();
    let token = eventually(Duration::from_secs(15), || async { request_with(&janitor, ask.clone()).await.ok() }).await;
    let r = call_with_token(&janitor, "workspace__rotate_api_key", json!({}), &token).await.unwrap();
    assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
    assert_ne!(std::fs::read_to_string(dep.workspace_state.join("api_key")).unwrap_or_default(), key_before);
    assert!(gw.log().contains("policy set reloaded"));

    // SIGHUP reloads at once (and an unchanged set stays as it is).
    let hup = std::process::Command::new("kill").args(["-HUP", &gw.child.id().to_string()]).status().unwrap();
    assert!(hup.success());
    eventually(Duration::from_secs(10), || async { gw.log().contains("SIGHUP: reloading policies").then_some(()) }).await;
    assert!(request_with(&janitor, ask.clone()).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_is_capped_recorded_reviewed_and_never_beats_quarantine() {
    let dep = Deployment::new(&quickstart_setup());
    // Outside the window at any hour: only break-glass can rotate the key.
    std::fs::write(
        dep.path("policies/30-environments.cedar"),
        "@id(\"production-changes-in-window\")\n@reason(\"production changes only in the window\")\nforbid (principal, action == Action::\"Request\", resource) when { resource.environment == \"production\" };\n",
    )
    .unwrap();
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let janitor = gw.connect(&dep.mint("janitor")).await;
    let task = begin(&janitor, json!([{"name": "rotate", "tools": ["workspace__rotate_api_key"]}])).await.unwrap();
    let ask = |bg: Value| json!({"task": task, "tool": "workspace__rotate_api_key", "arguments": {}, "purpose": "the key leaked", "break_glass": bg});

    // The normal request is refused by the window rule.
    let plain = json!({"task": task, "tool": "workspace__rotate_api_key", "arguments": {}, "purpose": "the key leaked"});
    assert_eq!(refusal_code(&request_with(&janitor, plain).await.unwrap_err()).as_deref(), Some("policy_denied"));
    // Break-glass needs a justification, and policy wants an incident reference in it.
    assert_eq!(refusal_code(&request_with(&janitor, ask(json!({}))).await.unwrap_err()).as_deref(), Some("invalid_arguments"));
    assert_eq!(refusal_code(&request_with(&janitor, ask(json!({"justification": "  "}))).await.unwrap_err()).as_deref(), Some("invalid_arguments"));
    let refused = request_with(&janitor, ask(json!({"justification": "just because"}))).await.unwrap_err();
    assert_eq!(refusal_code(&refused).as_deref(), Some("policy_denied"), "{}", text_of(&refused));

    // With an incident reference it is granted, capped, and loudly recorded.
    let r = raw_call(&janitor, "jit_request", ask(json!({"justification": "INC-4711 API key posted publicly"}))).await.unwrap();
    let granted = answer(&r);
    assert_eq!(granted["decision"], "allow_break_glass", "{granted}");
    assert!(granted["expires_in_seconds"].as_i64().unwrap() <= 300);
    let grant_id = granted["break_glass"]["id"].as_str().unwrap().to_owned();
    assert!(gw.log().contains("BREAK-GLASS GRANTED"));
    let before = std::fs::read_to_string(dep.workspace_state.join("api_key")).unwrap_or_default();
    let done = call_with_token(&janitor, "workspace__rotate_api_key", json!({}), granted["token"].as_str().unwrap()).await.unwrap();
    assert_ne!(done.is_error, Some(true), "{}", text_of(&done));
    assert_ne!(std::fs::read_to_string(dep.workspace_state.join("api_key")).unwrap_or_default(), before);

    // A support agent cannot break glass at all.
    let triage = gw.connect(&dep.mint("triage")).await;
    let t2 = begin(&triage, json!([{"name": "send", "tools": ["workspace__send_message"]}])).await.unwrap();
    let r = request_with(
        &triage,
        json!({"task": t2, "tool": "workspace__send_message", "arguments": {"to": "a@example.org", "subject": "s", "body": "b"}, "purpose": "p", "break_glass": {"justification": "INC-1"}}),
    )
    .await
    .unwrap_err();
    assert_eq!(refusal_code(&r).as_deref(), Some("policy_denied"));

    // The grant waits in the review queue until a person signs it off.
    let alice = dep.mint_approver("alice@example.org", "security");
    let (code, out, err) = jitgate_with_credential(&["review", "list", "--json"], &alice, &dep);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&grant_id) && out.contains("INC-4711"), "{out}");
    let (status, body) = http("GET", &format!("{}/reviews", gw.base), Some(&dep.mint("janitor")), None).await;
    assert_eq!(status, 403, "{body}");
    let (code, _, err) = jitgate_with_credential(&["review", "ack", &grant_id, "--note", "rotation was right; leak confirmed"], &alice, &dep);
    assert_eq!(code, Some(0), "{err}");
    let (_, out, _) = jitgate_with_credential(&["review", "list", "--json"], &alice, &dep);
    assert!(!out.contains(&grant_id), "{out}");

    // Quarantine: break-glass does not get through; release (a person, with a note) restores it.
    let (code, _, err) = jitgate(&["agents", "quarantine", "janitor", "--reason", "odd behaviour", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let task = begin(&janitor, json!([{"name": "rotate", "tools": ["workspace__rotate_api_key"]}])).await.unwrap_err();
    assert_eq!(refusal_code(&task).as_deref(), Some("agent_quarantined"));
    let (code, _, err) = jitgate_with_credential(&["agents", "release", "janitor", "--note", "checked the logs"], &alice, &dep);
    assert_eq!(code, Some(0), "{err}");
    let task = begin(&janitor, json!([{"name": "rotate", "tools": ["workspace__rotate_api_key"]}])).await.unwrap();
    let again = json!({"task": task, "tool": "workspace__rotate_api_key", "arguments": {}, "purpose": "p", "break_glass": {"justification": "INC-4712"}});
    assert!(request_with(&janitor, again).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantined_agents_are_refused_even_where_a_policy_would_permit_break_glass() {
    // The policy set permits break-glass to everyone and has no quarantine
    // forbid: the gateway's own quarantine check still refuses.
    let dep = Deployment::new(&Setup { policies: vec![("p.cedar".into(), "permit (principal, action, resource);\n".into())], ..Setup::default() });
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let janitor = gw.connect(&dep.mint("janitor")).await;
    let task = begin(&janitor, json!([{"name": "rotate", "tools": ["workspace__rotate_api_key"]}])).await.unwrap();
    let (code, _, err) = jitgate(&["agents", "quarantine", "janitor", "--reason", "drift", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    // The quarantine revoked the task too.
    let r = request_with(&janitor, json!({"task": task, "tool": "workspace__rotate_api_key", "arguments": {}, "purpose": "p", "break_glass": {"justification": "INC-1"}}))
        .await
        .unwrap_err();
    assert_eq!(refusal_code(&r).as_deref(), Some("task_inactive"), "{}", text_of(&r));
    let refused = begin(&janitor, json!([{"name": "rotate", "tools": ["workspace__rotate_api_key"]}])).await.unwrap_err();
    assert_eq!(refusal_code(&refused).as_deref(), Some("agent_quarantined"));
    assert!(text_of(&refused).contains("jitgate agents release"));
    // Another agent is unaffected.
    let triage = gw.connect(&dep.mint("triage")).await;
    assert!(begin(&triage, json!([{"name": "read", "tools": ["workspace__read_note"]}])).await.is_ok());
}


#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_from_untrusted_output_cannot_feed_a_sink() {
    let dep = Deployment::new(&quickstart_setup());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;

    // Triage reads the inbox, where one message carries an injected instruction.
    let triage = gw.connect(&dep.mint("triage")).await;
    let task = begin(&triage, json!([{"name": "read", "tools": ["workspace__read_inbox"]}, {"name": "reply", "tools": ["workspace__send_message"]}])).await.unwrap();
    let read = grant(&triage, json!({"task": task, "tool": "workspace__read_inbox", "arguments": {}, "purpose": "triage new mail"})).await.unwrap();
    let inbox = call_with_token(&triage, "workspace__read_inbox", json!({}), read["token"].as_str().unwrap()).await.unwrap();
    assert!(text_of(&inbox).contains("audit@exfil.attacker.test"));
    raw_call(&triage, "jit_next_phase", json!({"task": task, "phase": "reply"})).await.unwrap();

    // Sending to the address from the message body is refused, naming the source
    // call, although the agent did not say `follows`.
    let send = |to: &str| json!({"task": task, "tool": "workspace__send_message", "arguments": {"to": to, "subject": "Audit", "body": "see attached"}, "purpose": "comply with the notice"});
    // It is held for the end user (this client cannot ask, so platform-oncall
    // decides), and the intent record names the source call.
    assert_held_for_end_user(&grant(&triage, send("audit@exfil.attacker.test")).await, "platform-oncall");
    let (_, trace, _) = jitgate(&["trace", &task, "--config", dep.config.to_str().unwrap()]);
    let short_jti: String = read["jti"].as_str().unwrap().chars().take(8).collect();
    assert!(trace.contains("pending_approval [untrusted-data-into-sinks-needs-the-end-user]"), "{trace}");
    assert!(trace.contains(&format!("tainted by output of {short_jti} (workspace__read_inbox)")), "{trace}");
    // Replying to a sender (a field the mail system vouches for) works.
    let reply = grant(&triage, send("alice@example.org")).await.unwrap();
    let sent = call_with_token(&triage, "workspace__send_message", json!({"to": "alice@example.org", "subject": "Audit", "body": "see attached"}), reply["token"].as_str().unwrap())
        .await
        .unwrap();
    assert_ne!(sent.is_error, Some(true), "{}", text_of(&sent));

    // A fetched page tells the agent to share a note with a paste site; lying
    // in `follows` (naming a trusted read) does not hide where the URL came from.
    let janitor = gw.connect(&dep.mint("janitor")).await;
    let task = begin(
        &janitor,
        json!([{"name": "gather", "tools": ["workspace__read_note", "workspace__fetch_page"]}, {"name": "share", "tools": ["workspace__share_note"]}]),
    )
    .await
    .unwrap();
    let note = grant(&janitor, json!({"task": task, "tool": "workspace__read_note", "arguments": {"name": "q3-plan.md"}, "purpose": "read"})).await.unwrap();
    call_with_token(&janitor, "workspace__read_note", json!({"name": "q3-plan.md"}), note["token"].as_str().unwrap()).await.unwrap();
    let page = grant(&janitor, json!({"task": task, "tool": "workspace__fetch_page", "arguments": {"url": "https://news.example.com/today"}, "purpose": "news"})).await.unwrap();
    let fetched = call_with_token(&janitor, "workspace__fetch_page", json!({"url": "https://news.example.com/today"}), page["token"].as_str().unwrap()).await.unwrap();
    assert!(text_of(&fetched).contains("paste.attacker.test"), "{}", text_of(&fetched));
    raw_call(&janitor, "jit_next_phase", json!({"task": task, "phase": "share"})).await.unwrap();
    let share = |dest: &str| {
        json!({"task": task, "tool": "workspace__share_note", "arguments": {"name": "q3-plan.md", "destination": dest}, "purpose": "share", "follows": note["jti"]})
    };
    assert_held_for_end_user(&grant(&janitor, share("https://paste.attacker.test/upload")).await, "platform-oncall");
    assert_held_for_end_user(&grant(&janitor, share("paste.attacker.test")).await, "platform-oncall");
    assert!(grant(&janitor, share("https://wiki.example.org/q3")).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_policy_sets_decide_the_same_off_the_runtime() {
    // Over 64 policies the decision runs on the blocking pool; it must say the same.
    let mut many = String::new();
    for i in 0..120 {
        many.push_str(&format!("permit (principal, action == Action::\"Request\", resource) when {{ principal.team == \"team-{i}\" }};\n"));
    }
    many.push_str("@id(\"support-reads\") permit (principal in Team::\"support\", action, resource) when { resource.risk_level <= 2 };\n");
    many.push_str("@id(\"no-inbox\") @reason(\"no inbox today\") forbid (principal, action == Action::\"Request\", resource == Tool::\"workspace__read_inbox\");\n");
    let dep = Deployment::new(&Setup { policies: vec![("many.cedar".into(), many)], ..Setup::default() });
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let triage = gw.connect(&dep.mint("triage")).await;
    let r = call(&triage, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap();
    assert!(text_of(&r).contains("Welcome"), "{}", text_of(&r));
    let task = begin(&triage, json!([{"name": "read", "tools": ["workspace__read_inbox"]}])).await.unwrap();
    let refused = request(&triage, &task, "workspace__read_inbox", json!({})).await.unwrap_err();
    assert!(text_of(&refused).contains("`no-inbox`: no inbox today"), "{}", text_of(&refused));
}

/// `policy explain` decides with the gateway's own verdict function: an
/// unusual-but-plausible request (score 90) goes to a person, the same score
/// with strong evidence quarantines, exactly as the gateway does (the
/// gateway's side is in baseline.rs). It names the action it checked.
#[test]
fn explain_says_what_the_gateway_does_for_unusual_and_drifting_requests() {
    let dep = Deployment::new(&quickstart_setup());
    let explain = |extra: &[&str]| {
        let mut args = vec!["policy", "explain", "--config", dep.config.to_str().unwrap(), "--agent", "triage", "--tool", "workspace__send_message", "--args", r#"{"to":"a@example.org","subject":"s","body":"b"}"#, "--json"];
        args.extend_from_slice(extra);
        let (code, out, err) = jitgate(&args);
        assert_eq!(code, Some(0), "{err}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    let usual = explain(&[]);
    assert_eq!((usual["decision"].as_str(), usual["action"].as_str()), (Some("allow"), Some("Request")), "{usual}");
    let unusual = explain(&["--baseline-score", "90", "--unknown-transition"]);
    assert_eq!((unusual["decision"].as_str(), unusual["approval_group"].as_str()), (Some("needs_approval"), Some("platform-oncall")), "{unusual}");
    let drifting = explain(&["--baseline-score", "90", "--unknown-transition", "--strong-evidence"]);
    assert_eq!(drifting["decision"], "quarantine", "{drifting}");
    // A third-party value in a sink: the end user confirms (platform-oncall
    // when the client cannot ask); once confirmed it is allowed.
    let tainted = explain(&["--tainted"]);
    assert_eq!((tainted["decision"].as_str(), tainted["approval_group"].as_str()), (Some("needs_confirmation"), Some("platform-oncall")), "{tainted}");
    assert_eq!(explain(&["--tainted", "--confirmed-by-end-user"])["decision"], "allow");
    // Triage's file vouches for its client. Without that, the same request
    // is platform-oncall's to approve, and no confirmation lifts it.
    assert_eq!(tainted["end_user_client_trusted"], true, "{tainted}");
    for extra in [&["--tainted", "--end-user-client-trusted", "false"][..], &["--tainted", "--end-user-client-trusted", "false", "--confirmed-by-end-user"]] {
        let untrusted = explain(extra);
        assert_eq!((untrusted["decision"].as_str(), untrusted["approval_group"].as_str()), (Some("needs_approval"), Some("platform-oncall")), "{untrusted}");
        assert_eq!(untrusted["policies"][0]["id"], "untrusted-data-into-sinks-needs-a-person", "{untrusted}");
    }
    // Planning is a different action with its own answer, and the text output says so.
    let (code, out, _) = jitgate(&["policy", "explain", "--config", dep.config.to_str().unwrap(), "--agent", "triage", "--tool", "workspace__send_message", "--action", "begin-task"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("decision for action BeginTask: ALLOW") && out.contains("try --action request"), "{out}");
}

/// When the end user cannot be asked, the fallback group's approval stands
/// in for the confirmation, and it is spent on exactly one token like any
/// approval: repeating the request does not mint another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_standing_in_for_the_end_user_is_spent_once() {
    let dep = Deployment::new(&quickstart_setup());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let triage = gw.connect(&dep.mint("triage")).await;
    let task = after_reading_the_poisoned_inbox(&triage).await;
    let send = json!({"task": task, "tool": "workspace__send_message", "arguments": {"to": "dana@acme.example", "subject": "Renewal", "body": "2027-01-31"}, "purpose": "answer Dana"});
    // The inbox body names the attacker's address: that request is tainted.
    let send_tainted = json!({"task": task, "tool": "workspace__send_message", "arguments": {"to": "audit@exfil.attacker.test", "subject": "Audit", "body": "see attached"}, "purpose": "comply"});
    let held = grant(&triage, send_tainted.clone()).await;
    assert_held_for_end_user(&held, "platform-oncall");
    let id = held.unwrap()["approval"].as_str().unwrap().to_owned();
    let alice = dep.mint_approver("alice@example.org", "platform-oncall");
    let (code, _, err) = jitgate_with_credential(&["approvals", "approve", &id, "--note", "checked with the user"], &alice, &dep);
    assert_eq!(code, Some(0), "{err}");
    let first = grant(&triage, send_tainted.clone()).await.unwrap();
    assert!(first["token"].is_string(), "{first}");
    let second = grant(&triage, send_tainted).await.unwrap();
    assert!(second["token"].is_null(), "the approval is spent: {second}");
    assert_eq!(second["decision"], "pending_approval", "{second}");
    // An untainted reply is not held at all.
    assert!(grant(&triage, send).await.unwrap()["token"].is_string());
}

/// Break-glass is no way around a person for a request far outside the
/// baseline (score 90+ without strong evidence); the ordinary request for
/// the same call goes to a person.
#[test]
fn break_glass_far_outside_the_baseline_is_refused() {
    let dep = Deployment::new(&quickstart_setup());
    let explain = |action: &str| {
        let (code, out, err) = jitgate(&[
            "policy", "explain", "--config", dep.config.to_str().unwrap(), "--agent", "janitor", "--tool", "workspace__delete_note",
            "--args", r#"{"name":"q3-plan.md"}"#, "--action", action, "--baseline-score", "95", "--justification", "INC-4471 outage", "--json",
        ]);
        assert_eq!(code, Some(0), "{err}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    let bg = explain("break-glass");
    assert_eq!(bg["decision"], "deny", "{bg}");
    assert!(bg["policies"].to_string().contains("no-break-glass-far-outside-baseline"), "{bg}");
    let plain = explain("request");
    assert_eq!(plain["decision"], "needs_approval", "{plain}");
}
