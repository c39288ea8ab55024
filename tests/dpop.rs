//! DPoP (RFC 9449) through the real binary: a client that proves a key on
//! every request gets capability tokens bound to that key; the official
//! TypeScript SDK client's `withDpop` drives the legitimate flow, raw
//! requests the attacks (a replayed proof, a proof for another request, the
//! DPoP scheme without a proof, a key-bound identity without its key).

mod common;

use std::process::Command;

use base64::Engine as _;
use common::*;
use ed25519_dalek::Signer as _;
use serde_json::{Value, json};
use sha2::Digest as _;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A DPoP proof by an Ed25519 key (the client's side), and the key's thumbprint.
fn proof(seed: u8, method: &str, htu: &str, access_token: &str, jti: &str) -> (String, String) {
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let x = b64(key.verifying_key().as_bytes());
    let header = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": x}});
    let ath = b64(&sha2::Sha256::digest(access_token.as_bytes()));
    let claims = json!({"jti": jti, "htm": method, "htu": htu, "iat": now(), "ath": ath});
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let sig = b64(&key.sign(input.as_bytes()).to_bytes());
    let thumbprint = b64(&sha2::Sha256::digest(format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#).as_bytes()));
    (format!("{input}.{sig}"), thumbprint)
}

const DISCOVER: &str = r#"{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;

/// POST a 2026-07-28 request with the given Authorization and DPoP headers.
async fn post(url: &str, authorization: &str, dpop: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "server/discover")
        .header("authorization", authorization)
        .body(DISCOVER);
    if let Some(p) = dpop {
        req = req.header("dpop", p);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap_or_default())
}

#[tokio::test]
async fn tokens_minted_for_a_dpop_client_work_only_with_its_key() {
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let out = Command::new("node").arg(repo_root().join("tests/support/node/dpop_flow.mjs")).args([&gw.url, &dep.mint("triage")]).output().unwrap();
    assert!(out.status.success(), "TypeScript client failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["protocol_version"], "2026-07-28", "{r}");
    assert_eq!(r["own_key"]["is_error"], false, "{r}");
    assert!(r["own_key"]["text"].as_str().unwrap().contains("Ship the billing export"));
    assert_eq!(r["no_proof"]["code"], "token_wrong_key", "{r}");
    assert_eq!(r["other_key"]["code"], "token_wrong_key", "{r}");
    assert_eq!(r["unbound"]["is_error"], false, "a request without a proof gets an unbound token: {r}");
    let inspect = |t: &str| -> Value {
        let (code, out, err) = jitgate(&["token", "inspect", t, "--json", "--config", dep.config.to_str().unwrap()]);
        assert_eq!(code, Some(0), "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let bound = inspect(r["token"].as_str().unwrap());
    assert!(bound.to_string().contains("\"jkt\""), "the token carries cnf.jkt: {bound}");
    assert!(!inspect(r["unbound_token"].as_str().unwrap()).to_string().contains("\"jkt\""));
}

#[tokio::test]
async fn replayed_misdirected_and_missing_proofs_are_refused() {
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let token = dep.mint("triage");
    let htu = gw.url.clone();
    let dpop_auth = format!("DPoP {token}");

    // The legitimate request: a fresh proof for this method, URI and token.
    let (good, _) = proof(1, "POST", &htu, &token, "proof-1");
    let (status, body) = post(&gw.url, &dpop_auth, Some(&good)).await;
    assert_eq!(status, 200, "{body}");
    // The same proof again (captured off the wire): refused.
    let (status, body) = post(&gw.url, &dpop_auth, Some(&good)).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("dpop_replayed"), "{body}");
    // A proof made for another endpoint, method or token.
    let other_url = htu.replace("/mcp", "/approvals");
    for (p, why) in [
        (proof(1, "POST", &other_url, &token, "proof-2").0, "another URI"),
        (proof(1, "GET", &htu, &token, "proof-3").0, "another method"),
        (proof(1, "POST", &htu, "some-other-token", "proof-4").0, "another access token"),
    ] {
        let (status, body) = post(&gw.url, &dpop_auth, Some(&p)).await;
        assert_eq!(status, 401, "{why}: {body}");
        assert!(body.contains("dpop_invalid"), "{why}: {body}");
    }
    // The DPoP scheme without a proof.
    let (status, body) = post(&gw.url, &dpop_auth, None).await;
    assert_eq!((status, body.contains("dpop_invalid")), (401, true), "{body}");

    // An identity token bound to a key (cnf.jkt) needs a proof of exactly that key.
    let (_, jkt) = proof(7, "POST", &htu, "x", "x");
    let key = dep.dev_key();
    let claims = json!({
        "iss": "jitgate-dev-issuer", "sub": "spiffe://jitgate.local/agent/triage", "aud": GATEWAY_ID,
        "iat": now(), "nbf": now(), "exp": now() + 600, "jti": "bound-1", "cnf": {"jkt": jkt},
    });
    let bound = jitgate::jws::sign(&claims, &key.kid, "JWT", &key.signing).unwrap();
    let (status, body) = post(&gw.url, &format!("Bearer {bound}"), None).await;
    assert_eq!((status, body.contains("dpop_key_mismatch")), (401, true), "no proof: {body}");
    let (wrong, _) = proof(8, "POST", &htu, &bound, "proof-5");
    let (status, body) = post(&gw.url, &format!("DPoP {bound}"), Some(&wrong)).await;
    assert_eq!((status, body.contains("dpop_key_mismatch")), (401, true), "another key: {body}");
    let (right, _) = proof(7, "POST", &htu, &bound, "proof-6");
    let (status, body) = post(&gw.url, &format!("DPoP {bound}"), Some(&right)).await;
    assert_eq!(status, 200, "its own key: {body}");
}

/// Stdio cannot prove possession of a key: a key-bound identity is refused
/// there rather than honoured without its key; an unbound one works.
#[tokio::test]
async fn a_key_bound_identity_is_refused_over_stdio() {
    let dep = Deployment::new(&Setup::default());
    let key = dep.dev_key();
    let claims = json!({
        "iss": "jitgate-dev-issuer", "sub": "spiffe://jitgate.local/agent/triage", "aud": GATEWAY_ID,
        "iat": now(), "nbf": now(), "exp": now() + 600, "jti": "bound-stdio", "cnf": {"jkt": "some-key-thumbprint"},
    });
    let id_file = dep.path("bound.jwt");
    std::fs::write(&id_file, jitgate::jws::sign(&claims, &key.kid, "JWT", &key.signing).unwrap()).unwrap();
    let out = Command::new(jitgate_bin())
        .args(["serve", "--config", dep.config.to_str().unwrap(), "--stdio", "--identity-file", id_file.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bound to a key"), "{}", String::from_utf8_lossy(&out.stderr));
    let unbound = dep.path("unbound.jwt");
    std::fs::write(&unbound, dep.mint("triage")).unwrap();
    let client = connect_stdio(&dep, &unbound).await;
    assert!(tool_names(&client).await.contains(&"workspace__read_note".to_owned()));
}
