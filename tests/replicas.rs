//! Several `jitgate serve` replicas on one PostgreSQL store behind nginx
//! (round robin, no stickiness, for sessionless requests; the shipped
//! `deploy/nginx.conf` routes a handshake-era session to its replica): the
//! official Python and TypeScript clients run whole tasks through the
//! balancer; a token is consumed by exactly one call whichever
//! replicas receive the attempts; a revocation committed anywhere cancels an
//! in-flight call on another replica; the audit chain stays one chain.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::nginx::Nginx;
use common::pg::Postgres;
use common::*;
use serde_json::{Value, json};

fn python() -> std::path::PathBuf {
    let p = repo_root().join(".venv/bin/python");
    assert!(p.exists(), "the Python test client is not installed: run scripts/setup-test-deps.sh (the README's test command .ci/run does)");
    p
}

/// A deployment whose store is a fresh database on `pg`; Host checks accept
/// the balancer's port.
fn replicated(pg: &Postgres, setup: Setup) -> Deployment {
    let store = format!("\n[store]\nurl = \"{}\"\npool_size = 8\n\n[http]\nallowed_hosts = [\"127.0.0.1\"]\n", pg.fresh_database());
    Deployment::new(&Setup { extra_config: format!("{}{store}", setup.extra_config), ..setup })
}

fn host_port(g: &Gateway) -> String {
    g.base.trim_start_matches("http://").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_behind_nginx_serve_whole_tasks_and_a_token_runs_once_whichever_replica_gets_it() {
    let pg = Postgres::start();
    let dep = replicated(&pg, Setup { policies: quickstart_policies(), ..Setup::default() });
    let replicas: Vec<Gateway> = (0..3).map(|_| Gateway::start(&dep)).collect();
    for r in &replicas {
        r.wait_server("workspace", "ready").await;
    }
    let lb = Nginx::start(&replicas.iter().map(host_port).collect::<Vec<_>>());

    // The official Python client in its default mode (MCP 2026-07-28, no
    // session) runs the README's worked example through the balancer: each
    // request, and the person's approval over the HTTP API, may land on
    // another replica.
    let out = Command::new(python())
        .arg(repo_root().join("tests/support/python/worked_example.py"))
        .args(["auto", "http", &lb.url, &dep.mint("janitor"), &dep.mint_approver("alice@example.org", "platform-oncall")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), lb.error_log());
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["protocol_version"], "2026-07-28", "{r}");
    for ok in ["begin", "request_read", "read", "next_phase", "pending", "granted", "delete", "end"] {
        assert_eq!(r[ok]["is_error"], false, "{ok}: {r}");
    }
    assert!(r["read"]["text"].as_str().unwrap().contains("Ship the billing export"), "{r}");
    assert_eq!(r["replay"]["code"], "token_replayed", "{r}");
    assert_eq!(r["approved_status"], 200);
    assert!(!dep.workspace_state.join("notes/meeting-2026-11-20.md").exists(), "the approved delete ran");
    assert_eq!(r["break_glass"]["code"], "policy_denied", "{r}");
    assert_eq!(r["after_end"]["code"], "task_inactive", "{r}");
    // Every replica served part of it.
    for (i, r) in replicas.iter().enumerate() {
        assert!(r.log().contains("call received"), "replica {i} got no call:\n{}", r.log());
    }

    // 50 concurrent uses of one token, spread over the three replicas.
    let identity = dep.mint("triage");
    let mut clients = Vec::new();
    for r in &replicas {
        clients.push(Arc::new(r.connect_modern(&identity).await));
    }
    let task = begin(&clients[0], json!([{"name": "read", "tools": ["workspace__read_note"]}])).await.unwrap();
    let token = request(&clients[1], &task, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap();
    let mut attempts = Vec::new();
    for i in 0..50 {
        let (client, token) = (clients[i % 3].clone(), token.clone());
        attempts.push(tokio::spawn(async move { call_with_token(&client, "workspace__read_note", json!({"name": "welcome.md"}), &token).await }));
    }
    let mut ran = 0;
    let mut refused = std::collections::BTreeMap::new();
    for a in attempts {
        let r = a.await.unwrap().unwrap();
        match refusal_code(&r) {
            None => {
                assert!(text_of(&r).contains("Welcome"), "{}", text_of(&r));
                ran += 1;
            }
            Some(code) => *refused.entry(code).or_insert(0) += 1,
        }
    }
    assert_eq!(ran, 1, "exactly one use runs; refusals: {refused:?}");
    assert_eq!(refused.get("token_replayed"), Some(&49), "{refused:?}");

    // The legitimate flow goes on: a new token for the next call works.
    let token = request(&clients[2], &task, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap();
    let r = call_with_token(&clients[0], "workspace__read_note", json!({"name": "welcome.md"}), &token).await.unwrap();
    assert_eq!(refusal_code(&r), None, "{}", text_of(&r));

    // One audit chain from three writers, verified by the operator command.
    drop(clients);
    let (code, out, err) = jitgate(&["audit", "verify", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}\n{err}");
}

/// Issue 25: behind plain round robin, every handshake-era client failed on
/// its second request (`404 session not found`): its session lives in the
/// replica that opened it. With the shipped `deploy/nginx.conf`, as written
/// but for its addresses, and replicas started with `--replica r1`..`r3`,
/// each session's requests reach its replica and the rest go anywhere: the
/// official TypeScript client in its default mode, the Python client's
/// handshake mode and the README's Inspector CLI recipe run whole tasks,
/// with a person's approval over the HTTP API in between, through the
/// balancer. A replica that stops loses its sessions, and the client is told
/// to start a new one (404), not sent to a replica that half-knows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_era_clients_work_through_the_shipped_nginx_config_over_three_replicas() {
    let pg = Postgres::start();
    let dep = replicated(&pg, Setup { policies: quickstart_policies(), ..Setup::default() });
    let mut replicas: Vec<Gateway> = ["r1", "r2", "r3"].iter().map(|name| Gateway::start_replica(&dep, name)).collect();
    for r in &replicas {
        r.wait_server("workspace", "ready").await;
    }
    let addresses: [String; 3] = [host_port(&replicas[0]), host_port(&replicas[1]), host_port(&replicas[2])];
    let lb = Nginx::start_deployed(&addresses);
    let approver = dep.mint_approver("alice@example.org", "platform-oncall");

    // The official TypeScript client, default mode: the initialize handshake.
    let out = Command::new("node")
        .arg(repo_root().join("tests/support/node/worked_example.mjs"))
        .args(["default", "http", &lb.url, &dep.mint("janitor"), &approver])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), lb.error_log());
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["protocol_version"], "2025-11-25", "{r}");
    for ok in ["begin", "request_read", "read", "next_phase", "pending", "granted", "delete", "end"] {
        assert_eq!(r[ok]["is_error"], false, "TypeScript {ok}: {r}");
    }

    // The official Python client with the handshake (`legacy`).
    let out = Command::new(python())
        .arg(repo_root().join("tests/support/python/worked_example.py"))
        .args(["legacy", "http", &lb.url, &dep.mint("janitor"), &approver])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), lb.error_log());
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    for ok in ["begin", "request_read", "read", "next_phase", "pending", "granted", "end"] {
        assert_eq!(r[ok]["is_error"], false, "Python {ok}: {r}");
    }
    // The TypeScript run deleted the note already: the server says so, and
    // jitgate let the call through.
    assert!(r["delete"]["code"].is_null() && r["delete"]["text"].as_str().unwrap().contains("no note named"), "{r}");

    // The README's Inspector CLI recipe: one session per invocation.
    let inspector = node_bin_dir().join("mcp-inspector");
    assert!(inspector.exists(), "MCP Inspector is not installed: run scripts/setup-test-deps.sh");
    let path = format!("{}:{}", node22().parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let token = dep.mint("triage");
    let run = |tool: &str, args: &[&str]| -> Value {
        let out = Command::new(&inspector)
            .env("PATH", &path)
            .env("HOME", dep.path("home"))
            .args(["--cli", lb.url.as_str(), "--header", &format!("Authorization: Bearer {token}"), "--method", "tools/call", "--tool-name", tool, "--tool-arg"])
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)))
    };
    let begun = run("jit_begin_task", &["objective=read the Q3 plan", r#"phases=[{"name":"read","tools":["workspace__read_note"]}]"#]);
    let task = begun["structuredContent"]["task"].as_str().unwrap_or_else(|| panic!("{begun}")).to_owned();
    let read = run("jit_call", &[&format!("task={task}"), "tool=workspace__read_note", r#"arguments={"name":"q3-plan.md"}"#, "purpose=read the plan"]);
    assert_eq!(read["isError"], false, "{read}");
    assert!(read.to_string().contains("Ship the billing export"), "{read}");

    // Sessions were spread over the replicas and each was served by its own.
    let opened: Vec<usize> = replicas.iter().map(|r| r.log().matches("session bound to its agent").count()).collect();
    assert!(opened.iter().filter(|n| **n > 0).count() >= 2, "sessions opened on {opened:?}");

    // A session whose replica is gone: 404 from its backup, so the client
    // starts over; a new session works.
    let client = reqwest::Client::new();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "probe", "version": "0"}}});
    let auth = format!("Bearer {}", dep.mint("triage"));
    let mut owner = None;
    for _ in 0..12 {
        let resp = client.post(&lb.url).header("Authorization", &auth).header("Accept", "application/json, text/event-stream").json(&init).send().await.unwrap();
        let sid = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert!(["r1.", "r2.", "r3."].iter().any(|p| sid.starts_with(p)), "a session id names its replica: {sid:?}");
        if sid.starts_with("r1.") {
            owner = Some(sid);
            break;
        }
    }
    let sid = owner.expect("round robin reaches r1 within 12 initializations");
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
    let ask = |sid: String| {
        let (client, url, auth, ping) = (client.clone(), lb.url.clone(), auth.clone(), ping.clone());
        async move {
            client.post(&url).header("Authorization", &auth).header("Accept", "application/json, text/event-stream").header("mcp-session-id", sid).json(&ping).send().await.unwrap().status()
        }
    };
    assert!(ask(sid.clone()).await.is_success(), "the session's own replica answers");
    drop(replicas.remove(0));
    assert_eq!(ask(sid).await, reqwest::StatusCode::NOT_FOUND, "{}", lb.error_log());
}

/// Issue 25: replicas must sign with the same capability keys (a token one
/// grants is refused by another). A replica whose state directory holds
/// other keys than the ones the deployment's audit checkpoints are signed
/// with does not start, and says what to copy; one with the same keys does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_other_signing_keys_does_not_start() {
    let pg = Postgres::start();
    let dep = replicated(&pg, Setup { extra_config: "\n[audit]\ncheckpoint_interval = \"1s\"\n".into(), ..Setup::default() });
    let first = Gateway::start(&dep);
    first.wait_server("workspace", "ready").await;
    let agent = first.connect(&dep.mint("triage")).await;
    begin(&agent, json!([{"name": "read", "tools": ["workspace__read_note"]}])).await.unwrap();
    // A signed checkpoint is in the store (every second here).
    let config_text = std::fs::read_to_string(&dep.config).unwrap();
    let url = config_text.split("url = \"").nth(1).and_then(|r| r.split('"').next()).unwrap().to_owned();
    eventually(Duration::from_secs(30), || {
        let out = Command::new("psql").args([url.as_str(), "-Atc", "SELECT count(*) FROM audit_checkpoints"]).output().unwrap();
        let n: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
        async move { (n > 0).then_some(()) }
    })
    .await;
    // The same config with a state directory of its own: new keys.
    let other = dep.path("other.toml");
    let text = std::fs::read_to_string(&dep.config).unwrap().replace("state_dir = \"state\"", "state_dir = \"state-elsewhere\"");
    std::fs::write(&other, text).unwrap();
    let mut child = Command::new(jitgate_bin())
        .args(["serve", "--config", other.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It must stop by itself; if it serves instead, it is stopped and the test fails.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("a replica with other signing keys started serving");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(4), "{err}");
    assert!(err.contains("every replica must sign with the same keys") && err.contains("state-elsewhere/keys"), "{err}");
    // A replica with the deployment's keys starts.
    let second = Gateway::start(&dep);
    second.wait_server("workspace", "ready").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_replica_cancels_an_in_flight_call_on_another() {
    let pg = Postgres::start();
    let dep = replicated(&pg, Setup::default());
    dep.add_faulty_server(|m| m.replace("call_timeout = \"30s\"", "call_timeout = \"300s\""));
    let (a, b) = (Gateway::start(&dep), Gateway::start(&dep));
    a.wait_server("faulty", "ready").await;
    b.wait_server("faulty", "ready").await;
    let identity = dep.mint("tester");
    let on_a = a.connect_modern(&identity).await;
    let task = begin(&on_a, json!([{"name": "p", "tools": ["faulty__fault_hang", "faulty__list_notes"]}])).await.unwrap();
    let token = request(&on_a, &task, "faulty__fault_hang", json!({})).await.unwrap();
    let hung = tokio::spawn(async move { call_with_token(&on_a, "faulty__fault_hang", json!({}), &token).await });
    eventually(Duration::from_secs(30), || {
        let forwarded = a.log().contains("forwarding");
        async move { forwarded.then_some(()) }
    })
    .await;

    // The task is revoked through replica B's store (the operator command
    // writes to the same PostgreSQL): replica A cancels its call.
    let (code, out, err) = jitgate(&["revoke", "--task", &task, "--reason", "incident 7", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let r = tokio::time::timeout(Duration::from_secs(60), hung).await.expect("the in-flight call must end").unwrap().unwrap();
    assert!(refusal_code(&r).is_some(), "{}", text_of(&r));
    assert!(a.log().contains("revocation") && a.log().contains("cancelled=1"), "{}", a.log());

    // The revoked task is refused on every replica; other work goes on.
    let on_b = b.connect_modern(&identity).await;
    let refused = request(&on_b, &task, "faulty__list_notes", json!({})).await.unwrap_err();
    assert_eq!(refusal_code(&refused).as_deref(), Some("task_inactive"), "{}", text_of(&refused));
    let r = call(&on_b, "faulty__list_notes", json!({})).await.unwrap();
    assert_eq!(refusal_code(&r), None, "{}", text_of(&r));
}

/// What load workers saw.
#[derive(Default, Debug)]
struct Seen {
    ran: usize,
    refused: std::collections::BTreeMap<String, usize>,
    transport_errors: usize,
}

/// `workers` clients through the balancer, each running whole authorized
/// calls (request + call) until `stop` is set or `max_each` calls are done.
async fn load(url: String, identity: String, workers: usize, max_each: usize, stop: Arc<std::sync::atomic::AtomicBool>, seen: Arc<std::sync::Mutex<Seen>>) {
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (url, identity, stop, seen) = (url.clone(), identity.clone(), stop.clone(), seen.clone());
        handles.push(tokio::spawn(async move {
            use rmcp::service::{ClientLifecycleMode, ClientServiceExt as _};
            let cfg = rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(url.as_str()).auth_header(identity);
            let mode = ClientLifecycleMode::Discover { preferred_versions: vec![rmcp::model::ProtocolVersion::V_2026_07_28] };
            let Ok(client) = ().serve_with_lifecycle(rmcp::transport::StreamableHttpClientTransport::from_config(cfg), mode).await else {
                seen.lock().unwrap().transport_errors += 1;
                return;
            };
            // Every step may fail in transit (a replica killed mid-request
            // answers 502 through nginx): count it and go on.
            let step = |tool: &'static str, arguments: Value| {
                let peer = client.peer().clone();
                async move { peer.call_tool(rmcp::model::CallToolRequestParams::new(tool).with_arguments(args(arguments))).await }
            };
            let mut task = None;
            for _ in 0..max_each {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let outcome = async {
                    let task = match &task {
                        Some(t) => t,
                        None => {
                            let r = step("jit_begin_task", json!({"objective": "load", "phases": [{"name": "read", "tools": ["workspace__read_note"]}]})).await.map_err(|_| ())?;
                            if r.is_error == Some(true) {
                                return Ok(refusal_code(&r));
                            }
                            task.insert(answer(&r)["task"].as_str().unwrap_or_default().to_owned())
                        }
                    };
                    let r = step("jit_request", json!({"task": task, "tool": "workspace__read_note", "arguments": {"name": "welcome.md"}, "purpose": "load"})).await.map_err(|_| ())?;
                    if r.is_error == Some(true) {
                        return Ok(refusal_code(&r));
                    }
                    let token = answer(&r)["token"].as_str().unwrap_or_default().to_owned();
                    let r = step("workspace__read_note", json!({"name": "welcome.md", "_jit_token": token})).await.map_err(|_| ())?;
                    Ok::<_, ()>(refusal_code(&r))
                }
                .await;
                let mut s = seen.lock().unwrap();
                match outcome {
                    Ok(None) => s.ran += 1,
                    Ok(Some(code)) => *s.refused.entry(code).or_insert(0) += 1,
                    Err(()) => s.transport_errors += 1,
                }
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
}

/// Every forwarded call's token id, from the operator's audit export.
fn forwarded_jtis(dep: &Deployment) -> Vec<String> {
    let (code, out, err) = jitgate(&["audit", "export", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["kind"] == "call.forwarded")
        .map(|r| r["data"]["jti"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_and_a_postgres_restart_lose_nothing_and_run_no_token_twice() {
    let pg = Postgres::start();
    let dep = replicated(&pg, Setup { limits: "instance_lease = \"3s\"".into(), ..Setup::default() });
    let mut replicas: Vec<Gateway> = (0..3).map(|_| Gateway::start(&dep)).collect();
    for r in &replicas {
        r.wait_server("workspace", "ready").await;
    }
    let lb = Nginx::start(&replicas.iter().map(host_port).collect::<Vec<_>>());
    // A handshake-era session that only the third replica holds.
    let held = replicas[2].connect(&dep.mint("triage")).await;
    let held_task = begin(&held, json!([{"name": "read", "tools": ["workspace__read_note"]}])).await.unwrap();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
    let load = tokio::spawn(load(lb.url.clone(), dep.mint("triage"), 6, 400, stop.clone(), seen.clone()));
    let ran = |n: usize| {
        let seen = seen.clone();
        move || {
            let done = seen.lock().unwrap().ran >= n;
            async move { done.then_some(()) }
        }
    };
    eventually(Duration::from_secs(60), ran(20)).await;

    // kill -9 of a replica under load.
    let dead = replicas.pop().unwrap();
    dead.crash();
    drop(held);
    let before = seen.lock().unwrap().ran;
    eventually(Duration::from_secs(60), ran(before + 30)).await;
    // Its lease lapses and a survivor revokes what only it held.
    eventually(Duration::from_secs(30), || {
        let lapsed = replicas.iter().any(|r| r.log().contains("lease lapsed"));
        async move { lapsed.then_some(()) }
    })
    .await;
    let survivor_log: String = replicas.iter().map(Gateway::log).collect();
    assert!(survivor_log.contains("sessions=1"), "the dead replica's session is revoked:\n{survivor_log}");

    // PostgreSQL restarts under load: calls fail closed, then recover
    // without restarting jitgate.
    pg.restart();
    let before = seen.lock().unwrap().ran;
    eventually(Duration::from_secs(90), ran(before + 30)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap();

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    eprintln!("load through the failures: {seen:?}");
    for code in seen.refused.keys() {
        assert!(["store_unavailable", "audit_unavailable", "downstream_crashed", "downstream_unavailable"].contains(&code.as_str()), "unexpected refusal {code}: {seen:?}");
    }
    // No token ran twice, and every call a client saw run is on record.
    let jtis = forwarded_jtis(&dep);
    let unique: std::collections::BTreeSet<&String> = jtis.iter().collect();
    assert_eq!(unique.len(), jtis.len(), "a token was forwarded twice");
    assert!(jtis.len() >= seen.ran, "{} forwarded records for {} calls that ran: {seen:?}", jtis.len(), seen.ran);
    let (code, out, err) = jitgate(&["audit", "verify", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    // The held session's task died with its replica.
    let on_survivor = replicas[0].connect_modern(&dep.mint("triage")).await;
    let refused = request(&on_survivor, &held_task, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap_err();
    assert!(refusal_code(&refused).is_some(), "{}", text_of(&refused));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqlite_deployment_moves_to_postgres_with_its_history_and_chain() {
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let triage = gw.connect_modern(&dep.mint("triage")).await;
    let task = begin(&triage, json!([{"name": "read", "tools": ["workspace__read_note"]}])).await.unwrap();
    let token = request(&triage, &task, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap();
    let r = call_with_token(&triage, "workspace__read_note", json!({"name": "welcome.md"}), &token).await.unwrap();
    assert_eq!(refusal_code(&r), None, "{}", text_of(&r));
    // Untrusted content read: the taint ledger has entries to move too.
    let r = call(&triage, "workspace__read_inbox", json!({})).await.unwrap();
    assert_eq!(refusal_code(&r), None, "{}", text_of(&r));
    drop(triage);

    let pg = Postgres::start();
    let url = pg.fresh_database();
    let sqlite = format!("sqlite:{}", dep.path("state/jitgate.sqlite").display());
    // Not while a gateway runs on the store.
    let (code, _, err) = jitgate(&["store", "copy", "--from", &sqlite, "--to", &url]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("still hold a lease"), "{err}");
    // Never with a password in the URL.
    let (code, _, err) = jitgate(&["store", "copy", "--from", &sqlite, "--to", &url.replace("jitgate@", "jitgate:hunter2@")]);
    assert_eq!(code, Some(2), "a usage error: {err}");
    assert!(err.contains("must not contain a password") && !err.contains("hunter2"), "{err}");
    gw.stop();

    let (code, out, err) = jitgate(&["store", "copy", "--from", &sqlite, "--to", &url]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("tasks: 2") && out.contains("tokens: 2"), "{out}");
    let taint: u64 = out.split("taint: ").nth(1).and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next()).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(taint > 0, "the taint ledger moved: {out}");
    // Never into a database that already holds records.
    let (code, _, err) = jitgate(&["store", "copy", "--from", &sqlite, "--to", &url]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("already holds records"), "{err}");

    // The deployment now runs on PostgreSQL: its chain verifies, its history
    // is there, and the consumed token stays consumed.
    dep.append_config(&format!("\n[store]\nurl = \"{url}\"\n"));
    let (code, out, err) = jitgate(&["store", "migrate", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("already at version"), "{out}");
    let (code, out, err) = jitgate(&["audit", "verify", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let (code, out, err) = jitgate(&["trace", &task, "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("workspace__read_note"), "{out}");
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let triage = gw.connect_modern(&dep.mint("triage")).await;
    let r = call_with_token(&triage, "workspace__read_note", json!({"name": "welcome.md"}), &token).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("token_replayed"), "{}", text_of(&r));
    let token = request(&triage, &task, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap();
    let r = call_with_token(&triage, "workspace__read_note", json!({"name": "welcome.md"}), &token).await.unwrap();
    assert_eq!(refusal_code(&r), None, "{}", text_of(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_store_and_health_names_a_server_that_is_down() {
    let pg = Postgres::start();
    let dep = replicated(&pg, Setup::default());
    // A second server whose command does not exist: never up.
    let broken = dep.path("broken.toml");
    let manifest = std::fs::read_to_string(repo_root().join("tool-manifests/workspace.toml")).unwrap();
    std::fs::write(&broken, manifest.replacen("name = \"workspace\"", "name = \"broken\"", 1)).unwrap();
    dep.append_config(&format!("\n[[servers]]\nmanifest = {:?}\ncommand = \"/nonexistent/server\"\n", broken.display().to_string()));
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let get = |path: &'static str| {
        let url = format!("{}{path}", gw.base);
        async move {
            let r = reqwest::get(url).await.unwrap();
            (r.status().as_u16(), serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap())
        }
    };
    let (status, health) = get("/healthz").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("degraded")), "{health}");
    assert_eq!((health["servers"]["workspace"].as_str(), health["servers"]["broken"].as_str()), (Some("ready"), Some("unavailable")), "{health}");
    assert_eq!(get("/livez").await.0, 200);
    assert_eq!(get("/readyz").await, (200, json!({"status": "ready"})));

    // The store goes away: not ready (alive still), and back by itself.
    pg.stop();
    let (status, ready) = get("/readyz").await;
    assert_eq!((status, ready["code"].as_str()), (503, Some("store_unavailable")), "{ready}");
    assert!(!ready.to_string().contains("127.0.0.1"), "no hosts in the unauthenticated answer: {ready}");
    assert_eq!(get("/livez").await.0, 200);
    pg.start_again();
    eventually(Duration::from_secs(30), || {
        let ready = get("/readyz");
        async move { (ready.await.0 == 200).then_some(()) }
    })
    .await;
}

/// `store copy` into a database that asks for a password says what
/// PostgreSQL said, at once: no password given, or the wrong one.
#[test]
fn store_copy_into_a_password_protected_database_names_postgres_own_reason() {
    let dep = Deployment::new(&Setup::default());
    let sqlite = dep.path("state/jitgate.sqlite");
    std::fs::create_dir_all(dep.path("state")).unwrap();
    drop(jitgate::store::SqliteStore::open(&sqlite).unwrap());
    let pg = Postgres::start();
    let url = pg.password_role("owner", "s3cret-pw");
    let from = format!("sqlite:{}", sqlite.display());
    let copy = |password: &str| {
        let mut cmd = Command::new(jitgate_bin());
        cmd.args(["store", "copy", "--from", &from, "--to", &url, "--password-env", "TEST_DB_PASSWORD"]).env("TEST_DB_PASSWORD", password);
        let started = std::time::Instant::now();
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(started.elapsed() < Duration::from_secs(4), "took {:?}: {err}", started.elapsed());
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), err)
    };
    let (code, _, err) = copy("wrong");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("password authentication failed for user \"owner\"") && err.contains("--password-env"), "{err}");
    assert!(!err.contains("r2d2") && !err.contains("invalid configuration") && !err.contains("s3cret"), "{err}");
    // Without --password-env the server's demand for one is named too.
    let no_password = Command::new(jitgate_bin()).args(["store", "copy", "--from", &from, "--to", &url]).output().unwrap();
    let err = String::from_utf8_lossy(&no_password.stderr);
    assert_eq!(no_password.status.code(), Some(1), "{err}");
    assert!(err.contains("asks for a password and none was given"), "{err}");
    assert!(!err.contains("r2d2") && !err.contains("invalid configuration"), "{err}");
    let (code, out, err) = copy("s3cret-pw");
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("copied"), "{out}");
}

/// While the database is down, r2d2 keeps trying to refill the pool (about
/// four attempts a second); the log says so once, at warn, then at most
/// every 30 s, and says when the store is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_logged_once_not_per_connection_attempt() {
    let pg = Postgres::start();
    let dep = replicated(&pg, Setup::default());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let readyz = format!("{}/readyz", gw.base);
    pg.stop();
    // Calls keep coming during the outage (a balancer's health checks).
    let until = std::time::Instant::now() + Duration::from_secs(8);
    while std::time::Instant::now() < until {
        let status = reqwest::get(&readyz).await.unwrap().status().as_u16();
        assert_eq!(status, 503);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = gw.log();
    let pool_lines: Vec<&str> = log.lines().filter(|l| l.contains("r2d2") || l.contains("connect to the PostgreSQL store")).collect();
    assert_eq!(pool_lines.len(), 1, "one line for the outage so far:\n{}", pool_lines.join("\n"));
    assert!(pool_lines[0].contains("WARN") && pool_lines[0].contains("Connection refused"), "{}", pool_lines[0]);
    pg.start_again();
    eventually(Duration::from_secs(30), || {
        let r = reqwest::get(readyz.clone());
        async move { (r.await.unwrap().status().as_u16() == 200).then_some(()) }
    })
    .await;
    gw.wait_log("connected to the PostgreSQL store again").await;
}

/// A gateway killed after it handed its `jit_call`'s grant to PostgreSQL
/// (the token spent on the call and the `call.forwarded` record, one unit)
/// and before it heard the commit, so before any forward; PostgreSQL then
/// commits the unit it received: the call never reaches the server, the
/// token is spent and stays spent (nothing runs it later, from this
/// process restarted or another), the chain verifies, the record of the
/// call has no result (its outcome is unknown, as `trace` shows), and the
/// agent's next call works. The kill lands in that window because the
/// grant waits in PostgreSQL behind a lock this test holds on the audit
/// head: it is killed while it waits, and PostgreSQL commits the statement
/// it already received once the lock is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_between_its_commit_and_the_forward_sends_nothing_and_spends_the_token() {
    let pg = Postgres::start();
    let url = pg.fresh_database();
    let store = format!("\n[store]\nurl = \"{url}\"\npool_size = 4\n");
    let dep = Deployment::new(&Setup { extra_config: store, ..Setup::default() });
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let token = dep.mint("triage");
    let client = gw.connect_modern(&token).await;
    let task = begin(&client, json!([{"name": "reply", "tools": ["workspace__send_message"]}])).await.unwrap();
    let send = |to: &str| json!({"task": task, "tool": "workspace__send_message", "arguments": {"to": to, "subject": "s", "body": "b"}, "purpose": "reply"});

    let db = connect_async(&url).await;
    db.batch_execute("BEGIN; SELECT 1 FROM audit_head FOR UPDATE").await.unwrap();
    let call = {
        let (client, args) = (Arc::new(client), send("crash@example.org"));
        let c = client.clone();
        (tokio::spawn(async move { raw_call(&c, "jit_call", args).await }), client)
    };
    let watcher = Arc::new(connect_async(&url).await);
    let count = |sql: &'static str| {
        let watcher = watcher.clone();
        async move { watcher.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    eventually(Duration::from_secs(20), || async {
        (count("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'jitgate' AND wait_event_type = 'Lock'").await > 0).then_some(())
    })
    .await;
    gw.crash();
    db.batch_execute("COMMIT").await.unwrap();
    // PostgreSQL runs what it received and commits it; then notices the
    // client is gone.
    eventually(Duration::from_secs(20), || async { (count("SELECT count(*) FROM tokens WHERE state = 'consumed'").await == 1).then_some(()) }).await;
    assert!(call.0.await.unwrap().is_err(), "the agent gets no answer from a killed gateway");
    drop(call.1);
    assert!(!sent_to(&dep).contains(&"crash@example.org".to_owned()), "the call never reached the server");

    // Restarted: the spent token is not run, the chain holds, the call has
    // a forwarded record and no result, and the agent goes on.
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    assert_eq!(count("SELECT count(*) FROM audit WHERE kind = 'call.forwarded'").await, 1);
    assert_eq!(count("SELECT count(*) FROM audit WHERE kind = 'call.result'").await, 0);
    let (code, out, err) = jitgate(&["audit", "verify", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    let client = gw.connect_modern(&token).await;
    let again = raw_call(&client, "jit_call", send("bob@example.org")).await.unwrap();
    assert_ne!(again.is_error, Some(true), "{}", text_of(&again));
    assert!(sent_to(&dep).contains(&"bob@example.org".to_owned()));
    assert!(!sent_to(&dep).contains(&"crash@example.org".to_owned()), "nothing ran the spent call later");
}

/// A client of the async driver, its connection driven on the test's runtime.
async fn connect_async(url: &str) -> deadpool_postgres::tokio_postgres::Client {
    let (client, connection) = deadpool_postgres::tokio_postgres::connect(url, deadpool_postgres::tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// Issue 29: a delegation on PostgreSQL across replicas. The child replays
/// its delegation on two replicas at once: one task is begun under it, the
/// other attempt is refused. The parent ends its task on one replica: the
/// child's next request, on the other, is refused, and its task ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegation_is_used_once_and_ends_with_its_parent_across_replicas() {
    let pg = Postgres::start();
    let mut policies = quickstart_policies();
    policies.push((
        "60-delegation.cedar".into(),
        "permit (principal in Team::\"support\", action == Action::\"Delegate\", resource in Server::\"workspace\") when { context.delegation.child_team == principal.team };\n".into(),
    ));
    let agents = vec![
        ("lead.toml".to_owned(), "name = \"lead\"\nid = \"spiffe://jitgate.local/agent/lead\"\nteam = \"support\"\nallowed_tools = [\"workspace__read_note\"]\ndelegates_to = [\"helper\"]\n".to_owned()),
        ("helper.toml".to_owned(), "name = \"helper\"\nid = \"spiffe://jitgate.local/agent/helper\"\nteam = \"support\"\nallowed_tools = [\"workspace__read_note\"]\n".to_owned()),
    ];
    let dep = replicated(&pg, Setup { policies, agents, ..Setup::default() });
    let (a, b) = (Gateway::start(&dep), Gateway::start(&dep));
    a.wait_server("workspace", "ready").await;
    b.wait_server("workspace", "ready").await;
    let lead = a.connect(&dep.mint("lead")).await;
    let task = begin(&lead, json!([{"name": "read", "tools": ["workspace__read_note"]}])).await.unwrap();
    let granted = raw_call(&lead, "jit_delegate", json!({"task": task, "agent": "helper", "objective": "read", "phases": [{"name": "r", "tools": ["workspace__read_note"]}]})).await.unwrap();
    assert_ne!(granted.is_error, Some(true), "{}", text_of(&granted));
    let dlg = answer(&granted)["delegation"].as_str().unwrap().to_owned();

    let (on_a, on_b) = (a.connect_modern(&dep.mint("helper")).await, b.connect_modern(&dep.mint("helper")).await);
    let body = json!({"objective": "read", "phases": [{"name": "r", "tools": ["workspace__read_note"]}], "delegation": dlg});
    let (ra, rb) = tokio::join!(raw_call(&on_a, "jit_begin_task", body.clone()), raw_call(&on_b, "jit_begin_task", body.clone()));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let begun: Vec<&rmcp::model::CallToolResult> = [&ra, &rb].into_iter().filter(|r| r.is_error != Some(true)).collect();
    assert_eq!(begun.len(), 1, "one task under one delegation: {} / {}", text_of(&ra), text_of(&rb));
    let refused = if ra.is_error == Some(true) { &ra } else { &rb };
    assert_eq!(refusal_code(refused).as_deref(), Some("delegation_used"), "{}", text_of(refused));
    let child_task = answer(begun[0])["task"].as_str().unwrap().to_owned();
    assert!(request(&on_b, &child_task, "workspace__read_note", json!({"name": "q3-plan.md"})).await.is_ok());

    // The parent ends on replica A; the child asks on replica B.
    let r = raw_call(&lead, "jit_end_task", json!({"task": task, "outcome": "done"})).await.unwrap();
    assert_eq!(r.is_error, Some(false), "{}", text_of(&r));
    let r = raw_call(&on_b, "jit_request", json!({"task": child_task, "tool": "workspace__read_note", "arguments": {"name": "q3-plan.md"}, "purpose": "after"})).await.unwrap();
    assert!(matches!(refusal_code(&r).as_deref(), Some("task_inactive" | "parent_task_inactive")), "{:?}: {}", refusal_code(&r), text_of(&r));
}
