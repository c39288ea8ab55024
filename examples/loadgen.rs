//! Load generator: `tools/call` latency and throughput to the example
//! workspace server over streamable HTTP on loopback, directly and through
//! jitgate, sequentially and with concurrent clients. Through jitgate every
//! call is a whole authorized pair: `jit_request` for a token, then the call
//! carrying it (each client begins one task first).
//!
//! ```text
//! cargo build --release --bin jitgate --examples
//! cargo run --release --example loadgen -- [--calls 2000] [--seconds 15] [--concurrency 16]
//! ```
//!
//! Every run is bounded by a call count and a time limit, and talks only to
//! 127.0.0.1. It starts its own workspace server and gateway (the release
//! binaries next to this one) in a temporary directory and stops them at the end.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

#[path = "support/process.rs"]
mod process;
use process::{sibling, start_listening};
use rmcp::ServiceExt as _;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

#[derive(Parser, Debug)]
#[command(about = "tools/call latency and throughput: direct vs through jitgate")]
struct Args {
    /// Maximum calls per run (all clients together).
    #[arg(long, default_value_t = 2000)]
    calls: usize,
    /// Maximum seconds per run.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Concurrent clients for the concurrent runs.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Record call arguments and results in the audit log too ([audit] content = true).
    #[arg(long)]
    audit_content: bool,
}

struct RunResult {
    /// Per authorized call: the whole request→call pair through jitgate, the call alone directly.
    latencies_us: Vec<u64>,
    /// Through jitgate: the tools/call part of each pair.
    call_us: Vec<u64>,
    errors: usize,
    elapsed: Duration,
}

impl RunResult {
    fn pct(&self, p: f64) -> f64 {
        pct_ms(&self.latencies_us, p)
    }
    fn rate(&self) -> f64 {
        self.latencies_us.len() as f64 / self.elapsed.as_secs_f64()
    }
}

fn pct_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    sorted_us[idx.min(sorted_us.len() - 1)] as f64 / 1000.0
}

type Client = rmcp::service::RunningService<rmcp::RoleClient, ()>;

/// One authorized call: jit_request for a token, then the call. Returns the call's own latency.
async fn authorized_call(s: &Client, task: &str, tool: &str) -> Result<u64, String> {
    let mut req = serde_json::Map::new();
    req.insert("task".into(), task.into());
    req.insert("tool".into(), tool.into());
    req.insert("arguments".into(), serde_json::Value::Object(params(tool).arguments.unwrap_or_default()));
    req.insert("purpose".into(), "load test".into());
    let granted = s.peer().call_tool(CallToolRequestParams::new("jit_request").with_arguments(req)).await.map_err(|e| e.to_string())?;
    let token = granted
        .structured_content
        .as_ref()
        .and_then(|v| v.get("token"))
        .and_then(|t| t.as_str())
        .ok_or_else(|| format!("jit_request refused: {granted:?}"))?
        .to_owned();
    let mut call = params(tool);
    if let Some(a) = call.arguments.as_mut() {
        a.insert("_jit_token".into(), token.into());
    }
    let t0 = Instant::now();
    let r = s.peer().call_tool(call).await.map_err(|e| e.to_string())?;
    if r.is_error == Some(true) {
        return Err(format!("call refused: {r:?}"));
    }
    Ok(t0.elapsed().as_micros() as u64)
}

async fn begin_task(s: &Client, tool: &str) -> Result<String, String> {
    let args = serde_json::json!({"objective": "load test", "phases": [{"name": "load", "tools": [tool]}], "ttl_seconds": 3600});
    let r = s
        .peer()
        .call_tool(CallToolRequestParams::new("jit_begin_task").with_arguments(args.as_object().cloned().unwrap_or_default()))
        .await
        .map_err(|e| e.to_string())?;
    r.structured_content
        .as_ref()
        .and_then(|v| v.get("task"))
        .and_then(|t| t.as_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("jit_begin_task refused: {r:?}"))
}

async fn run(url: &str, token: Option<&str>, tool: &str, clients: usize, calls: usize, limit: Duration) -> Result<RunResult, String> {
    let mut sessions = Vec::new();
    for _ in 0..clients {
        let mut cfg = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
        if let Some(t) = token {
            cfg = cfg.auth_header(t.to_owned());
        }
        let client = ().serve(StreamableHttpClientTransport::from_config(cfg)).await.map_err(|e| format!("connect {url}: {e}"))?;
        // Through the gateway each client works inside one task.
        let task = if token.is_some() { Some(begin_task(&client, tool).await?) } else { None };
        sessions.push((Arc::new(client), task));
    }
    // Warm-up: one call per client, not measured.
    for (s, task) in &sessions {
        match task {
            Some(t) => {
                authorized_call(s, t, tool).await?;
            }
            None => {
                let _ = s.peer().call_tool(params(tool)).await;
            }
        }
    }
    let remaining = Arc::new(std::sync::atomic::AtomicUsize::new(calls));
    let deadline = Instant::now() + limit;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (s, task) in sessions.iter().cloned() {
        let remaining = remaining.clone();
        let tool = tool.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut call_only = Vec::new();
            let mut errors = 0usize;
            while Instant::now() < deadline
                && remaining.fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
            {
                let t0 = Instant::now();
                let outcome = match &task {
                    Some(t) => authorized_call(&s, t, &tool).await.map(Some),
                    None => match s.peer().call_tool(params(&tool)).await {
                        Ok(r) if r.is_error != Some(true) => Ok(None),
                        other => Err(format!("{other:?}")),
                    },
                };
                match outcome {
                    Ok(call_us) => {
                        lat.push(t0.elapsed().as_micros() as u64);
                        call_only.extend(call_us);
                    }
                    Err(_) => errors += 1,
                }
            }
            (lat, call_only, errors)
        }));
    }
    let mut latencies_us = Vec::new();
    let mut call_us = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, c, e) = t.await.map_err(|e| e.to_string())?;
        latencies_us.extend(l);
        call_us.extend(c);
        errors += e;
    }
    let elapsed = started.elapsed();
    latencies_us.sort_unstable();
    call_us.sort_unstable();
    for (s, _) in sessions {
        if let Ok(s) = Arc::try_unwrap(s) {
            let _ = s.cancel().await;
        }
    }
    Ok(RunResult { latencies_us, call_us, errors, elapsed })
}

fn params(tool: &str) -> CallToolRequestParams {
    let mut args = serde_json::Map::new();
    args.insert("name".into(), "welcome.md".into());
    CallToolRequestParams::new(tool.to_owned()).with_arguments(args)
}


fn write_config(dir: &Path, workspace_url: &str, repo: &Path, audit_content: bool) -> Result<PathBuf, String> {
    let io = |e: std::io::Error| e.to_string();
    std::fs::create_dir_all(dir.join("agents")).map_err(io)?;
    std::fs::write(
        dir.join("agents/load.toml"),
        "name = \"load\"\nid = \"spiffe://jitgate.local/agent/load\"\nteam = \"support\"\nallowed_tools = [\"workspace__read_note\"]\n",
    )
    .map_err(io)?;
    // Decisions run against the quick start's shipped Cedar policies.
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).map_err(io)?;
    for entry in std::fs::read_dir(repo.join("examples/quickstart/policies")).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if let Some(name) = path.file_name().filter(|_| path.extension().is_some_and(|x| x == "cedar")) {
            std::fs::copy(&path, policies.join(name)).map_err(io)?;
        }
    }
    let cfg = format!(
        "[gateway]\nid = \"jitgate://loadgen\"\n[limits]\nmax_concurrent_calls_per_session = 64\n\
         [[identity.issuers]]\nname = \"dev\"\niss = \"jitgate-dev-issuer\"\ntrust_domain = \"spiffe://jitgate.local\"\ndevelopment = true\n\
         [audit]\ncontent = {audit_content}\nredact = [\"to\"]\n\
         [[servers]]\nmanifest = {:?}\nurl = {:?}\n",
        repo.join("tool-manifests/workspace.toml").display().to_string(),
        workspace_url
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, cfg).map_err(io)?;
    Ok(path)
}

#[tokio::main]
async fn main() {
    if let Err(e) = real_main().await {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}

async fn real_main() -> Result<(), String> {
    let args = Args::parse();
    let limit = Duration::from_secs(args.seconds);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("jitgate-loadgen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;

    let mut ws = Command::new(sibling("workspace-server")?);
    ws.args(["--listen", "127.0.0.1:0", "--state"]).arg(dir.join("ws"));
    let (_ws, ws_url) = start_listening(ws)?;
    let config = write_config(&dir, &ws_url, &repo, args.audit_content)?;
    let jitgate = sibling("jitgate")?;
    let mut gw = Command::new(&jitgate);
    gw.args(["serve", "--listen", "127.0.0.1:0", "--config"]).arg(&config).env("JITGATE_LOG", "warn");
    let (_gw, gw_url) = start_listening(gw)?;
    let out = Command::new(&jitgate).args(["identity", "mint", "--agent", "load", "--ttl", "1h", "--config"]).arg(&config).output().map_err(|e| e.to_string())?;
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if token.is_empty() {
        return Err(format!("mint failed: {}", String::from_utf8_lossy(&out.stderr)));
    }

    println!("read_note over streamable HTTP on loopback; at most {} calls or {} s per run", args.calls, args.seconds);
    println!("direct: tools/call; jitgate: jit_request + tools/call with the token (one authorized call)\n");
    println!("{:<10} {:>7} {:>8} {:>10} {:>10} {:>10} {:>7} {:>14}", "path", "clients", "calls", "p50 ms", "p99 ms", "calls/s", "errors", "call-only p50");
    let mut table = Vec::new();
    for clients in [1, args.concurrency] {
        let direct = run(&ws_url, None, "read_note", clients, args.calls, limit).await?;
        let via = run(&gw_url, Some(&token), "workspace__read_note", clients, args.calls, limit).await?;
        for (name, r) in [("direct", &direct), ("jitgate", &via)] {
            let call_only = if r.call_us.is_empty() { "-".to_owned() } else { format!("{:.3}", pct_ms(&r.call_us, 0.5)) };
            println!(
                "{:<10} {:>7} {:>8} {:>10.3} {:>10.3} {:>10.0} {:>7} {:>14}",
                name, clients, r.latencies_us.len(), r.pct(0.5), r.pct(0.99), r.rate(), r.errors, call_only
            );
        }
        table.push((clients, direct, via));
    }
    println!("\nratio gateway/direct:");
    for (clients, d, v) in &table {
        println!(
            "  {clients:>2} client(s): p50 {:.2}x, p99 {:.2}x, throughput {:.2}x",
            v.pct(0.5) / d.pct(0.5),
            v.pct(0.99) / d.pct(0.99),
            v.rate() / d.rate()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
