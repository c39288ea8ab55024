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
//!
//! Replicas: `--store postgres://... --replicas N` starts N gateways on that
//! (empty) database behind nginx (round robin, as in the replica tests) and
//! drives them with MCP 2026-07-28 clients, which keep no session; without
//! `--store` the gateway uses SQLite. `scripts/bench-replicas.sh` runs the
//! comparison with a private PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

#[path = "support/pages.rs"]
mod pages;
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
    /// Concurrent clients for the concurrent runs (repeat for several).
    #[arg(long, default_values_t = [16])]
    concurrency: Vec<usize>,
    /// The gateways' store: `postgres://USER@HOST:PORT/DB` (default: SQLite).
    #[arg(long)]
    store: Option<String>,
    /// Gateway replicas behind nginx (needs --store; implies --modern).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Clients speak MCP 2026-07-28 (no session) instead of the handshake.
    #[arg(long)]
    modern: bool,
    /// Skip the direct baseline runs.
    #[arg(long)]
    no_direct: bool,
    /// Record call arguments and results in the audit log too ([audit] content = true).
    #[arg(long)]
    audit_content: bool,
    /// Also measure another MCP endpoint in front of the same kind of
    /// server, like the direct path (no authorization): `NAME=URL`, where
    /// the server's tool is `read_note` (e.g. an npm proxy wrapping the
    /// example server; scripts/bench-proxies.sh). Repeat for several.
    #[arg(long = "proxy", value_name = "NAME=URL")]
    proxies: Vec<String>,
    /// Repeat every measurement this many times, alternating paths, so that
    /// a noisy moment does not favour one of them.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// With --store: count the PostgreSQL statements (pg_stat_statements,
    /// which the server must preload) and the transactions that wrote
    /// (transaction ids taken) per authorized call, one client, for
    /// `jit_call` and for `jit_request` + call; then stop.
    /// scripts/bench-pg-statements.sh runs it with a private PostgreSQL.
    #[arg(long)]
    count_statements: bool,
    /// Before the gateway starts, fill the load agent's taint
    /// ledger with this many untrusted pages of about 16 KB each (1,000
    /// fill it to its cap of 4,096 entries), so that every request's taint
    /// lookup runs against a full ledger (compare with 0).
    #[arg(long, default_value_t = 0)]
    ledger_pages: usize,
    /// Open and close this many handshake-era sessions through the gateway
    /// (initialize, tools/list, a task with one `jit_call`, close with
    /// DELETE), 16 at a time, and print the gateway's resident memory after
    /// every 1,000; then stop. Bounded by --seconds for the whole run.
    #[arg(long, default_value_t = 0)]
    sessions: usize,
}

struct RunResult {
    /// Per authorized call: the whole request→call pair through jitgate, the call alone directly.
    latencies_us: Vec<u64>,
    /// Through jitgate: the tools/call part of each pair.
    call_us: Vec<u64>,
    errors: usize,
    elapsed: Duration,
    /// PostgreSQL's counters for the measured calls (with --count-statements).
    counts: Option<PgCounts>,
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

/// One authorized call in one round trip (`jit_call`).
async fn one_step_call(s: &Client, task: &str, tool: &str) -> Result<(), String> {
    let mut req = serde_json::Map::new();
    req.insert("task".into(), task.into());
    req.insert("tool".into(), tool.into());
    req.insert("arguments".into(), serde_json::Value::Object(params(tool).arguments.unwrap_or_default()));
    req.insert("purpose".into(), "load test".into());
    let r = s.peer().call_tool(CallToolRequestParams::new("jit_call").with_arguments(req)).await.map_err(|e| e.to_string())?;
    if r.is_error == Some(true) {
        return Err(format!("jit_call refused: {r:?}"));
    }
    Ok(())
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

/// PostgreSQL's own counters around a measured run: statements by text
/// (pg_stat_statements) and transaction ids taken (one per transaction that
/// wrote; read-only transactions take none).
struct PgCounter {
    url: String,
}

/// What the database did during a measured run.
struct PgCounts {
    /// (calls, normalized statement text), most called first.
    statements: Vec<(i64, String)>,
    /// Transactions that wrote, the counter's own two reads taken off.
    writing_transactions: i64,
}

impl PgCounter {
    async fn on_client<T: Send + 'static>(&self, f: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error> + Send + 'static) -> Result<T, String> {
        let url = self.url.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls)?;
            f(&mut c)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("counting statements: {e} ({:?})", std::error::Error::source(&e).map(ToString::to_string)))
    }

    /// Forget what was counted so far; returns the transaction id counter.
    async fn reset(&self) -> Result<i64, String> {
        self.on_client(|c| {
            c.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")?;
            c.query_one("SELECT pg_stat_statements_reset()", &[])?;
            c.query_one("SELECT pg_current_xact_id()::text::bigint", &[])?.try_get(0)
        })
        .await
    }

    async fn read(&self, xid_before: i64) -> Result<PgCounts, String> {
        let (statements, xid) = self
            .on_client(|c| {
                let rows = c.query(
                    "SELECT calls, query FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                     AND query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE '%pg_current_xact_id%' ORDER BY calls DESC, query",
                    &[],
                )?;
                let statements = rows.iter().map(|r| Ok((r.try_get::<_, i64>(0)?, r.try_get::<_, String>(1)?))).collect::<Result<Vec<_>, postgres::Error>>()?;
                let xid: i64 = c.query_one("SELECT pg_current_xact_id()::text::bigint", &[])?.try_get(0)?;
                Ok((statements, xid))
            })
            .await?;
        Ok(PgCounts { statements, writing_transactions: xid - xid_before - 1 })
    }
}

fn print_counts(what: &str, calls: usize, counts: &PgCounts) {
    let total: i64 = counts.statements.iter().map(|(n, _)| n).sum();
    let commits: i64 = counts.statements.iter().filter(|(_, q)| q.trim().eq_ignore_ascii_case("commit")).map(|(n, _)| n).sum();
    let per = |n: i64| n as f64 / calls.max(1) as f64;
    println!("\n{what}: {calls} authorized calls, one client");
    println!(
        "  per call: {:.2} statements, {:.2} transactions that wrote, {:.2} COMMIT statements (the run's task begin and end included)",
        per(total),
        per(counts.writing_transactions),
        per(commits)
    );
    println!("  {:>9} {:>8}  statement", "calls", "per call");
    for (n, q) in &counts.statements {
        let q: String = q.split_whitespace().collect::<Vec<_>>().join(" ");
        println!("  {n:>9} {:>8.2}  {}", per(*n), q.chars().take(150).collect::<String>());
    }
}

async fn count_statements(url: &str, token: &str, store: &str, calls: usize, limit: Duration, modern: bool) -> Result<(), String> {
    let counter = PgCounter { url: store.to_owned() };
    for (what, one_step) in [("jit_call", true), ("jit_request + call", false)] {
        let r = run(url, Some(token), "workspace__read_note", 1, calls, limit, modern, one_step, Some(&counter)).await?;
        let counts = r.counts.ok_or("no counts")?;
        if r.errors > 0 {
            return Err(format!("{what}: {} calls failed", r.errors));
        }
        print_counts(what, r.latencies_us.len(), &counts);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn run(url: &str, token: Option<&str>, tool: &str, clients: usize, calls: usize, limit: Duration, modern: bool, one_step: bool, counter: Option<&PgCounter>) -> Result<RunResult, String> {
    let mut sessions = Vec::new();
    for _ in 0..clients {
        let mut cfg = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
        if let Some(t) = token {
            cfg = cfg.auth_header(t.to_owned());
        }
        let transport = StreamableHttpClientTransport::from_config(cfg);
        let client = if modern {
            use rmcp::service::{ClientLifecycleMode, ClientServiceExt as _};
            let mode = ClientLifecycleMode::Discover { preferred_versions: vec![rmcp::model::ProtocolVersion::V_2026_07_28] };
            ().serve_with_lifecycle(transport, mode).await
        } else {
            ().serve(transport).await
        }
        .map_err(|e| format!("connect {url}: {e}"))?;
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
    let xid_before = match counter {
        Some(c) => Some(c.reset().await?),
        None => None,
    };
    let remaining = Arc::new(std::sync::atomic::AtomicUsize::new(calls));
    let deadline = Instant::now() + limit;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (s, task) in sessions.iter().cloned() {
        let remaining = remaining.clone();
        let tool = tool.to_owned();
        let one_step = one_step;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut call_only = Vec::new();
            let mut errors = 0usize;
            while Instant::now() < deadline
                && remaining.fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
            {
                let t0 = Instant::now();
                let outcome = match &task {
                    Some(t) if one_step => one_step_call(&s, t, &tool).await.map(|()| None),
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
                    Err(e) => {
                        if errors == 0 {
                            eprintln!("loadgen: first error of a client: {}", e.chars().take(300).collect::<String>());
                        }
                        errors += 1
                    }
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
    let mut counts = None;
    for (s, task) in sessions {
        // End the run's tasks: an agent may hold only so many at once.
        if let Some(t) = task {
            let mut end = serde_json::Map::new();
            end.insert("task".into(), t.into());
            end.insert("outcome".into(), "done".into());
            let _ = s.peer().call_tool(CallToolRequestParams::new("jit_end_task").with_arguments(end)).await;
        }
        if let Ok(s) = Arc::try_unwrap(s) {
            let _ = s.cancel().await;
        }
    }
    if let (Some(c), Some(before)) = (counter, xid_before) {
        counts = Some(c.read(before).await?);
    }
    Ok(RunResult { latencies_us, call_us, errors, elapsed, counts })
}

/// Open and close `total` handshake-era sessions, 16 at a time, printing
/// the gateway's RSS after each thousand.
async fn sessions_memory(url: &str, token: &str, total: usize, limit: Duration, pid: u32) -> Result<(), String> {
    const AT_ONCE: usize = 16;
    println!("handshake-era sessions opened and closed (initialize, tools/list, a task with one jit_call, DELETE), {AT_ONCE} at a time; gateway RSS:");
    println!("{:>9} {:>10} {:>9}", "sessions", "RSS MiB", "seconds");
    if let Some(rss) = rss_mib(pid) {
        println!("{:>9} {:>10.1} {:>9.1}", 0, rss, 0.0);
    }
    let started = Instant::now();
    let mut done = 0;
    while done < total {
        if started.elapsed() > limit {
            return Err(format!("stopped after {done} sessions: the {} s limit", limit.as_secs()));
        }
        let batch = AT_ONCE.min(total - done);
        let opened = futures::future::join_all((0..batch).map(|_| async {
            let cfg = StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(token.to_owned());
            let client = ().serve(StreamableHttpClientTransport::from_config(cfg)).await.map_err(|e| format!("connect {url}: {e}"))?;
            client.peer().list_all_tools().await.map_err(|e| format!("tools/list: {e}"))?;
            let task = begin_task(&client, "workspace__read_note").await?;
            one_step_call(&client, &task, "workspace__read_note").await?;
            client.cancel().await.map_err(|e| format!("close: {e}"))?;
            Ok::<(), String>(())
        }))
        .await;
        opened.into_iter().collect::<Result<Vec<()>, String>>()?;
        let before = done;
        done += batch;
        if done / 1000 > before / 1000 || done == total {
            let rss = rss_mib(pid).ok_or("cannot read the gateway's memory")?;
            println!("{:>9} {:>10.1} {:>9.1}", done, rss, started.elapsed().as_secs_f64());
        }
    }
    Ok(())
}

/// Record `pages` untrusted pages (about 16 KB of text and one address
/// each) as read by the load agent, in the gateway's SQLite store.
fn fill_ledger(state: &Path, pages: usize) -> Result<(), String> {
    std::fs::create_dir_all(state).map_err(|e| e.to_string())?;
    let store = jitgate::store::SqliteStore::open(&state.join(jitgate::store::STORE_FILE)).map_err(|e| e.to_string())?;
    let held = read_pages(&store, pages)?;
    drop(store);
    // Into the database file, as a running gateway's checkpoints would have
    // done long since: reads would otherwise search a large write-ahead log.
    let db = rusqlite::Connection::open(state.join(jitgate::store::STORE_FILE)).map_err(|e| e.to_string())?;
    db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(|e| e.to_string())?;
    println!("the load agent's taint ledger: {pages} untrusted pages read, {held} passages held");
    Ok(())
}

/// As [`fill_ledger`], in a PostgreSQL store (where the gateway plans its
/// request's statement once per connection: the lookup must stay by index).
fn fill_postgres_ledger(url: &str, pages: usize) -> Result<(), String> {
    let store = jitgate::store::PostgresStore::connect(url, None, 1).map_err(|e| e.to_string())?;
    let held = read_pages(&store, pages)?;
    println!("the load agent's taint ledger (PostgreSQL): {pages} untrusted pages read, {held} passages held");
    Ok(())
}

/// Record `pages` untrusted pages as read by the load agent; the passages
/// its ledger then holds.
fn read_pages(store: &dyn jitgate::store::Store, pages: usize) -> Result<usize, String> {
    use jitgate::baseline::taint::{MAX_VALUES_PER_AGENT, Source, output_entries};
    for n in 0..pages {
        let page = pages::page(n);
        let source = Source { call: format!("j{n}"), tool: "web__get".into(), ..Source::default() };
        store.record_taint(AGENT, &output_entries(&page, &[]), &source, now_unix(), MAX_VALUES_PER_AGENT).map_err(|e| e.to_string())?;
    }
    Ok(store.taint_ledger(AGENT).map_err(|e| e.to_string())?.passages_held())
}

const AGENT: &str = "spiffe://jitgate.local/agent/load";

fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn params(tool: &str) -> CallToolRequestParams {
    let mut args = serde_json::Map::new();
    args.insert("name".into(), "welcome.md".into());
    CallToolRequestParams::new(tool.to_owned()).with_arguments(args)
}


fn write_config(dir: &Path, workspace_url: &str, repo: &Path, audit_content: bool, store: Option<&str>) -> Result<PathBuf, String> {
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
        "[gateway]\nid = \"jitgate://loadgen\"\n[limits]\nmax_concurrent_calls_per_session = 64\nmax_active_tasks_per_agent = 256\n\
         [[identity.issuers]]\nname = \"dev\"\niss = \"jitgate-dev-issuer\"\ntrust_domain = \"spiffe://jitgate.local\"\ndevelopment = true\n\
         [audit]\ncontent = {audit_content}\nredact = [\"to\"]\n\
         [[servers]]\nmanifest = {:?}\nurl = {:?}\n\
         [http]\nallowed_hosts = [\"127.0.0.1\"]\n{}",
        repo.join("tool-manifests/workspace.toml").display().to_string(),
        workspace_url,
        store.map(|u| format!("[store]\nurl = {u:?}\npool_size = 16\n")).unwrap_or_default()
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

/// nginx, round robin over the replicas (as in tests/common/nginx.rs).
fn start_nginx(dir: &Path, upstreams: &[String]) -> Result<(process::Killed, String), String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let d = dir.display();
    let servers: String = upstreams.iter().map(|u| format!("server {u} max_fails=0;\n")).collect();
    let conf = format!(
        "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log warn;\ndaemon off;\nevents {{ worker_connections 4096; }}\n\
         http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
         upstream jitgate {{ {servers} keepalive 128; }}\n\
         server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://jitgate; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host $http_host; proxy_buffering off; proxy_read_timeout 120s; }} }} }}\n"
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
    let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().find(|p| Path::new(p).exists()).ok_or("nginx is not installed (scripts/setup-test-deps.sh installs it)")?;
    let child = Command::new(bin).arg("-p").arg(dir).arg("-c").arg(&conf_path).arg("-e").arg(dir.join("nginx-error.log")).spawn().map_err(|e| format!("nginx: {e}"))?;
    let killed = process::Killed(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("nginx did not start listening within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((killed, format!("http://127.0.0.1:{port}/mcp")))
}

/// Resident set size of a process, in MiB (Linux).
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

async fn real_main() -> Result<(), String> {
    let args = Args::parse();
    let limit = Duration::from_secs(args.seconds);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("jitgate-loadgen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;

    let mut ws = Command::new(sibling("jitgate-workspace-server")?);
    ws.args(["--listen", "127.0.0.1:0", "--state"]).arg(dir.join("ws"));
    let (_ws, ws_url) = start_listening(ws)?;
    if args.replicas == 0 || (args.replicas > 1 && args.store.is_none()) {
        return Err("--replicas N > 1 needs --store postgres://... (replicas share one PostgreSQL store)".into());
    }
    let modern = args.modern || args.replicas > 1;
    let config = write_config(&dir, &ws_url, &repo, args.audit_content, args.store.as_deref())?;
    if args.ledger_pages > 0 {
        match args.store.as_deref() {
            Some(url) => fill_postgres_ledger(url, args.ledger_pages)?,
            None => fill_ledger(&dir.join("state"), args.ledger_pages)?,
        }
    }
    let jitgate = sibling("jitgate")?;
    let mut replicas = Vec::new();
    for _ in 0..args.replicas {
        let mut gw = Command::new(&jitgate);
        gw.args(["serve", "--listen", "127.0.0.1:0", "--config"]).arg(&config).env("JITGATE_LOG", "warn");
        replicas.push(start_listening(gw)?);
    }
    let _balancer;
    let gw_url = if args.replicas > 1 {
        let upstreams: Vec<String> = replicas.iter().map(|(_, u)| u.trim_start_matches("http://").trim_end_matches("/mcp").to_owned()).collect();
        let (lb, url) = start_nginx(&dir, &upstreams)?;
        _balancer = lb;
        url
    } else {
        replicas[0].1.clone()
    };
    let out = Command::new(&jitgate).args(["identity", "mint", "--agent", "load", "--ttl", "1h", "--config"]).arg(&config).output().map_err(|e| e.to_string())?;
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if token.is_empty() {
        return Err(format!("mint failed: {}", String::from_utf8_lossy(&out.stderr)));
    }

    if args.sessions > 0 {
        let pid = replicas.first().map(|(k, _)| k.0.id()).ok_or("no gateway")?;
        sessions_memory(&gw_url, &token, args.sessions, limit, pid).await?;
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }
    if args.count_statements {
        let url = args.store.as_deref().ok_or("--count-statements needs --store postgres://...")?;
        println!("PostgreSQL statements per authorized call (read_note through one gateway; clients: MCP {})", if modern { "2026-07-28" } else { "handshake" });
        count_statements(&gw_url, &token, url, args.calls, limit, modern).await?;
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }
    let store = match &args.store {
        Some(_) => format!("PostgreSQL, {} replica(s){}", args.replicas, if args.replicas > 1 { " behind nginx" } else { "" }),
        None => "SQLite".to_owned(),
    };
    println!("read_note over streamable HTTP on loopback; at most {} calls or {} s per run; store: {store}; clients: MCP {}", args.calls, args.seconds, if modern { "2026-07-28" } else { "handshake" });
    println!("direct: tools/call; jitgate: jit_request + tools/call with the token (one authorized call, two round trips); 1-step: jit_call (one round trip)\n");
    println!("{:<12} {:>7} {:>8} {:>10} {:>10} {:>10} {:>7} {:>14}", "path", "clients", "calls", "p50 ms", "p99 ms", "calls/s", "errors", "call-only p50");
    let mut table = Vec::new();
    let mut levels = vec![1];
    levels.extend(args.concurrency.iter().copied());
    let mut proxies = Vec::new();
    for p in &args.proxies {
        let (name, url) = p.split_once('=').ok_or_else(|| format!("--proxy {p}: write NAME=URL"))?;
        proxies.push((name.to_owned(), url.to_owned()));
    }
    for round in 1..=args.rounds.max(1) {
        if args.rounds > 1 {
            println!("-- round {round}");
        }
        for &clients in &levels {
            let direct = if args.no_direct { None } else { Some(run(&ws_url, None, "read_note", clients, args.calls, limit, false, false, None).await?) };
            let via = run(&gw_url, Some(&token), "workspace__read_note", clients, args.calls, limit, modern, false, None).await?;
            let one = run(&gw_url, Some(&token), "workspace__read_note", clients, args.calls, limit, modern, true, None).await?;
            let mut others = Vec::new();
            for (name, url) in &proxies {
                others.push((name.clone(), run(url, None, "read_note", clients, args.calls, limit, false, false, None).await?));
            }
            let fixed = direct.iter().map(|d| ("direct".to_owned(), d)).chain([("jitgate".to_owned(), &via), ("1-step".to_owned(), &one)]);
            for (name, r) in fixed.chain(others.iter().map(|(n, r)| (n.clone(), r))) {
                let call_only = if r.call_us.is_empty() { "-".to_owned() } else { format!("{:.3}", pct_ms(&r.call_us, 0.5)) };
                println!(
                    "{:<12} {:>7} {:>8} {:>10.3} {:>10.3} {:>10.0} {:>7} {:>14}",
                    name, clients, r.latencies_us.len(), r.pct(0.5), r.pct(0.99), r.rate(), r.errors, call_only
                );
            }
            if let Some(d) = &direct {
                for (name, r) in &others {
                    println!("  {name}/direct: p50 {:.2}x, throughput {:.2}x", r.pct(0.5) / d.pct(0.5), r.rate() / d.rate());
                }
            }
            table.push((clients, direct, via, one));
        }
    }
    let rss: Vec<String> = replicas.iter().filter_map(|(k, _)| rss_mib(k.0.id())).map(|m| format!("{m:.0}")).collect();
    println!("\ngateway RSS after the runs (MiB per replica): {}", rss.join(", "));
    if args.no_direct {
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }
    println!("\nratio gateway/direct:");
    for (clients, d, v, one) in &table {
        let Some(d) = d else { continue };
        let call_only = if v.call_us.is_empty() { f64::NAN } else { pct_ms(&v.call_us, 0.5) / d.pct(0.5) };
        println!(
            "  {clients:>2} client(s): two-step p50 {:.2}x, p99 {:.2}x, throughput {:.2}x; one-step p50 {:.2}x, p99 {:.2}x, throughput {:.2}x; call with token in hand p50 {:.2}x",
            v.pct(0.5) / d.pct(0.5),
            v.pct(0.99) / d.pct(0.99),
            v.rate() / d.rate(),
            one.pct(0.5) / d.pct(0.5),
            one.pct(0.99) / d.pct(0.99),
            one.rate() / d.rate(),
            call_only
        );
    }
    println!("\nmodel turns per authorized call: direct 1, two-step 2 (jit_request, then the call), one-step 1 (jit_call)");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
