//! Issue 28, part 2: approvals that reach a person. Webhooks signed by the
//! Standard Webhooks scheme, received by a real HTTP server on loopback that
//! verifies them with the scheme's reference library, fails the first
//! attempts and sees the retries; outcomes in the audit trail.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// Standard Webhooks secret of the test (32 bytes).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo=";

struct Receiver {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_receiver(dir: &std::path::Path, fail_first: u32) -> Receiver {
    let log = dir.join("received.jsonl");
    let mut child = Command::new(repo_root().join(".venv/bin/python"))
        .arg(repo_root().join("tests/support/python/webhook_receiver.py"))
        .arg(&log)
        .arg(fail_first.to_string())
        .env("WEBHOOK_SECRET", SECRET)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("the receiver could not start ({e}): run scripts/setup-test-deps.sh"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().parse().unwrap_or_else(|_| panic!("the receiver said {line:?}"));
    Receiver { child, port, log }
}

/// Every attempt the receiver logged.
fn received(r: &Receiver) -> Vec<Value> {
    std::fs::read_to_string(&r.log).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Wait (at most a minute) until `ok` holds of what was received.
async fn wait_for(r: &Receiver, what: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = received(r);
        if ok(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "never received {what}: {got:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn audit_records(dep: &Deployment, kind: &str) -> Vec<Value> {
    let (_, export, _) = jitgate(&["audit", "export", "--config", dep.config.to_str().unwrap()]);
    export.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v["kind"] == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_break_glass_and_quarantines_reach_signed_webhooks_with_retries() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = start_receiver(dir.path(), 2);
    let closed = free_port();
    let extra = format!(
        r#"
[notify]
ui_url = "https://gateway.example.org"

[[notify.webhooks]]
name = "oncall"
url = "http://127.0.0.1:{port}/oncall"
secret_file = "webhook-secret"
first_retry = "1s"
max_attempts = 4

[[notify.webhooks]]
name = "chat"
url = "http://127.0.0.1:{port}/chat"
secret_env = "JITGATE_TEST_CHAT_SECRET"
format = "slack"
events = ["agent.quarantined"]
first_retry = "1s"

[[notify.webhooks]]
name = "nobody-listens"
url = "http://127.0.0.1:{closed}/hook"
secret_file = "webhook-secret"
events = ["approval.pending"]
first_retry = "1s"
max_attempts = 2
"#,
        port = receiver.port
    );
    let dep = Deployment::new(&Setup { policies: quickstart_policies(), extra_config: extra, ..Setup::default() });
    std::fs::write(dep.path("webhook-secret"), SECRET).unwrap();
    // The chat webhook's secret comes from the gateway's environment.
    let mut serve = Command::new(jitgate_bin());
    serve.args(["serve", "--config"]).arg(&dep.config).args(["--listen", "127.0.0.1:0"]).env("JITGATE_TEST_CHAT_SECRET", SECRET);
    let gw = Gateway::from_command(serve);
    gw.wait_server("workspace", "ready").await;

    // A destructive request waits for a person; the agent hears so at once.
    let janitor = gw.connect(&dep.mint("janitor")).await;
    let task = begin(&janitor, json!([{"name": "tidy", "tools": ["workspace__delete_note"]}])).await.unwrap();
    let held = grant(&janitor, json!({"task": task, "tool": "workspace__delete_note", "arguments": {"name": "old-plans.md"}, "purpose": "remove the old plans"})).await.unwrap();
    assert_eq!(held["decision"], "pending_approval", "{held}");
    let approval = held["approval"].as_str().unwrap().to_owned();

    // The receiver refused the first two attempts; the third got through.
    let got = wait_for(&receiver, "the pending approval, delivered", |g| g.iter().any(|v| v["path"] == "/oncall" && v["status"] == 204)).await;
    let pending: Vec<&Value> = got.iter().filter(|v| v["path"] == "/oncall").collect();
    assert_eq!(pending.iter().map(|v| v["status"].as_u64().unwrap()).collect::<Vec<_>>(), vec![503, 503, 204], "{pending:#?}");
    assert!(pending.iter().all(|v| v["verified"] == true), "every attempt verifies with the reference library: {pending:#?}");
    assert!(pending.iter().all(|v| v["id"] == pending[0]["id"]), "one webhook-id across the retries: {pending:#?}");
    let body: Value = serde_json::from_str(pending[2]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["type"], "approval.pending");
    assert_eq!(body["data"]["approval"], approval.as_str());
    assert_eq!(body["data"]["group"], "platform-oncall");
    assert_eq!(body["data"]["tool"], "workspace__delete_note");
    assert_eq!(body["data"]["agent_name"], "janitor");
    assert_eq!(body["data"]["link"], "https://gateway.example.org/ui/approvals");
    let raw = pending[2]["body"].as_str().unwrap();
    for secret in ["old-plans.md", "remove the old plans", "eyJ", SECRET] {
        assert!(!raw.contains(secret), "the notification carries `{secret}`: {raw}");
    }

    // The outcomes are on record: delivered after 3 attempts; given up
    // after 2 where nobody listens.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (delivered, gave_up) = loop {
        let (d, g) = (audit_records(&dep, "notification.delivered"), audit_records(&dep, "notification.gave_up"));
        if !d.is_empty() && !g.is_empty() {
            break (d, g);
        }
        assert!(Instant::now() < deadline, "no notification outcomes on record: {d:?} {g:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!((delivered[0]["data"]["webhook"].as_str(), delivered[0]["data"]["attempts"].as_u64()), (Some("oncall"), Some(3)), "{delivered:?}");
    assert_eq!((gave_up[0]["data"]["webhook"].as_str(), gave_up[0]["data"]["attempts"].as_u64()), (Some("nobody-listens"), Some(2)), "{gave_up:?}");

    // A person decides in another process (the CLI): that is notified too.
    let alice = dep.path("alice.jwt");
    std::fs::write(&alice, dep.mint_approver("alice@example.org", "platform-oncall")).unwrap();
    let cfg = dep.config.to_str().unwrap();
    let (code, _, err) = jitgate(&["approvals", "approve", &approval, "--config", cfg, "--credential", alice.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let got = wait_for(&receiver, "the decision", |g| g.iter().any(|v| v["status"] == 204 && v["body"].as_str().is_some_and(|b| b.contains("approval.decided")))).await;
    let decided = got.iter().rev().find(|v| v["status"] == 204 && v["body"].as_str().is_some_and(|b| b.contains("approval.decided"))).unwrap();
    let body: Value = serde_json::from_str(decided["body"].as_str().unwrap()).unwrap();
    assert_eq!((body["data"]["decision"].as_str(), body["data"]["by"].as_str()), (Some("approved"), Some("alice@example.org")), "{body}");

    // The agent goes on unaffected: the approved request gets its token.
    let granted = grant(&janitor, json!({"task": task, "tool": "workspace__delete_note", "arguments": {"name": "old-plans.md"}, "purpose": "remove the old plans"})).await.unwrap();
    assert!(granted["token"].is_string(), "{granted}");

    // Break-glass: the reviewers hear of it, with a link to the reviews.
    let urgent = begin(&janitor, json!([{"name": "rotate", "tools": ["workspace__rotate_api_key"]}])).await.unwrap();
    let bg = grant(&janitor, json!({"task": urgent, "tool": "workspace__rotate_api_key", "arguments": {}, "purpose": "rotate the leaked key", "break_glass": {"justification": "INC-7: the key leaked"}})).await.unwrap();
    assert!(bg["token"].is_string(), "{bg}");
    let got = wait_for(&receiver, "break-glass", |g| g.iter().any(|v| v["status"] == 204 && v["body"].as_str().is_some_and(|b| b.contains("break_glass.used")))).await;
    let used = got.iter().find(|v| v["status"] == 204 && v["body"].as_str().is_some_and(|b| b.contains("break_glass.used"))).unwrap();
    let body: Value = serde_json::from_str(used["body"].as_str().unwrap()).unwrap();
    assert_eq!((body["data"]["tool"].as_str(), body["data"]["link"].as_str()), (Some("workspace__rotate_api_key"), Some("https://gateway.example.org/ui/reviews")), "{body}");
    assert!(!used["body"].as_str().unwrap().contains("INC-7"), "the agent's justification stays on /ui");

    // A quarantine (by an operator, in another process) reaches the chat
    // webhook as a Slack-compatible body, signed the same way.
    let (code, _, err) = jitgate(&["agents", "quarantine", "triage", "--reason", "reads mail it was never asked to", "--config", cfg]);
    assert_eq!(code, Some(0), "{err}");
    let got = wait_for(&receiver, "the quarantine in chat", |g| g.iter().any(|v| v["path"] == "/chat" && v["status"] == 204)).await;
    let chat = got.iter().find(|v| v["path"] == "/chat" && v["status"] == 204).unwrap();
    assert_eq!(chat["verified"], true);
    let body: Value = serde_json::from_str(chat["body"].as_str().unwrap()).unwrap();
    let text = body["text"].as_str().unwrap_or_else(|| panic!("a Slack body has text: {body}"));
    assert!(text.contains("triage") && text.contains("quarantined") && text.contains("reads mail it was never asked to"), "{text}");
    // The chat webhook asked for quarantines only.
    assert!(got.iter().filter(|v| v["path"] == "/chat").all(|v| v["body"].as_str().is_some_and(|b| !b.contains("approval"))));
}

/// The operators' guide's `[notify]` recipe, as written, is a config that
/// loads (with its secret file in place).
#[test]
fn the_guides_notify_recipe_loads_as_written() {
    let guide = std::fs::read_to_string(repo_root().join("docs/operations.md")).unwrap();
    let section = guide.split("## Notifications").nth(1).expect("the guide's notifications section");
    let recipe = section.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).expect("its recipe");
    let dep = Deployment::new(&Setup { extra_config: format!("\n{recipe}"), ..Setup::default() });
    std::fs::create_dir_all(dep.path("secrets")).unwrap();
    std::fs::write(dep.path("secrets/webhook-secret"), SECRET).unwrap();
    let (code, _, err) = jitgate(&["check", "--offline", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
}

/// A webhook whose secret is not a Standard Webhooks secret stops the start
/// with a message that says what to fix (it would fail every delivery).
#[test]
fn a_webhook_secret_in_the_wrong_form_stops_the_start() {
    let extra = "\n[[notify.webhooks]]\nname = \"oncall\"\nurl = \"http://127.0.0.1:9/hook\"\nsecret_file = \"webhook-secret\"\n";
    let dep = Deployment::new(&Setup { extra_config: extra.into(), ..Setup::default() });
    std::fs::write(dep.path("webhook-secret"), "hunter2").unwrap();
    let out = Command::new(jitgate_bin()).args(["serve", "--config", dep.config.to_str().unwrap(), "--listen", "127.0.0.1:0"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("webhook `oncall`") && err.contains("whsec_"), "{err}");
    // Plain HTTP to another host is refused when the config loads.
    let dep = Deployment::new(&Setup { extra_config: extra.replace("http://127.0.0.1:9", "http://hooks.example.org"), ..Setup::default() });
    let (code, _, err) = jitgate(&["check", "--offline", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("must be https"), "{err}");
}
