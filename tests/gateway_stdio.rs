//! End-to-end over stdio: the rmcp client spawns `jitgate serve --stdio`
//! with an identity file; raw JSON-RPC lines test the stdio guard.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test]
async fn stdio_agent_lists_and_calls_with_an_identity_file_that_rotates() {
    let dep = Deployment::new(&Setup::default());
    let id_file = dep.path("identity.jwt");
    std::fs::write(&id_file, dep.mint("triage")).unwrap();
    let client = connect_stdio(&dep, &id_file).await;
    let names = eventually(Duration::from_secs(30), || async {
        let n = tool_names(&client).await;
        (!n.is_empty()).then_some(n)
    })
    .await;
    assert_eq!(names, ["workspace__list_notes", "workspace__read_inbox", "workspace__read_note", "workspace__send_message"]);
    let r = call(&client, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap();
    assert!(text_of(&r).contains("Welcome"));

    // The identity file is rotated (as SPIFFE does) to an expired token: calls are refused.
    let key = dep.dev_key();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let expired = jitgate::identity::mint(&key, "jitgate-dev-issuer", "spiffe://jitgate.local/agent/triage", GATEWAY_ID, now - 3600, 60).unwrap();
    std::fs::write(&id_file, &expired).unwrap();
    let r = call(&client, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("identity_expired"), "{}", text_of(&r));

    // Rotated again to a fresh token: the same session works again without reconnecting.
    std::fs::write(&id_file, dep.mint("triage")).unwrap();
    let r = call(&client, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap();
    assert_eq!(r.is_error, Some(false), "{}", text_of(&r));
}

#[test]
fn stdio_refuses_to_start_with_a_bad_identity() {
    let dep = Deployment::new(&Setup::default());
    let id_file = dep.path("identity.jwt");
    let run = |content: Option<&str>| {
        match content {
            Some(c) => std::fs::write(&id_file, c).unwrap(),
            None => {
                let _ = std::fs::remove_file(&id_file);
            }
        }
        let out = Command::new(jitgate_bin())
            .args(["serve", "--config"])
            .arg(&dep.config)
            .args(["--stdio", "--identity-file"])
            .arg(&id_file)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run(Some("garbage"));
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("identity token is malformed"), "{err}");
    let (code, err) = run(None);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("no identity token"), "{err}");
    // Without --identity-file at all.
    let out = Command::new(jitgate_bin()).args(["serve", "--config"]).arg(&dep.config).arg("--stdio").stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--identity-file"));
}

/// Raw JSON-RPC over the stdio pipes, line by line.
struct RawStdio {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl RawStdio {
    fn start(dep: &Deployment, id_file: &std::path::Path) -> Self {
        let mut child = Command::new(jitgate_bin())
            .args(["serve", "--config"])
            .arg(&dep.config)
            .args(["--stdio", "--identity-file"])
            .arg(id_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self { child, stdin, stdout }
    }
    fn send(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).unwrap();
        self.stdin.write_all(b"\n").unwrap();
        self.stdin.flush().unwrap();
    }
    /// The next response, skipping server notifications (e.g. tools/list_changed
    /// when a downstream server comes up), which may arrive at any time.
    fn recv(&mut self) -> serde_json::Value {
        loop {
            let mut line = String::new();
            self.stdout.read_line(&mut line).unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
            if v.get("method").is_some() && v.get("id").is_none() {
                continue;
            }
            return v;
        }
    }
}

impl Drop for RawStdio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn stdio_answers_malformed_oversized_and_unknown_messages_and_keeps_serving() {
    let dep = Deployment::new(&Setup { limits: "max_message_bytes = 2048".into(), ..Setup::default() });
    let id_file = dep.path("identity.jwt");
    std::fs::write(&id_file, dep.mint("triage")).unwrap();
    let mut s = RawStdio::start(&dep, &id_file);
    s.send(INIT);
    assert_eq!(s.recv()["id"], 1);
    s.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);

    s.send("{oops");
    let e = s.recv();
    assert_eq!(e["error"]["code"], -32700, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("not valid JSON"));

    s.send(&format!(r#"{{"jsonrpc":"2.0","id":2,"method":"ping","params":{{"pad":"{}"}}}}"#, "x".repeat(5000)));
    let e = s.recv();
    assert_eq!(e["error"]["data"]["code"], "message_too_large", "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("limit of 2048 bytes"));

    s.send(r#"[{"jsonrpc":"2.0","id":3,"method":"ping"}]"#);
    assert_eq!(s.recv()["error"]["data"]["code"], "batch_not_supported");

    s.send(r#"{"jsonrpc":"2.0","id":4,"method":"tools/frobnicate","params":{}}"#);
    let e = s.recv();
    assert_eq!((e["id"].clone(), e["error"]["code"].clone()), (json!(4), json!(-32601)), "{e}");

    // Still serving: a real request works.
    s.send(r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#);
    let ok = s.recv();
    assert_eq!(ok["id"], 5, "{ok}");
    assert!(ok.get("error").is_none(), "{ok}");
}

/// The MCP client that spawns `serve --stdio` shows its user our stderr
/// (Claude Desktop's log, the terminal an SDK script runs in): there the
/// gateway logs warnings and errors only, unless `JITGATE_LOG` asks for
/// more; an HTTP gateway keeps logging at info.
#[test]
fn stdio_writes_only_warnings_to_the_clients_stderr_unless_jitgate_log_asks() {
    let dep = Deployment::new(&Setup::default());
    let id_file = dep.path("identity.jwt");
    std::fs::write(&id_file, dep.mint("triage")).unwrap();
    let run = |log: Option<&str>| -> String {
        let err_path = dep.path(&format!("stderr-{}.log", log.unwrap_or("default")));
        let mut cmd = Command::new(jitgate_bin());
        cmd.args(["serve", "--config"])
            .arg(&dep.config)
            .args(["--stdio", "--identity-file"])
            .arg(&id_file)
            .env_remove("JITGATE_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&err_path).unwrap());
        if let Some(level) = log {
            cmd.env("JITGATE_LOG", level);
        }
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        writeln!(stdin, "{INIT}").unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.contains("\"id\":1"), "{line}");
        // The client goes away: the gateway stops, logging as it does.
        drop(stdin);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "serve --stdio did not stop when its stdin closed");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::read_to_string(&err_path).unwrap()
    };
    let quiet = run(None);
    assert!(!quiet.contains(" INFO ") && !quiet.contains("gateway starting"), "info lines on the client's stderr:\n{quiet}");
    let asked = run(Some("info"));
    assert!(asked.contains("gateway starting"), "JITGATE_LOG=info must still show info:\n{asked}");
}
