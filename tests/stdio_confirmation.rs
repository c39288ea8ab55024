//! End-user confirmation over stdio, as desktop clients connect, with the
//! official Python and TypeScript clients in both eras of MCP.
//!
//! A 2026-07-28 client never sends `initialize`, so over stdio too its
//! capabilities arrive only in each request's `_meta`
//! (`io.modelcontextprotocol/clientCapabilities`); a handshake-era client
//! declares them once in the handshake. Each client starts `jitgate serve
//! --stdio` itself, reads an inbox where Bob names a colleague beside a
//! message with an injected instruction, and asks to send to both: the user
//! is asked once about the colleague and confirms, and the mail goes out; the
//! injected address is asked about, declined, and never sent.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

/// The address the poisoned inbox message asks the agent to send to.
const INJECTED: &str = "audit@exfil.attacker.test";

fn python() -> std::path::PathBuf {
    let p = repo_root().join(".venv/bin/python");
    assert!(p.exists(), "the Python test client is not installed: run scripts/setup-test-deps.sh (the README's test command .ci/run does)");
    p
}

/// The quick start with triage's identity in a file (its agent file vouches
/// that a person answers its client), and Bob's message in the inbox beside
/// the poisoned one.
fn deployment() -> (Deployment, std::path::PathBuf) {
    let dep = quickstart_deployment();
    // The workspace server seeds its inbox (and the poisoned message) on
    // its first start, beside what is already there.
    deliver_bobs_request_for_the_colleague(&dep);
    let id_file = dep.path("triage.jwt");
    std::fs::write(&id_file, dep.mint("triage")).unwrap();
    (dep, id_file)
}

fn report_of(out: std::process::Output, who: &str) -> Value {
    assert!(out.status.success(), "{who} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("bad output from {who} ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// The official Python client starts the gateway over stdio and runs
/// `confirm_flow.py`'s task (extra: `--cannot-ask`).
fn python_over_stdio(mode: &str, dep: &Deployment, id_file: &std::path::Path, extra: &[&str]) -> Value {
    let out = Command::new(python())
        .arg(repo_root().join("tests/support/python/confirm_stdio.py"))
        .args([mode, jitgate_bin().to_str().unwrap(), dep.config.to_str().unwrap(), id_file.to_str().unwrap(), COLLEAGUE])
        .args(extra)
        .output()
        .unwrap();
    report_of(out, "the Python client")
}

/// The official TypeScript client runs the same task (`confirm_flow.mjs`).
fn typescript(args: &[&str]) -> Value {
    assert!(
        repo_root().join("tests/support/node/node_modules/@modelcontextprotocol/client").exists(),
        "the TypeScript SDK client is not installed: run scripts/setup-test-deps.sh (the README's test command .ci/run does)"
    );
    let out = Command::new("node").arg(repo_root().join("tests/support/node/confirm_flow.mjs")).args(args).output().unwrap();
    report_of(out, "the TypeScript client")
}

fn typescript_over_stdio(mode: &str, dep: &Deployment, id_file: &std::path::Path) -> Value {
    typescript(&[mode, "stdio", jitgate_bin().to_str().unwrap(), dep.config.to_str().unwrap(), id_file.to_str().unwrap(), COLLEAGUE])
}

/// How the gateway asked (`input_required` or `elicitation`), from the audit
/// trail's `confirmation.asked` records.
fn asked_via(dep: &Deployment) -> Vec<String> {
    let (code, log, err) = jitgate(&["audit", "export", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r.to_string().contains("confirmation.asked"))
        .map(|r| r.pointer("/detail/via").or_else(|| r.pointer("/data/via")).and_then(Value::as_str).unwrap_or("?").to_owned())
        .collect()
}

/// The end user was asked once about the colleague and confirmed, and the
/// mail went out; the injected address was asked about once, declined, not
/// asked about again, and never sent; each question went `via` the
/// transport's way of asking.
fn assert_asked_confirmed_and_declined(r: &Value, dep: &Deployment, protocol: &str, via: &str) {
    assert_eq!(r["protocol_version"], protocol, "{r}");
    assert_eq!(r["inbox_has_colleague"], true, "{r}");
    assert_eq!(r["benign_request"]["is_error"], false, "{r}");
    assert_eq!(r["benign_questions"], 1, "asked exactly once before the send: {r}");
    assert_eq!(r["benign_send"]["is_error"], false, "{r}");
    let questions = r["questions"].as_array().unwrap();
    assert_eq!(questions.len(), 2, "one question for the colleague, one for the injected address: {r}");
    let first = questions[0].as_str().unwrap();
    assert!(first.contains("workspace__send_message") && first.contains(COLLEAGUE) && first.contains("workspace__read_inbox"), "{first}");
    assert!(questions[1].as_str().unwrap().contains(INJECTED), "{r}");
    assert_eq!(r["attack_request"]["code"], "declined_by_end_user", "{r}");
    assert_eq!(r["attack_again"]["code"], "declined_by_end_user", "{r}");
    assert_eq!(r["asked_again"], 0, "a declined request is not asked again: {r}");
    assert_eq!(sent_to(dep), vec![COLLEAGUE.to_owned()], "only the confirmed mail went out");
    let vias = asked_via(dep);
    assert!(!vias.is_empty() && vias.iter().all(|v| v == via), "asked via {via}: {vias:?}");
}

/// The regression of issue 24: a 2026-07-28 client over stdio sends no
/// handshake, and its requests' own capabilities were not read, so every
/// question became a pending approval for platform-oncall.
#[test]
fn python_client_in_2026_07_28_mode_over_stdio_is_asked() {
    let (dep, id_file) = deployment();
    let r = python_over_stdio("auto", &dep, &id_file, &[]);
    assert_asked_confirmed_and_declined(&r, &dep, "2026-07-28", "input_required");
    // The answer rounds confirm_flow.py drives by hand: an answer belongs to
    // one request, once.
    assert!(r["manual_first"].as_str().unwrap().contains("input_required"), "{r}");
    assert_eq!(r["manual_answer"]["is_error"], false, "{r}");
    assert_eq!(r["answer_used_twice"]["code"], "confirmation_invalid", "{r}");
    assert_eq!(r["answer_for_another_request"]["code"], "confirmation_invalid", "{r}");
}

#[test]
fn python_client_in_legacy_mode_over_stdio_is_asked_by_elicitation() {
    let (dep, id_file) = deployment();
    let r = python_over_stdio("legacy", &dep, &id_file, &[]);
    assert_asked_confirmed_and_declined(&r, &dep, "2025-11-25", "elicitation");
}

/// Capabilities are read per request: a 2026-07-28 client over stdio that
/// declares no elicitation is never asked, and the request waits for
/// platform-oncall; nothing is sent.
#[test]
fn python_client_in_2026_07_28_mode_over_stdio_that_cannot_ask_is_not_asked() {
    let (dep, id_file) = deployment();
    let r = python_over_stdio("auto", &dep, &id_file, &["--cannot-ask"]);
    assert_eq!(r["protocol_version"], "2026-07-28", "{r}");
    assert_eq!(r["questions"], serde_json::json!([]), "{r}");
    for step in ["benign_request", "attack_request"] {
        let v: Value = serde_json::from_str(r[step]["text"].as_str().unwrap()).unwrap_or_else(|e| panic!("{e}: {r}"));
        assert_eq!(v["decision"], "pending_approval", "{step}: {v}");
        assert_eq!(v["group"], "platform-oncall", "{step}: {v}");
        assert!(v["token"].is_null(), "{step}: {v}");
    }
    assert!(r["benign_send"].is_null(), "{r}");
    // An answer it sends unasked names a question that was never asked.
    assert_eq!(r["manual_answer"]["code"], "confirmation_invalid", "{r}");
    assert!(sent_to(&dep).is_empty());
    assert!(asked_via(&dep).is_empty());
}

#[test]
fn typescript_client_in_2026_07_28_mode_over_stdio_is_asked() {
    let (dep, id_file) = deployment();
    let r = typescript_over_stdio("auto", &dep, &id_file);
    assert_asked_confirmed_and_declined(&r, &dep, "2026-07-28", "input_required");
}

#[test]
fn typescript_client_in_handshake_mode_over_stdio_is_asked_by_elicitation() {
    let (dep, id_file) = deployment();
    let r = typescript_over_stdio("default", &dep, &id_file);
    assert_asked_confirmed_and_declined(&r, &dep, "2025-11-25", "elicitation");
}

/// The same TypeScript flows over HTTP, so each official client confirms
/// in both eras on both transports.
#[tokio::test]
async fn typescript_client_in_both_modes_over_http_is_asked() {
    for (mode, protocol, via) in [("auto", "2026-07-28", "input_required"), ("default", "2025-11-25", "elicitation")] {
        let (dep, _) = deployment();
        let gw = Gateway::start(&dep);
        gw.wait_server("workspace", "ready").await;
        let r = typescript(&[mode, "http", &gw.url, &dep.mint("triage"), COLLEAGUE]);
        assert_asked_confirmed_and_declined(&r, &dep, protocol, via);
    }
}
