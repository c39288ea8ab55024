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

/// The README's MCP Inspector walkthrough, with the real Inspector CLI
/// (2.12.0, pinned in tests/support/node). Each invocation opens its own
/// handshake-era session, so a token requested in one invocation cannot be
/// used in the next (that is the session binding at work, and the refusal
/// says what to do); `jit_begin_task` and then `jit_call` work.
#[tokio::test]
async fn mcp_inspector_cli_walkthrough_from_the_readme() {
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let token = dep.mint("triage");
    let inspector = node_bin_dir().join("mcp-inspector");
    assert!(inspector.exists(), "MCP Inspector is not installed: run scripts/setup-test-deps.sh");
    let node22 = node22();
    let path = format!("{}:{}", node22.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let run = |tool: &str, args: &[&str]| -> Value {
        let mut cmd = Command::new(&inspector);
        cmd.env("PATH", &path).env("HOME", dep.path("home")).args(["--cli", gw.url.as_str(), "--header", &format!("Authorization: Bearer {token}")]);
        cmd.args(["--method", "tools/call", "--tool-name", tool, "--tool-arg"]).args(args);
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)))
    };
    let begun = run("jit_begin_task", &["objective=read the Q3 plan", r#"phases=[{"name":"read","tools":["workspace__read_note"]}]"#]);
    let task = begun["structuredContent"]["task"].as_str().unwrap_or_else(|| panic!("{begun}")).to_owned();
    let task_arg = format!("task={task}");

    // Across invocations: the token of one session is refused in the next, with the way out.
    let granted = run("jit_request", &[&task_arg, "tool=workspace__read_note", r#"arguments={"name":"welcome.md"}"#, "purpose=read"]);
    let grant = &granted["structuredContent"];
    assert_eq!(grant["decision"], "allow", "{granted}");
    assert_eq!(grant["expires_in_seconds"], 300, "sized for a person pasting it: {granted}");
    let moved = run("workspace__read_note", &["name=welcome.md", &format!("_jit_token={}", grant["token"].as_str().unwrap())]);
    assert_eq!(moved["_meta"]["jitgate/error"]["code"], "token_wrong_session", "{moved}");
    assert!(moved["_meta"]["jitgate/error"]["message"].as_str().unwrap().contains("jit_call"), "{moved}");

    // The walkthrough: jit_call does the request and the call in one invocation.
    let read = run("jit_call", &[&task_arg, "tool=workspace__read_note", r#"arguments={"name":"q3-plan.md"}"#, "purpose=read the plan"]);
    assert_eq!(read["isError"], false, "{read}");
    assert!(read.to_string().contains("Ship the billing export"), "{read}");
    assert!(read["_meta"]["jitgate/token"].is_string(), "{read}");
    // And it is still one call: a jit_call outside the plan is refused.
    let outside = run("jit_call", &[&task_arg, "tool=workspace__send_message", r#"arguments={"to":"x@example.org","subject":"s","body":"b"}"#, "purpose=send"]);
    assert_eq!(outside["isError"], true, "{outside}");
}

/// Issue 16: the README's "Register a server" walkthrough, step by step, on
/// the official npm filesystem server: `manifest init` with a starting
/// policy, the `[[servers]]` entry, the tools in an agent file, a clean
/// `check`, then a first authorized call through the gateway. Reading is
/// allowed. A write is proposed high risk (it overwrites files) and the
/// read file's content untrusted, so: a write on the chain the task's plan
/// declares runs, but a write in a new task begun right after reading the
/// file (how a hijacked agent would widen its tools) waits for a person, and
/// nothing is written.
#[tokio::test]
async fn registering_the_npm_filesystem_server_as_the_readme_says() {
    let dep = Deployment::new(&Setup { policies: quickstart_policies(), ..Setup::default() });
    let files = dep.path("agent-files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("hello.txt"), "hello from the filesystem server\n").unwrap();
    let server = node_bin_dir().join("mcp-server-filesystem").display().to_string();
    let (manifest, policy) = (dep.path("fs.toml"), dep.path("policies/60-fs.cedar"));
    let (code, _, err) = jitgate(&[
        "manifest", "init", "fs", "--out", manifest.to_str().unwrap(), "--policy", policy.to_str().unwrap(), "--team", "support", "--",
        &server, files.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    dep.append_config(&format!("\n[[servers]]\nmanifest = {:?}\n", manifest.display().to_string()));
    dep.add_agent("files.toml", "name = \"files\"\nid = \"spiffe://jitgate.local/agent/files\"\nteam = \"support\"\nallowed_tools = [\"fs__*\"]\n");
    let (code, _, err) = jitgate(&["check", "--offline", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("no policy permits"), "registration is complete: {err}");

    let gw = Gateway::start(&dep);
    gw.wait_server("fs", "ready").await;
    let agent = gw.connect_modern(&dep.mint("files")).await;
    let task = begin(&agent, json!([{"name": "work", "tools": ["fs__read_text_file", "fs__write_file"]}])).await.unwrap();
    let path = files.join("hello.txt").display().to_string();
    let read = raw_call(&agent, "jit_call", json!({"task": task, "tool": "fs__read_text_file", "arguments": {"path": path}, "purpose": "read"})).await.unwrap();
    assert_ne!(read.is_error, Some(true), "{}", text_of(&read));
    assert!(text_of(&read).contains("hello from the filesystem server"), "{}", text_of(&read));
    let target = files.join("new.txt").display().to_string();
    let follows = read.meta.as_ref().and_then(|m| m.0.get("jitgate/token")).cloned().unwrap_or_default();
    let write = grant(&agent, json!({"task": task, "tool": "fs__write_file", "arguments": {"path": target, "content": "x"}, "purpose": "write", "follows": follows})).await.unwrap();
    assert_eq!(write["decision"], "allow", "high risk on the chain the plan declares: {write}");
    let read = raw_call(&agent, "jit_call", json!({"task": task, "tool": "fs__read_text_file", "arguments": {"path": path}, "purpose": "read again"})).await.unwrap();
    assert_ne!(read.is_error, Some(true), "{}", text_of(&read));
    let widened = begin(&agent, json!([{"name": "write", "tools": ["fs__write_file"]}])).await.unwrap();
    let other = files.join("other.txt").display().to_string();
    let write = grant(&agent, json!({"task": widened, "tool": "fs__write_file", "arguments": {"path": other, "content": "x"}, "purpose": "write"})).await.unwrap();
    assert_eq!(write["decision"], "pending_approval", "{write}");
    assert!(!files.join("other.txt").exists());
}

/// The README's own Python programs, taken from the README as a new user
/// would copy them, run with the official Python SDK (2.3.0, default
/// client): over HTTP against a gateway, and over stdio where the program
/// starts jitgate itself. Only the addresses and paths are this test's.
#[tokio::test]
async fn the_readme_python_examples_run_as_written() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let blocks: Vec<&str> = readme.split("```python\n").skip(1).filter_map(|b| b.split("\n```").next()).collect();
    let http = blocks.iter().find(|b| b.contains("streamable_http_client(\"http://127.0.0.1:7420/mcp\"")).expect("the README's HTTP example");
    let stdio = blocks.iter().find(|b| b.contains("StdioServerParameters(command=\"jitgate\"")).expect("the README's stdio example");

    // The stdio step mints its own file: the HTTP step's token is still in use.
    let minted: Vec<&str> = readme.lines().filter(|l| l.starts_with("jitgate identity mint") && l.contains("--agent triage")).collect();
    let http_file = minted.iter().find_map(|l| l.split("> ").nth(1)).expect("the HTTP step's mint command");
    let stdio_file = minted.iter().find_map(|l| l.split("--out ").nth(1)).expect("the stdio step's mint command");
    assert_ne!(http_file, stdio_file, "the stdio step overwrites the HTTP step's token");
    assert!(http.contains(http_file) && stdio.contains(stdio_file), "each program reads the file its step minted");

    let dep = Deployment::new(&Setup::default());
    let identity = dep.path("triage.jwt");
    std::fs::write(&identity, dep.mint("triage")).unwrap();
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let run = |name: &str, program: String| {
        let file = dep.path(name);
        std::fs::write(&file, program).unwrap();
        let out = Command::new(python()).arg(&file).output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(out.status.success(), "{name} failed:\n{stdout}\n{stderr}");
        stdout
    };
    let out = run("http_example.py", http.replace("http://127.0.0.1:7420/mcp", &gw.url).replace(http_file, identity.to_str().unwrap()));
    assert!(out.contains("2026-07-28") && out.contains("Ship the billing export"), "{out}");
    let out = run(
        "stdio_example.py",
        stdio
            .replace("command=\"jitgate\"", &format!("command={:?}", jitgate_bin().display().to_string()))
            .replace("examples/quickstart/gateway.toml", dep.config.to_str().unwrap())
            .replace(stdio_file, identity.to_str().unwrap()),
    );
    assert!(out.contains("Ship the billing export"), "{out}");
}
