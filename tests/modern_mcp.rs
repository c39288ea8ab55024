//! Both eras of MCP through the real binary: the official Python SDK's
//! `Client` in its default mode (2026-07-28: no handshake, no session) and in
//! legacy mode (the initialize handshake), over HTTP and stdio, each running
//! the README's worked example: phases, an approval by a person, a
//! break-glass refusal, and nothing after the end.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn python() -> std::path::PathBuf {
    let p = repo_root().join(".venv/bin/python");
    assert!(p.exists(), "the Python test client is not installed: run scripts/setup-test-deps.sh (the README's test command .ci/run does)");
    p
}

fn worked_example(args: &[&str]) -> Value {
    let out = Command::new(python()).arg(repo_root().join("tests/support/python/worked_example.py")).args(args).output().unwrap();
    assert!(out.status.success(), "python client failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("bad output ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// What every era must show for the worked example.
fn assert_worked_example(r: &Value, dep: &Deployment) {
    for ok in ["begin", "request_read", "read", "next_phase", "pending", "granted", "delete", "end"] {
        assert_eq!(r[ok]["is_error"], false, "{ok}: {r}");
    }
    assert!(r["tools"].as_array().unwrap().iter().any(|t| t == "workspace__delete_note"), "{r}");
    assert!(r["read"]["text"].as_str().unwrap().contains("Ship the billing export"), "{r}");
    assert_eq!(r["replay"]["code"], "token_replayed", "{r}");
    assert_eq!(r["decision_before"], "pending_approval", "{r}");
    assert_eq!(r["approved_status"], 200);
    assert_eq!(r["status_after"], "approved");
    assert!(!dep.workspace_state.join("notes/meeting-2026-11-20.md").exists(), "the approved delete ran");
    assert_eq!(r["break_glass"]["code"], "policy_denied", "{r}");
    assert!(dep.workspace_state.join("notes/q3-plan.md").exists(), "the break-glass delete did not run");
    assert_eq!(r["after_end"]["code"], "task_inactive", "{r}");
}

#[tokio::test]
async fn python_client_in_its_default_mode_runs_the_worked_example_over_http() {
    let dep = quickstart_deployment();
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let r = worked_example(&["auto", "http", &gw.url, &dep.mint("janitor"), &dep.mint_approver("alice@example.org", "platform-oncall")]);
    assert_eq!(r["protocol_version"], "2026-07-28", "the default client speaks the current revision: {r}");
    assert_worked_example(&r, &dep);
    // No session was opened: nothing was bound to one.
    assert!(!gw.log().contains("session bound to its agent"), "{}", gw.log());
}

#[tokio::test]
async fn python_client_in_legacy_mode_runs_the_worked_example_over_http() {
    let dep = quickstart_deployment();
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let r = worked_example(&["legacy", "http", &gw.url, &dep.mint("janitor"), &dep.mint_approver("alice@example.org", "platform-oncall")]);
    assert_eq!(r["protocol_version"], "2025-11-25", "{r}");
    assert_worked_example(&r, &dep);
    gw.wait_log("session bound to its agent").await;
    assert!(!gw.log().contains("Session termination failed"), "{}", gw.log());
}

/// Over stdio, beside an HTTP gateway on the same state directory (the
/// README's Claude Desktop recipe): the person approves over the HTTP
/// gateway's API what the stdio agent asked for.
#[tokio::test]
async fn python_client_over_stdio_in_both_modes_beside_an_http_gateway() {
    for mode in ["auto", "legacy"] {
        let dep = quickstart_deployment();
        let gw = Gateway::start(&dep);
        gw.wait_server("workspace", "ready").await;
        let id_file = dep.path("janitor.jwt");
        std::fs::write(&id_file, dep.mint("janitor")).unwrap();
        let r = worked_example(&[
            mode,
            "stdio",
            jitgate_bin().to_str().unwrap(),
            dep.config.to_str().unwrap(),
            id_file.to_str().unwrap(),
            &gw.base,
            &dep.mint_approver("alice@example.org", "platform-oncall"),
        ]);
        let want = if mode == "auto" { "2026-07-28" } else { "2025-11-25" };
        assert_eq!(r["protocol_version"], want, "{mode}: {r}");
        assert_worked_example(&r, &dep);
    }
}

/// Downstream servers speak either revision, whatever the agent speaks:
/// a 2026-07-28 agent in front of a handshake-era server and a handshake-era
/// agent in front of a 2026-07-28 server, over HTTP and over stdio.
#[tokio::test]
async fn agents_and_downstream_servers_of_different_eras_work_together() {
    for (downstream, agent, negotiated) in [("handshake", "auto", "2025-11-25"), ("2026-07-28", "legacy", "2026-07-28")] {
        let dep = quickstart_deployment();
        dep.edit_workspace_manifest(|m| m.replacen("[server]\n", &format!("[server]\nprotocol = {downstream:?}\n"), 1));
        let gw = Gateway::start(&dep);
        gw.wait_server("workspace", "ready").await;
        gw.wait_log(&format!("protocol={negotiated}")).await;
        let approver = dep.mint_approver("alice@example.org", "platform-oncall");
        let r = worked_example(&[agent, "http", &gw.url, &dep.mint("janitor"), &approver]);
        assert_worked_example(&r, &dep);

        let dep = quickstart_deployment();
        dep.edit_workspace_manifest(|m| m.replacen("[server]\n", &format!("[server]\nprotocol = {downstream:?}\n"), 1));
        let gw = Gateway::start(&dep);
        gw.wait_server("workspace", "ready").await;
        let id_file = dep.path("janitor.jwt");
        std::fs::write(&id_file, dep.mint("janitor")).unwrap();
        let approver = dep.mint_approver("alice@example.org", "platform-oncall");
        let r = worked_example(&[agent, "stdio", jitgate_bin().to_str().unwrap(), dep.config.to_str().unwrap(), id_file.to_str().unwrap(), &gw.base, &approver]);
        assert_worked_example(&r, &dep);
    }
}

fn ts_worked_example(args: &[&str]) -> Value {
    let script = repo_root().join("tests/support/node/worked_example.mjs");
    assert!(
        repo_root().join("tests/support/node/node_modules/@modelcontextprotocol/client").exists(),
        "the TypeScript SDK client is not installed: run scripts/setup-test-deps.sh (the README's test command .ci/run does)"
    );
    let out = Command::new("node").arg(script).args(args).output().unwrap();
    assert!(out.status.success(), "TypeScript client failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("bad output ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// The official TypeScript SDK client (v2): its default negotiation (the
/// handshake) and `versionNegotiation: {mode: 'auto'}` (2026-07-28), over
/// HTTP and over stdio beside an HTTP gateway.
#[tokio::test]
async fn typescript_client_in_default_and_auto_modes_runs_the_worked_example() {
    for (mode, negotiated) in [("default", "2025-11-25"), ("auto", "2026-07-28")] {
        let dep = quickstart_deployment();
        let gw = Gateway::start(&dep);
        gw.wait_server("workspace", "ready").await;
        let approver = dep.mint_approver("alice@example.org", "platform-oncall");
        let r = ts_worked_example(&[mode, "http", &gw.url, &dep.mint("janitor"), &approver]);
        assert_eq!(r["protocol_version"], negotiated, "{mode}: {r}");
        assert_worked_example(&r, &dep);

        let dep = quickstart_deployment();
        let gw = Gateway::start(&dep);
        gw.wait_server("workspace", "ready").await;
        let id_file = dep.path("janitor.jwt");
        std::fs::write(&id_file, dep.mint("janitor")).unwrap();
        let approver = dep.mint_approver("alice@example.org", "platform-oncall");
        let r = ts_worked_example(&[mode, "stdio", jitgate_bin().to_str().unwrap(), dep.config.to_str().unwrap(), id_file.to_str().unwrap(), &gw.base, &approver]);
        assert_eq!(r["protocol_version"], negotiated, "{mode} over stdio: {r}");
        assert_worked_example(&r, &dep);
    }
}

/// A third-party value the end user really asked for reaches its sink with
/// one confirmation by the end user, asked through the official Python
/// client (an input-required result in 2026-07-28, elicitation/create in a
/// handshake session); the injected destination is declined by the same
/// user and never sent; an answer works once, for its own request only.
fn confirmation_flow(mode: &str) {
    let dep = quickstart_deployment();
    let gw = Gateway::start(&dep);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(gw.wait_server("workspace", "ready"));
    // Bob's message names the colleague to send the summary to.
    let colleague = deliver_bobs_request_for_the_colleague(&dep);

    let out = Command::new(python())
        .arg(repo_root().join("tests/support/python/confirm_flow.py"))
        .args([mode, &gw.url, &dep.mint("triage"), colleague])
        .output()
        .unwrap();
    assert!(out.status.success(), "python client failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("bad output ({e}): {}", String::from_utf8_lossy(&out.stdout)));

    assert_eq!(r["inbox_has_colleague"], true, "{r}");
    // The benign flow: one question, confirmed, and the mail goes out.
    assert_eq!(r["benign_request"]["is_error"], false, "{r}");
    assert_eq!(r["benign_questions"], 1, "exactly one confirmation: {r}");
    assert_eq!(r["benign_send"]["is_error"], false, "{r}");
    let question = r["questions"][0].as_str().unwrap();
    assert!(question.contains("workspace__send_message") && question.contains(colleague) && question.contains("workspace__read_inbox"), "{question}");
    // The injected destination: asked, declined, refused.
    assert_eq!(r["attack_request"]["code"], "declined_by_end_user", "{r}");
    assert_eq!(r["attack_again"]["code"], "declined_by_end_user", "{r}");
    assert_eq!(r["asked_again"], 0, "a declined request is not asked again: {r}");
    let outbox = std::fs::read_to_string(dep.workspace_state.join("outbox.jsonl")).unwrap_or_default();
    assert!(outbox.contains(colleague) && !outbox.contains("exfil.attacker.test"), "{outbox}");
    if mode == "auto" {
        assert!(r["manual_first"].as_str().unwrap().contains("input_required"), "{r}");
        assert_eq!(r["manual_answer"]["is_error"], false, "{r}");
        assert_eq!(r["answer_used_twice"]["code"], "confirmation_invalid", "{r}");
        assert_eq!(r["answer_for_another_request"]["code"], "confirmation_invalid", "{r}");
    }
    // Every question and answer is in the audit trail.
    let (_, log, _) = jitgate(&["audit", "export", "--config", dep.config.to_str().unwrap()]);
    assert!(log.contains("confirmation.asked") && log.contains("confirmation.answered"), "{log}");
}

#[test]
fn the_end_user_confirms_third_party_values_in_2026_07_28_mode() {
    confirmation_flow("auto");
}

#[test]
fn the_end_user_confirms_third_party_values_in_a_handshake_session() {
    confirmation_flow("legacy");
}

/// An agent whose file does not vouch for its client (`[end_user]
/// client_trusted`): its team may do what triage does, under the same
/// quick-start rules.
const UNATTENDED: &str = r#"name = "unattended"
id = "spiffe://jitgate.local/agent/unattended"
team = "support"
allowed_tools = ["workspace__list_notes", "workspace__read_note", "workspace__read_inbox", "workspace__send_message"]
"#;

/// `confirm_flow.py`'s report for one agent: it reads the inbox whose
/// message names `colleague`, then asks to send there (and to the injected
/// address), answering every question as a user who asked for `colleague`.
fn confirm_flow_report(mode: &str, url: &str, agent_token: &str, colleague: &str) -> Value {
    let out = Command::new(python()).arg(repo_root().join("tests/support/python/confirm_flow.py")).args([mode, url, agent_token, colleague]).output().unwrap();
    assert!(out.status.success(), "python client failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("bad output ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// `@confirm("platform-oncall")` asks through the agent's own client, so a
/// client that declares elicitation would answer for platform-oncall. The
/// quick start asks only where the agent file vouches that a person answers
/// the client: the same request, from the same official client declaring
/// elicitation, is never put to an unattended agent's client and waits for
/// platform-oncall, and an answer that client sends unasked counts for
/// nothing; triage's user is asked once and the mail goes out.
fn untrusted_client_flow(mode: &str) {
    let dep = Deployment::new(&Setup { policies: quickstart_policies(), agents: vec![("unattended.toml".into(), UNATTENDED.into())], ..Setup::default() });
    let gw = Gateway::start(&dep);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(gw.wait_server("workspace", "ready"));
    let colleague = deliver_bobs_request_for_the_colleague(&dep);
    let (_, log, _) = jitgate(&["audit", "export", "--config", dep.config.to_str().unwrap()]);
    assert!(!log.contains("confirmation.asked"), "{log}");

    let r = confirm_flow_report(mode, &gw.url, &dep.mint("unattended"), colleague);
    assert_eq!(r["inbox_has_colleague"], true, "{r}");
    assert_eq!(r["questions"], serde_json::json!([]), "the unattended agent's client is never asked: {r}");
    let held = |step: &Value| -> Value {
        assert_eq!(step["is_error"], false, "{r}");
        serde_json::from_str(step["text"].as_str().unwrap()).unwrap_or_else(|e| panic!("{e}: {step}"))
    };
    for step in ["benign_request", "attack_request", "attack_again"] {
        let v = held(&r[step]);
        assert_eq!(v["decision"], "pending_approval", "{step}: {v}");
        assert_eq!(v["group"], "platform-oncall", "{step}: {v}");
        assert!(v["token"].is_null() && v["policies"].to_string().contains("untrusted-data-into-sinks-needs-a-person"), "{step}: {v}");
    }
    assert!(r["benign_send"].is_null(), "no token, no send: {r}");
    if mode == "auto" {
        // Its client declares elicitation and sends a confirmation anyway.
        assert_eq!(r["manual_answer"]["code"], "confirmation_invalid", "{r}");
        assert_eq!(r["answer_for_another_request"]["code"], "confirmation_invalid", "{r}");
    }
    let outbox = std::fs::read_to_string(dep.workspace_state.join("outbox.jsonl")).unwrap_or_default();
    assert!(!outbox.contains(colleague) && !outbox.contains("exfil.attacker.test"), "{outbox}");
    let (_, log, _) = jitgate(&["audit", "export", "--config", dep.config.to_str().unwrap()]);
    assert!(!log.contains("confirmation.asked"), "{log}");

    // Triage's file vouches for its client: the same request is asked once,
    // confirmed, and the mail goes out.
    let r = confirm_flow_report(mode, &gw.url, &dep.mint("triage"), colleague);
    assert_eq!((r["benign_request"]["is_error"].clone(), r["benign_questions"].clone()), (Value::Bool(false), Value::from(1)), "{r}");
    assert_eq!(r["benign_send"]["is_error"], false, "{r}");
    assert_eq!(r["attack_request"]["code"], "declined_by_end_user", "{r}");
    let outbox = std::fs::read_to_string(dep.workspace_state.join("outbox.jsonl")).unwrap_or_default();
    assert!(outbox.contains(colleague) && !outbox.contains("exfil.attacker.test"), "{outbox}");
}

#[test]
fn an_untrusted_agents_client_is_not_asked_in_2026_07_28_mode() {
    untrusted_client_flow("auto");
}

#[test]
fn an_untrusted_agents_client_is_not_asked_in_a_handshake_session() {
    untrusted_client_flow("legacy");
}

/// An expired identity, as the official Python SDK shows it in both eras:
/// the error it raises names `identity_expired` and says what to do, where
/// it once said only "Server returned an error response".
#[tokio::test]
async fn the_python_sdk_shows_an_expired_identity_as_identity_expired() {
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let expired = jitgate::identity::mint(&dep.dev_key(), "jitgate-dev-issuer", "spiffe://jitgate.local/agent/triage", GATEWAY_ID, now - 3600, 600).unwrap();
    let out = Command::new(python()).arg(repo_root().join("tests/support/python/expired_identity.py")).args([gw.url.as_str(), expired.as_str()]).output().unwrap();
    assert!(out.status.success(), "python client failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("bad output ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    for mode in ["default", "legacy"] {
        let error = seen[mode].as_str().unwrap_or_default();
        assert!(error.contains("[identity_expired]") && error.contains("expired") && error.contains("fresh token"), "{mode}: {error}");
    }
}
