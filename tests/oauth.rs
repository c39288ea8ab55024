//! jitgate as an OAuth resource server in front of a real OpenID provider
//! (npm `oidc-provider`, started by the test on loopback with RS256 and ES256
//! keys): agents' access tokens found by OpenID Connect discovery, the MCP
//! authorization spec's 401 discovery driven by the official Python SDK,
//! each wrong property of a token refused, key rotation picked up without a
//! restart, made-up key ids that cannot make jitgate hammer the provider, and
//! an outage that changes nothing within `max_stale`.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64URL};
use common::*;
use serde_json::{Value, json};

/// The provider process (killed on drop).
struct Provider {
    child: Child,
    port: u16,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}


impl Provider {
    fn start(port: u16, resource: &str) -> Self {
        Self::start_exchanging(port, resource, None)
    }

    /// The provider, also exchanging tokens for `exchange_audience` (RFC 8693).
    fn start_exchanging(port: u16, resource: &str, exchange_audience: Option<&str>) -> Self {
        let mut child = Command::new(node22())
            .arg(repo_root().join("tests/support/node/oidc_provider.mjs"))
            .args([port.to_string(), resource.to_owned()])
            .envs(exchange_audience.map(|a| ("EXCHANGE_AUDIENCE", a.to_owned())))
            .current_dir(repo_root().join("tests/support/node"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines.next().and_then(Result::ok).unwrap_or_default();
        assert!(ready.contains("listening"), "the OpenID provider did not start: {ready:?}");
        // Keep draining its output so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        Self { child, port, issuer: format!("http://127.0.0.1:{port}") }
    }

    /// An access token by client credentials, for `resource` with `scope`,
    /// for the client `triage-client` (HTTP Basic).
    async fn token(&self, resource: &str, scope: &str) -> String {
        self.token_for(resource, scope, true).await
    }

    /// The same for the client `triage-client-post` (client_secret_post).
    async fn token_post_client(&self, resource: &str) -> String {
        self.token_for(resource, "mcp:tools", false).await
    }

    async fn token_for(&self, resource: &str, scope: &str, basic: bool) -> String {
        let mut body = format!("grant_type=client_credentials&scope={}&resource={}", enc(scope), enc(resource));
        let mut req = reqwest::Client::new().post(format!("{}/token", self.issuer)).header("content-type", "application/x-www-form-urlencoded");
        if basic {
            req = req.header("authorization", format!("Basic {}", STANDARD.encode("triage-client:triage-secret")));
        } else {
            body.push_str("&client_id=triage-client-post&client_secret=triage-secret");
        }
        let r = req.body(body).send().await.unwrap();
        let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        v["access_token"].as_str().unwrap_or_else(|| panic!("no token: {v}")).to_owned()
    }

    async fn sign_with(&self, alg: &str) {
        reqwest::get(format!("{}/__sign?alg={alg}", self.issuer)).await.unwrap();
    }

    async fn stats(&self) -> Value {
        serde_json::from_str(&reqwest::get(format!("{}/__stats", self.issuer)).await.unwrap().text().await.unwrap()).unwrap()
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// A gateway whose agent `triage-svc` is the provider's client
/// `triage-client`, tokens from the provider found by discovery.
struct Setting {
    provider: Provider,
    gateway: Gateway,
    _dep: Deployment,
    resource: String,
}

async fn setting() -> Setting {
    let (gw_port, idp_port) = (free_port(), free_port());
    let resource = format!("http://127.0.0.1:{gw_port}/mcp");
    let provider = Provider::start(idp_port, &resource);
    let issuer = provider.issuer.clone();
    let dep = Deployment::new(&Setup {
        agents: vec![(
            "svc.toml".into(),
            "name = \"triage-svc\"\nid = \"triage-client\"\nteam = \"support\"\nallowed_tools = [\"workspace__read_note\"]\nissuers = [\"corp-idp\"]\n".into(),
        )],
        extra_config: format!(
            "\n[[identity.issuers]]\nname = \"corp-idp\"\niss = \"{issuer}\"\ndiscovery = true\nalgorithms = [\"RS256\", \"ES256\"]\ntyp = \"at+jwt\"\nrequired_scopes = [\"mcp:tools\"]\nmax_lifetime = \"1h\"\n\
             \n[oauth]\nresource = \"{resource}\"\nauthorization_servers = [\"{issuer}\"]\n"
        ),
        ..Setup::default()
    });
    let gateway = Gateway::start_at(&dep, &format!("127.0.0.1:{gw_port}"));
    gateway.wait_server("workspace", "ready").await;
    Setting { provider, gateway, _dep: dep, resource }
}

/// POST `tools/list` with this token (or none): status, body, WWW-Authenticate.
async fn list_with(url: &str, token: Option<&str>) -> (u16, Value, String) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/list")
        .body(
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {}
            }}})
            .to_string(),
        );
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), challenge)
}

fn python() -> std::path::PathBuf {
    let p = repo_root().join(".venv/bin/python");
    assert!(p.exists(), "the Python test client is not installed: run scripts/setup-test-deps.sh (the README's test command .ci/run does)");
    p
}

#[tokio::test]
async fn the_official_python_and_typescript_sdks_find_the_provider_from_the_401_and_complete_a_task() {
    let s = setting().await;
    // What a client without a token learns: where the metadata is.
    let (status, _, challenge) = list_with(&s.gateway.url, None).await;
    assert_eq!(status, 401);
    let metadata_url = format!("{}/.well-known/oauth-protected-resource/mcp", s.gateway.base);
    assert!(challenge.contains(&format!("resource_metadata=\"{metadata_url}\"")) && challenge.contains("scope=\"mcp:tools\""), "{challenge}");
    assert!(!challenge.contains("error="), "no credential, no error code (RFC 6750): {challenge}");
    for url in [metadata_url.clone(), format!("{}/.well-known/oauth-protected-resource", s.gateway.base)] {
        let m: Value = serde_json::from_str(&reqwest::get(&url).await.unwrap().text().await.unwrap()).unwrap();
        assert_eq!(m["resource"], s.resource.as_str(), "{m}");
        assert_eq!(m["authorization_servers"], json!([s.provider.issuer]), "{m}");
        assert_eq!(m["scopes_supported"], json!(["mcp:tools"]), "{m}");
    }
    let not_ours = reqwest::get(format!("{}/.well-known/oauth-protected-resource/other", s.gateway.base)).await.unwrap();
    assert_eq!(not_ours.status().as_u16(), 404);

    // The official client does the rest by itself.
    for alg in ["ES256", "RS256"] {
        s.provider.sign_with(alg).await;
        let out = Command::new(python())
            .arg(repo_root().join("tests/support/python/oauth_task.py"))
            .args([&s.gateway.url, &s.provider.issuer, "triage-client", "triage-secret"])
            .output()
            .unwrap();
        assert!(out.status.success(), "python client failed:\n{}\n{}", String::from_utf8_lossy(&out.stderr), s.gateway.log());
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        for step in ["begin", "request", "call", "end"] {
            assert_eq!(r[step]["is_error"], false, "{step} with {alg}: {r}");
        }
        assert!(r["call_text"].as_str().unwrap().contains("Q3 plan"), "{r}");
        let requests = r["requests"].to_string();
        assert!(requests.contains("/.well-known/oauth-protected-resource") && requests.contains("/token"), "{requests}");
        // The token the SDK got is for jitgate's resource, signed as asked.
        let token = r["token"].as_str().unwrap();
        let header: Value = serde_json::from_slice(&B64URL.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header["alg"], alg);
    }

    // The official TypeScript SDK's client-credentials provider does the same.
    let out = Command::new(node22())
        .arg(repo_root().join("tests/support/node/oauth_task.mjs"))
        .args([&s.gateway.url, &s.provider.issuer, "triage-client", "triage-secret"])
        .current_dir(repo_root().join("tests/support/node"))
        .output()
        .unwrap();
    assert!(out.status.success(), "TypeScript client failed:\n{}\n{}", String::from_utf8_lossy(&out.stderr), s.gateway.log());
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    for step in ["begin", "request", "call", "end"] {
        assert_eq!(r[step]["is_error"], false, "{step}: {r}");
    }
    assert!(r["call_text"].as_str().unwrap().contains("Q3 plan"), "{r}");
}

/// Sign `claims` with HS256 keyed by `secret`, naming `kid`.
fn hs256(kid: &str, claims: &Value, secret: &[u8]) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    header.typ = Some("at+jwt".into());
    jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_secret(secret)).unwrap()
}

fn claims_of(token: &str) -> Value {
    serde_json::from_slice(&B64URL.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

fn header_of(token: &str) -> Value {
    serde_json::from_slice(&B64URL.decode(token.split('.').next().unwrap()).unwrap()).unwrap()
}

#[tokio::test]
async fn each_wrong_property_of_a_real_token_is_refused_and_the_right_one_works() {
    let s = setting().await;
    let good = s.provider.token(&s.resource, "mcp:tools").await;
    let (status, body, _) = list_with(&s.gateway.url, Some(&good)).await;
    assert_eq!(status, 200, "{body}\n{}", s.gateway.log());

    // Issued for someone else: another resource.
    let other = s.provider.token("http://127.0.0.1:1/other", "mcp:tools").await;
    let (status, body, challenge) = list_with(&s.gateway.url, Some(&other)).await;
    assert_eq!((status, body["error"]["data"]["code"].as_str()), (401, Some("identity_wrong_audience")), "{body}");
    assert!(challenge.contains("error=\"invalid_token\"") && challenge.contains("resource_metadata="), "{challenge}");

    // Without the scope this gateway requires: 403 insufficient_scope.
    let narrow = s.provider.token(&s.resource, "mcp:admin").await;
    let (status, body, challenge) = list_with(&s.gateway.url, Some(&narrow)).await;
    assert_eq!((status, body["error"]["data"]["code"].as_str()), (403, Some("insufficient_scope")), "{body}");
    assert!(challenge.contains("error=\"insufficient_scope\"") && challenge.contains("scope=\"mcp:tools\""), "{challenge}");

    // HS256 keyed with the public key (the classic confusion), and `none`.
    let jwks: Value = serde_json::from_str(&reqwest::get(format!("{}/jwks", s.provider.issuer)).await.unwrap().text().await.unwrap()).unwrap();
    let rsa = jwks["keys"].as_array().unwrap().iter().find(|k| k["kty"] == "RSA").unwrap().clone();
    let claims = claims_of(&good);
    let forged = hs256(rsa["kid"].as_str().unwrap(), &claims, rsa.to_string().as_bytes());
    let (status, body, _) = list_with(&s.gateway.url, Some(&forged)).await;
    assert_eq!((status, body["error"]["data"]["code"].as_str()), (401, Some("identity_bad_alg")), "{body}");
    let none = format!("{}.{}.", B64URL.encode(json!({"alg": "none", "typ": "at+jwt"}).to_string()), B64URL.encode(claims.to_string()));
    let (status, body, _) = list_with(&s.gateway.url, Some(&none)).await;
    assert_eq!((status, body["error"]["data"]["code"].as_str()), (401, Some("identity_bad_alg")), "{body}");

    // A good ES256 signature presented as RS256 under the RSA key's kid: the
    // key's algorithm is fixed by the key, so the token's claim changes nothing.
    let parts: Vec<&str> = good.split('.').collect();
    let mut header = header_of(&good);
    header["alg"] = json!("RS256");
    header["kid"] = rsa["kid"].clone();
    let swapped = format!("{}.{}.{}", B64URL.encode(header.to_string()), parts[1], parts[2]);
    let (status, body, _) = list_with(&s.gateway.url, Some(&swapped)).await;
    assert_eq!(status, 401, "{body}");

    // Altered claims (another subject), and a token whose kid is the
    // development issuer's while it claims the provider as issuer.
    let mut altered = claims.clone();
    altered["sub"] = json!("someone-else");
    let tampered = format!("{}.{}.{}", parts[0], B64URL.encode(altered.to_string()), parts[2]);
    let (status, body, _) = list_with(&s.gateway.url, Some(&tampered)).await;
    assert_eq!((status, body["error"]["data"]["code"].as_str()), (401, Some("identity_bad_signature")), "{body}");
    let dev = s._dep.mint("triage");
    let mut cross = header_of(&dev);
    cross["typ"] = json!("at+jwt");
    let dev_parts: Vec<&str> = dev.split('.').collect();
    let cross = format!("{}.{}.{}", B64URL.encode(cross.to_string()), B64URL.encode(claims.to_string()), dev_parts[2]);
    let (status, body, _) = list_with(&s.gateway.url, Some(&cross)).await;
    assert_eq!((status, body["error"]["data"]["code"].as_str()), (401, Some("identity_unknown_key")), "{body}");

    // A token of the right issuer but not an access token (`typ` JWT).
    let mut untyped = header_of(&good);
    untyped["typ"] = json!("JWT");
    let untyped = format!("{}.{}.{}", B64URL.encode(untyped.to_string()), parts[1], parts[2]);
    let (status, _, _) = list_with(&s.gateway.url, Some(&untyped)).await;
    assert_eq!(status, 401);

    // The good token still works after all that.
    let (status, _, _) = list_with(&s.gateway.url, Some(&good)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn rotation_is_picked_up_made_up_kids_do_not_hammer_the_provider_and_an_outage_changes_nothing() {
    let s = setting().await;
    let Setting { provider, gateway, _dep, resource } = s;
    let first = provider.token(&resource, "mcp:tools").await;
    assert_eq!(list_with(&gateway.url, Some(&first)).await.0, 200);
    // A token minted now, used only during the outage below.
    let kept = provider.token(&resource, "mcp:tools").await;

    // The provider restarts with new keys (new kids): a rotation.
    let port = provider.port;
    drop(provider);
    let provider = Provider::start(port, &resource);
    let rotated = provider.token(&resource, "mcp:tools").await;
    assert_ne!(header_of(&rotated)["kid"], header_of(&first)["kid"]);
    let (status, body, _) = list_with(&gateway.url, Some(&rotated)).await;
    assert_eq!(status, 200, "the new key is fetched on its first unknown kid: {body}\n{}", gateway.log());
    let before = provider.stats().await["jwks"].as_u64().unwrap();
    assert!(before >= 1);

    // Made-up kids: at most one more fetch, whatever their number.
    let claims = claims_of(&rotated);
    let sig = rotated.split('.').nth(2).unwrap();
    for i in 0..25 {
        let h = json!({"alg": "ES256", "typ": "at+jwt", "kid": format!("made-up-{i}")});
        let t = format!("{}.{}.{sig}", B64URL.encode(h.to_string()), B64URL.encode(claims.to_string()));
        let (status, body, _) = list_with(&gateway.url, Some(&t)).await;
        assert_eq!((status, body["error"]["data"]["code"].as_str()), (401, Some("identity_unknown_key")), "{body}");
    }
    let after = provider.stats().await["jwks"].as_u64().unwrap();
    assert!(after - before <= 1, "25 made-up kids fetched the key set {} times", after - before);

    // The provider goes away. A token signed with the key in use keeps
    // working (within max_stale); /healthz shows the set and its state.
    let fresh = provider.token(&resource, "mcp:tools").await;
    drop(provider);
    let (status, body, _) = list_with(&gateway.url, Some(&fresh)).await;
    assert_eq!(status, 200, "{body}");
    let health: Value = serde_json::from_str(&reqwest::get(format!("{}/healthz", gateway.base)).await.unwrap().text().await.unwrap()).unwrap();
    let set = &health["issuer_keys"][0];
    assert_eq!((set["issuer"].as_str(), set["status"].as_str(), set["keys"].as_u64()), (Some("corp-idp"), Some("ok"), Some(2)), "{health}");
    assert!(!health.to_string().contains("127.0.0.1") && !health.to_string().contains(header_of(&fresh)["kid"].as_str().unwrap()), "no URLs, key ids or key material in the unauthenticated /healthz: {health}");
    // The pre-rotation key is gone from the set: tokens it signed are
    // refused, including one verified (and cached) before the rotation.
    let (status, body, _) = list_with(&gateway.url, Some(&kept)).await;
    assert_eq!((status, body["error"]["data"]["code"].as_str()), (401, Some("identity_unknown_key")), "{body}");
    let (status, body, _) = list_with(&gateway.url, Some(&first)).await;
    assert_eq!((status, body["error"]["data"]["code"].as_str()), (401, Some("identity_unknown_key")), "a cached verification ends with its key: {body}");
}

/// A SPIFFE bundle endpoint on loopback (the `https_web` profile's JSON):
/// one JWT-SVID key and one X.509-SVID key, with a refresh hint.
async fn bundle_endpoint() -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let jwks: Value = serde_json::from_str(include_str!("fixtures/keys/jwks.json")).unwrap();
    let mut keys = Vec::new();
    for k in jwks["keys"].as_array().unwrap() {
        let mut k = k.clone();
        let obj = k.as_object_mut().unwrap();
        obj.remove("alg");
        match obj["kid"].as_str() {
            Some("ec-1") => obj.insert("use".into(), json!("jwt-svid")),
            Some("rsa-1") => obj.insert("use".into(), json!("x509-svid")),
            _ => continue,
        };
        keys.push(k);
    }
    let body = json!({"keys": keys, "spiffe_sequence": 7, "spiffe_refresh_hint": 300}).to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/bundle", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = [0u8; 2048];
            let _ = conn.read(&mut buf).await;
            let reply = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            let _ = conn.write_all(reply.as_bytes()).await;
        }
    });
    url
}

fn svid(kid: &str, pem_ec: bool, claims: Value) -> String {
    let mut h = jsonwebtoken::Header::new(if pem_ec { jsonwebtoken::Algorithm::ES256 } else { jsonwebtoken::Algorithm::RS256 });
    h.kid = Some(kid.into());
    h.typ = Some("JWT".into());
    let key = if pem_ec {
        jsonwebtoken::EncodingKey::from_ec_pem(include_bytes!("fixtures/keys/ec-p256.pem")).unwrap()
    } else {
        jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("fixtures/keys/rsa-2048.pem")).unwrap()
    };
    jsonwebtoken::encode(&h, &claims, &key).unwrap()
}

/// JWT-SVIDs verified with the trust bundle from a SPIFFE bundle endpoint:
/// only the bundle's `jwt-svid` keys count, the subject must be a valid
/// SPIFFE ID in the trust domain, and `aud` must name this gateway.
// Multi-threaded: the bundle endpoint runs on this runtime while the test
// blocks waiting for the gateway to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_svids_verify_with_a_spiffe_bundle_endpoint() {
    let url = bundle_endpoint().await;
    let dep = Deployment::new(&Setup {
        agents: vec![("svc.toml".into(), "name = \"svc\"\nid = \"spiffe://spire.test/agent/svc\"\nteam = \"support\"\nallowed_tools = [\"workspace__read_note\"]\n".into())],
        extra_config: format!(
            "\n[[identity.issuers]]\nname = \"spire\"\niss = \"https://spire.test\"\ntrust_domain = \"spiffe://spire.test\"\nspiffe_bundle_endpoint = \"{url}\"\nmax_lifetime = \"1h\"\n"
        ),
        ..Setup::default()
    });
    let gateway = Gateway::start(&dep);
    gateway.wait_server("workspace", "ready").await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let claims = |sub: &str, aud: Value| json!({"iss": "https://spire.test", "sub": sub, "aud": aud, "exp": now + 300, "iat": now});
    let good = svid("ec-1", true, claims("spiffe://spire.test/agent/svc", json!([GATEWAY_ID])));
    let (status, body, _) = list_with(&gateway.url, Some(&good)).await;
    assert_eq!(status, 200, "{body}\n{}", gateway.log());
    // The bundle's X.509-SVID key does not verify JWT-SVIDs.
    let x509 = svid("rsa-1", false, claims("spiffe://spire.test/agent/svc", json!(GATEWAY_ID)));
    let (status, body, _) = list_with(&gateway.url, Some(&x509)).await;
    assert_eq!((status, body["error"]["data"]["code"].as_str()), (401, Some("identity_unknown_key")), "{body}");
    // Not a valid SPIFFE ID, another trust domain, another audience.
    for (sub, aud, code) in [
        ("spiffe://spire.test/agent/../svc", json!(GATEWAY_ID), "identity_not_spiffe_id"),
        ("spiffe://other.test/agent/svc", json!(GATEWAY_ID), "identity_outside_trust_domain"),
        ("spiffe://spire.test/agent/svc", json!("spiffe://spire.test/someone-else"), "identity_wrong_audience"),
    ] {
        let (status, body, _) = list_with(&gateway.url, Some(&svid("ec-1", true, claims(sub, aud)))).await;
        assert_eq!((status, body["error"]["data"]["code"].as_str()), (401, Some(code)), "{sub}: {body}");
    }
}

/// A process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the downstream server recorded about each bearer token it checked.
fn callers_seen(state: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(state.join("callers.jsonl")).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test]
async fn a_server_that_must_know_the_caller_gets_a_credential_exchanged_for_each_agent_and_never_the_agents_own() {
    let (gw_port, idp_port, ds_port) = (free_port(), free_port(), free_port());
    let resource = format!("http://127.0.0.1:{gw_port}/mcp");
    let audience = format!("http://127.0.0.1:{ds_port}/mcp");
    let provider = Provider::start_exchanging(idp_port, &resource, Some(&audience));
    let issuer = provider.issuer.clone();
    let work = tempfile::tempdir().unwrap();

    // The downstream: the example server over HTTP, accepting only access
    // tokens from the provider for its own audience.
    let jwks = reqwest::get(format!("{issuer}/jwks")).await.unwrap().text().await.unwrap();
    std::fs::write(work.path().join("jwks.json"), jwks).unwrap();
    let ds_state = work.path().join("ds-state");
    let mut ds = Command::new(workspace_server_bin())
        .arg("--state")
        .arg(&ds_state)
        .args(["--listen", &format!("127.0.0.1:{ds_port}"), "--oauth-audience", &audience, "--oauth-jwks"])
        .arg(work.path().join("jwks.json"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ds_err = BufReader::new(ds.stderr.take().unwrap()).lines();
    let ready = ds_err.next().and_then(Result::ok).unwrap_or_default();
    let _ds = Killed(ds);
    assert!(ready.contains("listening"), "the downstream did not start: {ready}");

    let manifest = std::fs::read_to_string(repo_root().join("tool-manifests/workspace.toml")).unwrap();
    let transport_at = manifest.find("[server.transport]").unwrap();
    let tools_at = manifest.find("# List the notes").unwrap();
    let manifest = format!(
        "{}[server.transport]\nurl = \"{audience}\"\n\n[[server.credentials]]\nheader = \"Authorization\"\nprefix = \"Bearer \"\nexchange = {{ audience = \"{audience}\" }}\n\n{}",
        &manifest[..transport_at],
        &manifest[tools_at..]
    );
    std::fs::write(work.path().join("workspace-http.toml"), manifest).unwrap();
    std::fs::write(work.path().join("exchange-secret"), "exchange-secret\n").unwrap();
    let agent = |name: &str, id: &str, issuer: &str| {
        (format!("{name}.toml"), format!("name = \"{name}\"\nid = \"{id}\"\nteam = \"support\"\nallowed_tools = [\"workspace__write_note\", \"workspace__read_note\"]\nissuers = [\"{issuer}\"]\n"))
    };
    let dep = Deployment::new(&Setup {
        workspace: false,
        agents: vec![agent("triage-svc", "triage-client", "corp-idp"), agent("post-svc", "triage-client-post", "corp-idp"), agent("local-svc", "spiffe://jitgate.local/agent/local", "dev")],
        extra_config: format!(
            "\n[[identity.issuers]]\nname = \"corp-idp\"\niss = \"{issuer}\"\ndiscovery = true\nalgorithms = [\"RS256\", \"ES256\"]\ntyp = \"at+jwt\"\nrequired_scopes = [\"mcp:tools\"]\nmax_lifetime = \"1h\"\n\
             \n[oauth]\nresource = \"{resource}\"\nauthorization_servers = [\"{issuer}\"]\n\
             \n[token_exchange]\ntoken_endpoint = \"{issuer}/token\"\nclient_id = \"jitgate-exchange\"\nclient_secret_file = {:?}\nissuers = [\"corp-idp\"]\n\
             \n[[servers]]\nmanifest = {:?}\n",
            work.path().join("exchange-secret").display().to_string(),
            work.path().join("workspace-http.toml").display().to_string(),
        ),
        ..Setup::default()
    });
    let gateway = Gateway::start_at(&dep, &format!("127.0.0.1:{gw_port}"));
    gateway.wait_server("workspace", "ready").await;
    let stats = || async { provider.stats().await };

    // The agent's call reaches the server as the agent, on jitgate's behalf.
    let triage_token = provider.token(&resource, "mcp:tools").await;
    let triage = gateway.connect_modern(&triage_token).await;
    for (i, note) in ["first.md", "second.md"].iter().enumerate() {
        let r = call(&triage, "workspace__write_note", json!({"name": note, "content": "from triage"})).await.unwrap();
        assert_ne!(r.is_error, Some(true), "{}\n{}", text_of(&r), gateway.log());
        assert_eq!(std::fs::read_to_string(ds_state.join("notes").join(note)).unwrap(), "from triage");
        // Exchanged once, then reused for the same agent.
        assert_eq!(stats().await["exchanges"], 1, "call {i}");
    }
    let seen = callers_seen(&ds_state);
    assert_eq!(seen.len(), 2, "{seen:?}");
    for c in &seen {
        assert_eq!(c["ok"], true, "{c}");
        assert_eq!(c["sub"], "triage-client", "{c}");
        assert_eq!(c["act"]["sub"], "jitgate-exchange", "{c}");
        assert_eq!(c["aud"], audience.as_str(), "{c}");
    }

    // Another agent never rides on the first one's credential.
    let post = gateway.connect_modern(&provider.token_post_client(&resource).await).await;
    let r = call(&post, "workspace__write_note", json!({"name": "third.md", "content": "from post"})).await.unwrap();
    assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
    assert_eq!(stats().await["exchanges"], 2);
    let last = callers_seen(&ds_state).pop().unwrap();
    assert_eq!((last["sub"].as_str(), last["ok"].as_bool()), (Some("triage-client-post"), Some(true)), "{last}");

    // An agent of another issuer (jitgate's development issuer) gets nothing
    // through, and its credential, a bearer token for this gateway, is not
    // even shown to the authorization server: the call is refused before
    // anything is sent, and nothing is written.
    let local = gateway.connect_modern(&dep.mint("local-svc")).await;
    let r = call(&local, "workspace__write_note", json!({"name": "fourth.md", "content": "from local"})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("downstream_credential"), "{}", text_of(&r));
    assert!(text_of(&r).contains("not in [token_exchange] issuers"), "{}", text_of(&r));
    assert!(!ds_state.join("notes/fourth.md").exists());
    let s = stats().await;
    assert_eq!((s["exchanges"].as_u64(), s["exchange_refusals"].as_u64()), (Some(2), Some(0)), "{s}");
    // Its credential never reached the server, and neither did the others'
    // own tokens: every token the server checked was an exchanged one.
    let seen = callers_seen(&ds_state);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|c| c["aud"] == audience.as_str() && c["ok"] == true), "{seen:?}");
    assert!(!gateway.log().contains(&triage_token), "the agent's token is never logged");

    // The legitimate agent still works after the refusal, on the credential
    // already exchanged for it.
    let r = call(&triage, "workspace__read_note", json!({"name": "first.md"})).await.unwrap();
    assert!(text_of(&r).contains("from triage"), "{}", text_of(&r));
    assert_eq!(stats().await["exchanges"], 2);

    // Revoking the agent forgets what was exchanged for it: its next task
    // starts with a fresh exchange, not the old credential.
    let (code, out, err) = jitgate(&["revoke", "--agent", "triage-svc", "--reason", "test", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    gateway.wait_log("scope=\"agent\"").await;
    let r = call(&triage, "workspace__write_note", json!({"name": "fifth.md", "content": "after revocation"})).await.unwrap();
    assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
    assert_eq!(stats().await["exchanges"], 3);
}
