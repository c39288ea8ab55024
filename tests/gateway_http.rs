//! End-to-end: the real jitgate binary over streamable HTTP, in front of the
//! real example workspace server, driven by the rmcp client and raw HTTP.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn agent_sees_only_its_registered_namespaced_tools_and_calls_reach_the_server() {
    // The server runs with --faults, so it offers tools the manifest does not list.
    let dep = Deployment::new(&Setup { workspace_faults: true, ..Setup::default() });
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;

    let triage = gw.connect(&dep.mint("triage")).await;
    assert_eq!(
        tool_names(&triage).await,
        ["workspace__list_notes", "workspace__read_inbox", "workspace__read_note", "workspace__send_message"]
    );
    let janitor = gw.connect(&dep.mint("janitor")).await;
    let all = tool_names(&janitor).await;
    assert_eq!(all.len(), 9, "{all:?}");
    assert!(all.iter().all(|t| t.starts_with("workspace__")));
    assert!(!all.iter().any(|t| t.contains("fault_")), "unlisted tools must never appear: {all:?}");

    let r = call(&triage, "workspace__read_note", json!({"name": "q3-plan.md"})).await.unwrap();
    assert_eq!(r.is_error, Some(false));
    assert!(text_of(&r).contains("Ship the billing export"));

    // A sink: the downstream only accepts it with the injected credential.
    let r = call(&triage, "workspace__send_message", json!({"to": "alice@example.org", "subject": "Q3", "body": "summary"})).await.unwrap();
    assert_eq!(r.is_error, Some(false), "{}", text_of(&r));
    let outbox = std::fs::read_to_string(dep.workspace_state.join("outbox.jsonl")).unwrap();
    assert!(outbox.contains("alice@example.org"));
    // The credential is never visible to the agent, nor logged.
    let secret = std::fs::read_to_string(repo_root().join("examples/quickstart/secrets/workspace-token")).unwrap();
    let listed = serde_json::to_string(&janitor.peer().list_all_tools().await.unwrap()).unwrap();
    assert!(!listed.contains(secret.trim()) && !text_of(&r).contains(secret.trim()));
    assert!(!gw.log().contains(secret.trim()));
}

#[tokio::test]
async fn unknown_and_unlisted_and_disallowed_tools_are_refused_specifically() {
    let dep = Deployment::new(&Setup { workspace_faults: true, ..Setup::default() });
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let triage = gw.connect(&dep.mint("triage")).await;

    let e = raw_call(&triage, "workspace__no_such_tool", json!({})).await.unwrap_err().to_string();
    assert!(e.contains("unknown tool `workspace__no_such_tool`") && e.contains("tools/list"), "{e}");
    // Offered by the server but not in the manifest: as unknown as a tool that does not exist.
    let e = raw_call(&triage, "workspace__fault_crash", json!({})).await.unwrap_err().to_string();
    assert!(e.contains("unknown tool"), "{e}");
    // Nor can a task plan name them.
    let r = call(&triage, "workspace__fault_crash", json!({})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("request_denied"), "{}", text_of(&r));
    // In the manifest but not in triage's allowed tools: refused, with who to ask.
    let r = raw_call(&triage, "workspace__delete_note", json!({"name": "q3-plan.md"})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("tool_not_allowed"), "{}", text_of(&r));
    assert!(text_of(&r).contains("allowed_tools"));
    assert!(dep.workspace_state.join("notes/q3-plan.md").exists(), "nothing may have been deleted");

    // The legitimate call in the same session still works.
    let r = call(&triage, "workspace__list_notes", json!({})).await.unwrap();
    assert!(text_of(&r).contains("q3-plan.md"));
}

#[tokio::test]
async fn arguments_failing_the_schema_are_refused_before_forwarding() {
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let janitor = gw.connect(&dep.mint("janitor")).await;

    // Path traversal attempt: fails the server schema's pattern already at jit_request.
    let r = call(&janitor, "workspace__delete_note", json!({"name": "../../etc/passwd"})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("request_denied"), "{}", text_of(&r));
    assert!(text_of(&r).contains("tool-input-schema") && text_of(&r).contains("/name"), "{}", text_of(&r));
    // Missing required argument and an unexpected one.
    let r = call(&janitor, "workspace__send_message", json!({"to": "a@example.org", "subject": "s", "body": "b", "bcc": "x@evil.test"})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("request_denied"));
    let r = call(&janitor, "workspace__read_note", json!({})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("request_denied"));
    // A token with loose constraints does not bypass the schema at call time.
    let task = begin(&janitor, json!([{"name": "p", "tools": ["workspace__delete_note"]}])).await.unwrap();
    let token = request_with(&janitor, json!({"task": task, "tool": "workspace__delete_note", "constraints": {"name": {"schema": {"type": "string"}}}, "purpose": "tidy"})).await.unwrap();
    let r = call_with_token(&janitor, "workspace__delete_note", json!({"name": "../../etc/passwd"}), &token).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("invalid_arguments"), "{}", text_of(&r));
    assert!(text_of(&r).contains("The token is used up"), "the agent is told not to retry with it: {}", text_of(&r));
    assert!(!dep.workspace_state.join("outbox.jsonl").exists(), "nothing may have been sent");
    // ... and it is indeed spent: the same token with good arguments is a replay.
    let r = call_with_token(&janitor, "workspace__delete_note", json!({"name": "welcome.md"}), &token).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("token_replayed"), "{}", text_of(&r));

    let r = call(&janitor, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap();
    assert_eq!(r.is_error, Some(false));
}

#[tokio::test]
async fn manifest_args_schema_narrows_what_the_server_would_accept() {
    let dep = Deployment::new(&Setup { workspace: false, ..Setup::default() });
    // A manifest like the shipped one, with a tighter schema on send_message.
    let shipped = std::fs::read_to_string(repo_root().join("tool-manifests/workspace.toml")).unwrap();
    let tightened = shipped.replace(
        "[tools.send_message]\n",
        "[tools.send_message]\nargs_schema = { type = \"object\", properties = { to = { type = \"string\", pattern = \"@example\\\\.org$\" } } }\n",
    );
    let tightened = tightened.replace("../examples/quickstart/secrets/workspace-token", &repo_root().join("examples/quickstart/secrets/workspace-token").display().to_string());
    std::fs::write(dep.path("workspace.toml"), tightened).unwrap();
    let extra = format!(
        "\n[[servers]]\nmanifest = \"workspace.toml\"\ncommand = {:?}\nargs = [\"--state\", {:?}]\n",
        workspace_server_bin().display().to_string(),
        dep.workspace_state.display().to_string()
    );
    let mut cfg = std::fs::read_to_string(&dep.config).unwrap();
    cfg.push_str(&extra);
    std::fs::write(&dep.config, cfg).unwrap();

    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let triage = gw.connect(&dep.mint("triage")).await;
    let r = call(&triage, "workspace__send_message", json!({"to": "audit@exfil.attacker.test", "subject": "s", "body": "b"})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("request_denied"), "{}", text_of(&r));
    assert!(text_of(&r).contains("manifest-args-schema"), "{}", text_of(&r));
    // With a loosely constrained token, the manifest schema still holds at call time.
    let task = begin(&triage, json!([{"name": "p", "tools": ["workspace__send_message"]}])).await.unwrap();
    let any = json!({"schema": {"type": "string"}});
    let token = request_with(&triage, json!({"task": task, "tool": "workspace__send_message", "constraints": {"to": any, "subject": any, "body": any}, "purpose": "reply"})).await.unwrap();
    let r = call_with_token(&triage, "workspace__send_message", json!({"to": "audit@exfil.attacker.test", "subject": "s", "body": "b"}), &token).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("arguments_outside_policy"), "{}", text_of(&r));
    assert!(!dep.workspace_state.join("outbox.jsonl").exists());
    let r = call(&triage, "workspace__send_message", json!({"to": "alice@example.org", "subject": "s", "body": "b"})).await.unwrap();
    assert_eq!(r.is_error, Some(false), "{}", text_of(&r));
}

async fn refused_with(gw: &Gateway, token: Option<&str>, code: &str) {
    let (status, body, _) = post_raw(&gw.url, token, None, INIT).await;
    assert_eq!(status, 401, "{body}");
    // A JSON-RPC error, which MCP clients show: the code in data and in
    // the message, with the sentence.
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["jsonrpc"].as_str(), v["error"]["code"].as_i64()), (Some("2.0"), Some(-32600)), "{body}");
    assert_eq!(v["error"]["data"]["code"], code, "{body}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("[{code}]")) && message.len() > 60, "the message must name the code and say what to do: {body}");
}

#[tokio::test]
async fn each_identity_failure_is_refused_with_its_own_reason() {
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    let key = dep.dev_key();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let sub = "spiffe://jitgate.local/agent/triage";
    let mint = |iss: &str, sub: &str, aud: &str, at: i64, ttl: i64| jitgate::identity::mint(&key, iss, sub, aud, at, ttl).unwrap();

    refused_with(&gw, None, "identity_missing").await;
    refused_with(&gw, Some("not.a.jwt"), "identity_malformed").await;
    refused_with(&gw, Some(&mint("someone-else", sub, GATEWAY_ID, now, 600)), "identity_unknown_issuer").await;
    refused_with(&gw, Some(&mint("jitgate-dev-issuer", sub, "jitgate://other-gateway", now, 600)), "identity_wrong_audience").await;
    refused_with(&gw, Some(&mint("jitgate-dev-issuer", sub, GATEWAY_ID, now - 7200, 600)), "identity_expired").await;
    refused_with(&gw, Some(&mint("jitgate-dev-issuer", "spiffe://jitgate.local/agent/ghost", GATEWAY_ID, now, 600)), "identity_unknown_agent").await;
    refused_with(&gw, Some(&mint("jitgate-dev-issuer", "spiffe://evil.example/agent/triage", GATEWAY_ID, now, 600)), "identity_outside_trust_domain").await;
    // Forged: signed by another key that claims the issuer's kid.
    let mut rogue = jitgate::keys::KeyPair::from_seed(&[42; 32]);
    rogue.kid = key.kid.clone();
    refused_with(&gw, Some(&jitgate::identity::mint(&rogue, "jitgate-dev-issuer", sub, GATEWAY_ID, now, 600).unwrap()), "identity_bad_signature").await;
    // alg:none with the same claims.
    let good = mint("jitgate-dev-issuer", sub, GATEWAY_ID, now, 600);
    let payload = good.split('.').nth(1).unwrap();
    let none = format!("eyJhbGciOiJub25lIn0.{payload}.");
    refused_with(&gw, Some(&none), "identity_bad_alg").await;

    // The legitimate token still works.
    let (status, body, _) = post_raw(&gw.url, Some(&good), None, INIT).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn malformed_oversized_and_unknown_method_requests_get_specific_errors() {
    let dep = Deployment::new(&Setup { limits: "max_message_bytes = 4096".into(), ..Setup::default() });
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let token = dep.mint("triage");

    let (status, body, _) = post_raw(&gw.url, Some(&token), None, "{this is not json").await;
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(body.contains("deserialize request body"), "{body}");

    let big = format!(r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"workspace__read_note","arguments":{{"name":"{}"}}}}}}"#, "x".repeat(10_000));
    let (status, body, _) = post_raw(&gw.url, Some(&token), None, big).await;
    assert_eq!(status, 413, "{body}");

    // Unknown method inside a real session.
    let (status, _, sid) = post_raw(&gw.url, Some(&token), None, INIT).await;
    assert_eq!(status, 200);
    let sid = sid.expect("session id");
    let (_, _, _) = post_raw(&gw.url, Some(&token), Some(&sid), r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).await;
    let (_, body, _) = post_raw(&gw.url, Some(&token), Some(&sid), r#"{"jsonrpc":"2.0","id":3,"method":"tools/frobnicate","params":{}}"#).await;
    assert!(body.contains("-32601"), "{body}");

    // None of that hurt the gateway: a fresh client works.
    let client = gw.connect(&token).await;
    let r = call(&client, "workspace__list_notes", json!({})).await.unwrap();
    assert!(text_of(&r).contains("welcome.md"));
}

/// One raw request to /mcp with an agent's bearer token and a session id.
async fn session_request(method: reqwest::Method, url: &str, token: &str, sid: &str, last_event: Option<&str>, body: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .header("authorization", format!("Bearer {token}"))
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", "2025-11-25")
        .header("accept", "application/json, text/event-stream");
    if let Some(id) = last_event {
        req = req.header("last-event-id", id);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_owned());
    }
    // A GET opens a stream that stays open: the status is all we need.
    let resp = req.send().await.unwrap();
    resp.status().as_u16()
}

/// Another agent holding a victim's `Mcp-Session-Id` (read off a log, a
/// proxy, a shared machine) gets nothing from it: not the session's
/// responses (POST, GET, resumption with Last-Event-ID), not its end
/// (DELETE), not its calls (notifications/cancelled), not a session that was
/// initialized but not used yet. The victim's own session keeps working.
#[tokio::test]
async fn a_session_is_refused_to_every_other_agent_on_every_kind_of_request() {
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let triage = dep.mint("triage");
    let janitor = dep.mint("janitor");
    let list = r#"{"jsonrpc":"2.0","id":5,"method":"tools/list","params":{}}"#;
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let cancel = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":5,"reason":"attacker"}}"#;

    // Initialized, not yet used: the session already belongs to triage.
    let (_, _, sid) = post_raw(&gw.url, Some(&triage), None, INIT).await;
    let sid = sid.unwrap();
    let (status, body, _) = post_raw(&gw.url, Some(&janitor), Some(&sid), initialized).await;
    assert_eq!(status, 404, "a notification on another agent's session: {body}");
    assert!(body.contains("session_not_found"), "{body}");
    let (status, _, _) = post_raw(&gw.url, Some(&janitor), Some(&sid), list).await;
    assert_eq!(status, 404, "a request on another agent's fresh session");

    // The owner goes on as usual.
    assert_eq!(post_raw(&gw.url, Some(&triage), Some(&sid), initialized).await.0, 202);
    let (_, body, _) = post_raw(&gw.url, Some(&triage), Some(&sid), list).await;
    assert!(body.contains("workspace__read_note"), "{body}");

    use reqwest::Method;
    // Reading the session's stream, or resuming it after an event id.
    assert_eq!(session_request(Method::GET, &gw.url, &janitor, &sid, None, None).await, 404);
    assert_eq!(session_request(Method::GET, &gw.url, &janitor, &sid, Some("0"), None).await, 404);
    assert_eq!(session_request(Method::GET, &gw.url, &janitor, &sid, Some("1/0"), None).await, 404);
    // Cancelling its calls, ending it.
    assert_eq!(session_request(Method::POST, &gw.url, &janitor, &sid, None, Some(cancel)).await, 404);
    assert_eq!(session_request(Method::DELETE, &gw.url, &janitor, &sid, None, None).await, 404);
    // An agent with no credential, or a bad one, is refused before that.
    assert_eq!(session_request(Method::DELETE, &gw.url, "not-a-token", &sid, None, None).await, 401);

    // The owner's session survived all of it, and its own stream opens.
    let (_, body, _) = post_raw(&gw.url, Some(&triage), Some(&sid), list).await;
    assert!(body.contains("workspace__read_note"), "{body}");
    assert_eq!(session_request(Method::GET, &gw.url, &triage, &sid, None, None).await, 200);
    assert_eq!(session_request(Method::POST, &gw.url, &triage, &sid, None, Some(cancel)).await, 202);
    // The owner ends it the way the SDKs expect (200 or 204), and then it is gone.
    assert_eq!(session_request(Method::DELETE, &gw.url, &triage, &sid, None, None).await, 204);
    assert_eq!(post_raw(&gw.url, Some(&triage), Some(&sid), list).await.0, 404);
    // Session ids never reach the log in clear.
    assert!(!gw.log().contains(&sid), "a session id was logged");
}

/// POST a raw body with the 2026-07-28 headers for `method`.
async fn post_raw_with(url: &str, token: &str, version: &str, method: &str, body: &str) -> (u16, String, Option<String>) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", version)
        .header("mcp-method", method)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default(), None)
}

/// One `tools/call` with per-request `_meta` (the 2026-07-28 lifecycle) as
/// raw HTTP, naming `version`, optionally carrying a session header.
async fn stateless_call(url: &str, version: &str, token: &str, session: Option<&str>, tool: &str, arguments: serde_json::Value) -> serde_json::Value {
    stateless_call_on(&reqwest::Client::new(), url, version, token, session, tool, arguments).await
}

/// [`stateless_call`] on a given HTTP client (whose connection it keeps alive).
async fn stateless_call_on(
    client: &reqwest::Client,
    url: &str,
    version: &str,
    token: &str,
    session: Option<&str>,
    tool: &str,
    arguments: serde_json::Value,
) -> serde_json::Value {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": tool, "arguments": arguments,
        "_meta": {"io.modelcontextprotocol/protocolVersion": version, "io.modelcontextprotocol/clientCapabilities": {}}}});
    let mut req = client
        .post(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", version)
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .body(body.to_string());
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let text = req.send().await.unwrap().text().await.unwrap();
    // JSON or a one-event SSE stream.
    let json = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or(&text);
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A 2026-07-28 request has no session, even if it carries a session header
/// (its own, left over): the task it begins is not tied to a per-request
/// handler and lives on for the agent's next request.
#[tokio::test]
async fn a_modern_request_with_a_stale_session_header_keeps_its_task() {
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let token = dep.mint("triage");
    // rmcp serves statelessly whatever version `_meta` names; so does jitgate.
    for version in ["2026-07-28", "2025-06-18"] {
        stateless_task_survives(&gw, &token, version).await;
    }
}

async fn stateless_task_survives(gw: &Gateway, token: &str, version: &str) {
    let token = token.to_owned();
    let modern_call = |url: &str, token: &str, session: Option<&str>, tool: &str, arguments: serde_json::Value| {
        let (url, token, session, tool) = (url.to_owned(), token.to_owned(), session.map(str::to_owned), tool.to_owned());
        let version = version.to_owned();
        async move { stateless_call(&url, &version, &token, session.as_deref(), &tool, arguments).await }
    };
    let (_, _, sid) = post_raw(&gw.url, Some(&token), None, INIT).await;
    let sid = sid.unwrap();
    let plan = json!({"objective": "read", "phases": [{"name": "r", "tools": ["workspace__read_note"]}]});
    let begun = modern_call(&gw.url, &token, Some(&sid), "jit_begin_task", plan).await;
    let task = begun["result"]["structuredContent"]["task"].as_str().unwrap_or_else(|| panic!("{begun}")).to_owned();
    let ask = json!({"task": task, "tool": "workspace__read_note", "arguments": {"name": "q3-plan.md"}, "purpose": "read"});
    let granted = modern_call(&gw.url, &token, Some(&sid), "jit_request", ask).await;
    let grant = &granted["result"]["structuredContent"];
    assert_eq!(grant["decision"], "allow", "{granted}");
    let read = modern_call(&gw.url, &token, None, "workspace__read_note", json!({"name": "q3-plan.md", "_jit_token": grant["token"]})).await;
    assert!(read.to_string().contains("Ship the billing export"), "{read}");
    if version >= "2026-07-28" {
        assert_eq!(read["result"]["resultType"], "complete", "2026-07-28 results carry resultType: {read}");
        // The tool list differs per agent: nobody may cache or share it.
        let body = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/list", "params": {
            "_meta": {"io.modelcontextprotocol/protocolVersion": version, "io.modelcontextprotocol/clientCapabilities": {}}}});
        let (_, text, _) = post_raw_with(&gw.url, &token, version, "tools/list", &body.to_string()).await;
        let json = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or(&text);
        let list: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!((list["result"]["ttlMs"].as_u64(), list["result"]["cacheScope"].as_str()), (Some(0), Some("private")), "{list}");
    }
}

/// DNS rebinding and cross-site browser requests: a `Host` that is not this
/// gateway's (another port included) and an `Origin` of another site are
/// refused; loopback origins (MCP Inspector) and clients without `Origin` work.
#[tokio::test]
async fn foreign_hosts_and_origins_are_refused() {
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let token = dep.mint("triage");
    let port = gw.url.rsplit(':').next().unwrap().trim_end_matches("/mcp").to_owned();
    let send = |host: Option<String>, origin: Option<&'static str>| {
        let (url, token) = (gw.url.clone(), token.clone());
        async move {
            let mut req = reqwest::Client::new()
                .post(url)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(INIT);
            if let Some(h) = host {
                req = req.header("host", h);
            }
            if let Some(o) = origin {
                req = req.header("origin", o);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap();
            if status == 403 {
                // Refused the way every other request to /mcp is: a JSON-RPC error.
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
                return (status, v["error"]["data"]["code"].as_str().unwrap_or_default().to_owned());
            }
            (status, String::new())
        }
    };
    assert_eq!(send(Some("evil.example:80".into()), None).await, (403, "host_not_allowed".into()));
    assert_eq!(send(Some("127.0.0.1:1".into()), None).await, (403, "host_not_allowed".into()), "another port of loopback");
    assert_eq!(send(None, Some("https://evil.example")).await, (403, "origin_not_allowed".into()));
    assert_eq!(send(None, Some("http://localhost:6274")).await.0, 200, "MCP Inspector's origin");
    assert_eq!(send(Some(format!("localhost:{port}")), None).await.0, 200);
    assert_eq!(send(None, None).await.0, 200);
}

/// A replica with `allowed_hosts` set (the name clients use through the
/// balancer), asked directly: a 403 in the shape of every other refusal
/// of /mcp, naming the Host and the setting, not rmcp's plain text.
#[tokio::test]
async fn a_host_outside_allowed_hosts_is_refused_with_the_json_error_every_refusal_has() {
    let dep = Deployment::new(&Setup { extra_config: "\n[http]\nallowed_hosts = [\"gateway.internal\"]\n".into(), ..Setup::default() });
    let gw = Gateway::start(&dep);
    let direct = gw.base.trim_start_matches("http://").to_owned();
    let (status, body, _) = post_raw(&gw.url, Some(&dep.mint("triage")), None, INIT).await;
    assert_eq!(status, 403, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert_eq!((v["jsonrpc"].as_str(), v["error"]["data"]["code"].as_str()), (Some("2.0"), Some("host_not_allowed")), "{body}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("Host `{direct}`")) && message.contains("[http] allowed_hosts"), "{message}");
}

/// Slow clients do not hold the gateway: a client that never finishes its
/// headers is disconnected, one that drips its body gets 408; a prompt
/// client on the same gateway is served meanwhile.
#[tokio::test]
async fn slow_headers_and_bodies_are_cut_off() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dep = Deployment::new(&Setup { limits: "header_read_timeout = \"1s\"\nbody_read_timeout = \"1s\"".into(), ..Setup::default() });
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let token = dep.mint("triage");
    let addr = gw.base.trim_start_matches("http://").to_owned();

    // Headers that never end: the connection is closed (read returns 0 or an error).
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /mcp HTTP/1.1\r\nHost: ").await.unwrap();
    let mut buf = [0u8; 512];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(30), slow.read(&mut buf)).await.expect("the server must act within the bound");
    let text = String::from_utf8_lossy(&buf[..closed.as_ref().map(|n| *n).unwrap_or(0)]).into_owned();
    assert!(closed.is_err() || text.is_empty() || text.starts_with("HTTP/1.1 408"), "still open or answered: {text}");

    // A body announced but dripped: 408 with a reason.
    let mut drip = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 200\r\n\r\n{{\"jsonrpc\""
    );
    drip.write_all(head.as_bytes()).await.unwrap();
    // Meanwhile a prompt client is served.
    let (status, _, _) = post_raw(&gw.url, Some(&token), None, INIT).await;
    assert_eq!(status, 200);
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), drip.read_to_end(&mut answer)).await.expect("the server must act within the bound");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("request_timeout"), "{answer}");
}

/// Whether the socket of process `pid` whose local port is `local` (and, when
/// given, whose peer port is `peer`) has `TCP_NODELAY` set, for every such
/// established socket: read in the real process, not assumed. The socket is
/// found by inode in `/proc/PID/net/tcp{,6}` and `/proc/PID/fd`, duplicated
/// into this process with `pidfd_getfd` (the gateway and the server are our
/// children, so we may), and asked with `getsockopt`.
fn nodelay_of_sockets(pid: u32, local: Option<u16>, peer: Option<u16>) -> Vec<bool> {
    let mut inodes = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next().unwrap(), 16).unwrap();
            let established = cols[3] == "01";
            if established && local.is_none_or(|p| port(cols[1]) == p) && peer.is_none_or(|p| port(cols[2]) == p) {
                inodes.push(cols[9].to_owned());
            }
        }
    }
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) } as libc::c_int;
    assert!(pidfd >= 0, "pidfd_open({pid}): {}", std::io::Error::last_os_error());
    let mut answers = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else { continue };
        let target = target.display().to_string();
        if !inodes.iter().any(|i| target == format!("socket:[{i}]")) {
            continue;
        }
        let their_fd: libc::c_int = entry.file_name().to_string_lossy().parse().unwrap();
        let ours = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, their_fd, 0) } as libc::c_int;
        if ours < 0 {
            let e = std::io::Error::last_os_error();
            // Closed since it was listed: not one of the connections we look at.
            assert_eq!(e.raw_os_error(), Some(libc::EBADF), "pidfd_getfd (needs ptrace rights over our own children): {e}");
            continue;
        }
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let rc = unsafe { libc::getsockopt(ours, libc::IPPROTO_TCP, libc::TCP_NODELAY, (&mut value as *mut libc::c_int).cast(), &mut len) };
        assert_eq!(rc, 0, "getsockopt: {}", std::io::Error::last_os_error());
        unsafe { libc::close(ours) };
        answers.push(value != 0);
    }
    unsafe { libc::close(pidfd) };
    answers
}

/// Issue 15's bug: each response goes out in more than one write, so with
/// Nagle's algorithm on, the second write waited for the client's delayed ACK
/// (about 40 ms per request for keep-alive clients, 88 ms for an authorized
/// call). Every hop of an authorized call over kept-alive connections must
/// send at once: the agent's connection to jitgate, jitgate's connection to
/// an HTTP server, and the example server's side of it. Checked on the real
/// sockets of the real processes after a whole authorized call, so the test
/// does not depend on timing.
#[tokio::test]
async fn every_hop_of_a_kept_alive_authorized_call_sends_without_waiting_for_acks() {
    use std::io::BufRead as _;
    let dep = Deployment::new(&Setup { workspace: false, ..Setup::default() });
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut ws = KillOnDrop(
        std::process::Command::new(workspace_server_bin())
            .args(["--listen", "127.0.0.1:0", "--state"])
            .arg(dep.path("ws-http"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = std::io::BufReader::new(ws.0.stderr.take().unwrap()).lines();
    let ws_url = loop {
        let line = lines.next().expect("the example server ended before listening").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.trim().to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    let ws_port: u16 = ws_url.trim_start_matches("http://127.0.0.1:").trim_end_matches("/mcp").parse().unwrap();
    dep.append_config(&format!(
        "\n[[servers]]\nmanifest = {:?}\nurl = {ws_url:?}\n",
        repo_root().join("tool-manifests/workspace.toml").display().to_string()
    ));
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let gw_port: u16 = gw.base.rsplit(':').next().unwrap().parse().unwrap();

    // The legitimate flow, over one kept-alive client connection (raw
    // HTTP/1.1 from one client, as a Python agent's HTTP client does).
    let agent = reqwest::Client::new();
    let token = dep.mint("triage");
    let call = |tool: &'static str, arguments: serde_json::Value| stateless_call_on(&agent, &gw.url, "2026-07-28", &token, None, tool, arguments);
    let plan = json!({"objective": "read", "phases": [{"name": "r", "tools": ["workspace__read_note"]}]});
    let begun = call("jit_begin_task", plan).await;
    let task = begun["result"]["structuredContent"]["task"].as_str().unwrap_or_else(|| panic!("{begun}")).to_owned();
    let ask = json!({"task": task, "tool": "workspace__read_note", "arguments": {"name": "welcome.md"}, "purpose": "read"});
    let granted = call("jit_request", ask).await;
    let grant = &granted["result"]["structuredContent"];
    assert_eq!(grant["decision"], "allow", "{granted}");
    let read = call("workspace__read_note", json!({"name": "welcome.md", "_jit_token": grant["token"]})).await;
    assert_eq!(read["result"]["isError"], false, "{read}");

    let gateway_pid = gw.child.id();
    let accepted = nodelay_of_sockets(gateway_pid, Some(gw_port), None);
    assert!(!accepted.is_empty(), "the client's kept-alive connection to jitgate should be open");
    assert!(accepted.iter().all(|on| *on), "jitgate's accepted sockets: {accepted:?}");
    let downstream = nodelay_of_sockets(gateway_pid, None, Some(ws_port));
    assert!(!downstream.is_empty(), "jitgate should keep its connection to the server");
    assert!(downstream.iter().all(|on| *on), "jitgate's sockets to the server: {downstream:?}");
    let served = nodelay_of_sockets(ws.0.id(), Some(ws_port), None);
    assert!(!served.is_empty(), "the server's side of jitgate's connection should be open");
    assert!(served.iter().all(|on| *on), "the example server's accepted sockets: {served:?}");
    drop(agent);
}
