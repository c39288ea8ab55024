//! End-to-end with real third-party MCP software: the official Python `mcp`
//! client (over HTTP and stdio) and the official npm filesystem server, both
//! installed by scripts/setup-test-deps.sh.

mod common;

use std::process::Command;

use common::*;
use serde_json::{Value, json};

fn python() -> std::path::PathBuf {
    let p = repo_root().join(".venv/bin/python");
    assert!(p.exists(), "the Python test client is not installed: run scripts/setup-test-deps.sh (the README's test command .ci/run does)");
    p
}

/// A deployment with the workspace server and the npm filesystem server on a temp directory.
fn deployment_with_filesystem() -> (Deployment, std::path::PathBuf) {
    let dep = Deployment::new(&Setup::default());
    let files = dep.path("agent-files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("hello.txt"), "hello from the filesystem server\n").unwrap();
    std::fs::write(dep.path("secret.txt"), "outside the allowed directory\n").unwrap();
    dep.append_config(&format!(
        "\n[[servers]]\nmanifest = {:?}\ncommand = {:?}\nargs = [{:?}]\n",
        repo_root().join("tool-manifests/filesystem.toml").display().to_string(),
        node_bin_dir().join("mcp-server-filesystem").display().to_string(),
        files.display().to_string()
    ));
    dep.add_agent(
        "reader.toml",
        "name = \"reader\"\nid = \"spiffe://jitgate.local/agent/reader\"\nallowed_tools = [\"filesystem__read_text_file\", \"filesystem__list_directory\", \"workspace__read_note\"]\n",
    );
    (dep, files)
}

fn run_python(args: &[&str]) -> Value {
    let out = Command::new(python()).arg(repo_root().join("tests/support/python/client_e2e.py")).args(args).output().unwrap();
    assert!(out.status.success(), "python client failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("bad output ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test]
async fn npm_filesystem_server_through_jitgate_with_rmcp_client() {
    let (dep, files) = deployment_with_filesystem();
    let gw = Gateway::start(&dep);
    gw.wait_server("filesystem", "ready").await;
    let reader = gw.connect(&dep.mint("reader")).await;
    assert_eq!(tool_names(&reader).await, ["filesystem__list_directory", "filesystem__read_text_file", "workspace__read_note"]);
    let path = files.join("hello.txt");
    let r = call(&reader, "filesystem__read_text_file", json!({"path": path})).await.unwrap();
    assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
    assert!(text_of(&r).contains("hello from the filesystem server"));
    // A write tool is registered but not allowed for this agent.
    let r = raw_call(&reader, "filesystem__write_file", json!({"path": path, "content": "pwned"})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("tool_not_allowed"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello from the filesystem server\n");
}

#[tokio::test]
async fn python_client_over_http_sees_registered_tools_and_calls_both_servers() {
    let (dep, files) = deployment_with_filesystem();
    let gw = Gateway::start(&dep);
    gw.wait_server("filesystem", "ready").await;
    gw.wait_server("workspace", "ready").await;
    let calls = json!([
        ["workspace__read_note", {"name": "q3-plan.md"}],
        ["filesystem__read_text_file", {"path": files.join("hello.txt")}],
        ["workspace__delete_note", {"name": "q3-plan.md"}],
        ["workspace__read_note", {"name": "../secret"}]
    ]);
    let out = run_python(&["http", &gw.url, &dep.mint("reader"), &calls.to_string()]);
    assert_eq!(out["tools"], json!(["filesystem__list_directory", "filesystem__read_text_file", "workspace__read_note"]));
    let c = out["calls"].as_array().unwrap();
    assert_eq!(c[0]["is_error"], false, "{out}");
    assert!(c[0]["text"].as_str().unwrap().contains("Ship the billing export"));
    assert_eq!(c[1]["is_error"], false, "{out}");
    assert!(c[1]["text"].as_str().unwrap().contains("hello from the filesystem server"));
    assert_eq!(c[2]["code"], "request_denied", "{out}");
    assert_eq!(c[3]["code"], "request_denied", "{out}");
    assert!(dep.workspace_state.join("notes/q3-plan.md").exists());

    // And with a bad token the Python client cannot even connect.
    let status = Command::new(python())
        .arg(repo_root().join("tests/support/python/client_e2e.py"))
        .args(["http", &gw.url, "forged.token.value", "[]"])
        .output()
        .unwrap();
    assert!(!status.status.success());
}

#[tokio::test]
async fn python_client_over_stdio() {
    let (dep, files) = deployment_with_filesystem();
    let id_file = dep.path("identity.jwt");
    std::fs::write(&id_file, dep.mint("reader")).unwrap();
    // The client lists tools right after connecting, while the gateway is still
    // starting its downstream servers: it must still see them (first-start wait).
    let calls = json!([["filesystem__read_text_file", {"path": files.join("hello.txt")}], ["workspace__read_note", {"name": "welcome.md"}]]);
    let out = run_python(&["stdio", jitgate_bin().to_str().unwrap(), dep.config.to_str().unwrap(), id_file.to_str().unwrap(), &calls.to_string()]);
    assert_eq!(out["tools"], json!(["filesystem__list_directory", "filesystem__read_text_file", "workspace__read_note"]));
    assert!(out["calls"][0]["text"].as_str().unwrap().contains("hello from the filesystem server"));
    assert!(out["calls"][1]["text"].as_str().unwrap().contains("Welcome"));
}

#[tokio::test]
async fn python_client_runs_a_whole_task_and_nothing_works_after_its_end() {
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let out = Command::new(python())
        .arg(repo_root().join("tests/support/python/full_task.py"))
        .args([&gw.url, &dep.mint("triage")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    for ok in ["begin", "request_read", "read", "next_phase", "request_send", "send", "end"] {
        assert_eq!(r[ok]["is_error"], false, "{ok}: {}", r[ok]);
    }
    assert!(r["read"]["text"].as_str().unwrap().contains("Ship the billing export"));
    assert_eq!(r["after_end_replay"]["code"], "token_replayed");
    assert_eq!(r["after_end_spare"]["code"], "token_revoked");
    assert_eq!(r["after_end_request"]["code"], "task_inactive");
    assert_eq!(r["after_end_phase"]["code"], "task_inactive");
    assert_eq!(r["after_end_no_token"]["code"], "capability_required");
    let outbox = std::fs::read_to_string(dep.workspace_state.join("outbox.jsonl")).unwrap();
    assert_eq!(outbox.lines().count(), 1, "{outbox}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_gets_an_approval_gated_call_approved_by_a_person() {
    let dep = Deployment::new(&Setup { policies: quickstart_policies(), ..Setup::default() });
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let out = Command::new(python())
        .arg(repo_root().join("tests/support/python/approval_flow.py"))
        .args([&gw.url, &dep.mint("janitor"), &dep.mint_approver("alice@example.org", "platform-oncall")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["pending"]["decision"], "pending_approval", "{r}");
    assert_eq!(r["agent_approves"][0], 403, "the agent must not approve: {r}");
    assert_eq!(r["agent_approves"][1]["error"]["code"], "approver_is_agent");
    assert_eq!(r["status_before"], "pending");
    assert_eq!(r["person_approves"][0], 200, "{r}");
    assert_eq!(r["status_after"], "approved");
    assert_eq!(r["granted"]["decision"], "allow");
    assert_eq!(r["granted"]["approved_by"], "alice@example.org");
    assert_eq!(r["call"]["is_error"], false, "{r}");
    assert!(!dep.workspace_state.join("notes/meeting-2026-11-20.md").exists());
    assert_eq!(r["again"], "pending_approval", "an approval is spent on one token: {r}");
}
