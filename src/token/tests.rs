//! Attacks on capability tokens, each refused, next to the legitimate use.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::keys::KeyPair;
use crate::store::{Phase, Scope, SqliteStore, Task, TaskState, TokenRecord, TokenState};

const NOW: i64 = 1_800_000_000;
const GW: &str = "jitgate://test";
const AGENT: &str = "spiffe://jitgate.local/agent/triage";

struct World {
    keyring: Keyring,
    store: Arc<SqliteStore>,
    clock: ManualClock,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    store
        .create_task(&Task {
            id: "t1".into(),
            agent: AGENT.into(),
            sid: "sess-a".into(),
            objective: "reply to alice".into(),
            phases: vec![
                Phase { name: "read".into(), tools: vec!["ws__read_note".into()] },
                Phase { name: "send".into(), tools: vec!["ws__send_message".into()] },
            ],
            current_phase: 0,
            state: TaskState::Active,
            created_at: NOW,
            expires_at: NOW + 3600,
            end_reason: None,
        })
        .unwrap();
    World { keyring: Keyring::single(KeyPair::from_seed(&[5; 32])), store, clock: ManualClock::at(NOW), _dir: dir, path }
}

fn claims(w: &World, tool: &str, args: serde_json::Value) -> CapabilityClaims {
    let now = w.clock.now_unix();
    CapabilityClaims {
        iss: GW.into(),
        sub: AGENT.into(),
        aud: "ws".into(),
        jti: new_jti().unwrap(),
        iat: now,
        nbf: now,
        exp: now + 60,
        sid: "sess-a".into(),
        task: "t1".into(),
        phase: "read".into(),
        tool: tool.into(),
        args: constraints::exact(args.as_object().unwrap()),
        purpose: purpose_digest("read the plan"),
        parent: None,
        uses: 1,
        cnf: None,
    }
}

/// Mint and record, as jit_request does.
fn issue(w: &World, c: &CapabilityClaims, phase: usize) -> String {
    w.store
        .record_token(&TokenRecord {
            jti: c.jti.clone(),
            task: c.task.clone(),
            agent: c.sub.clone(),
            sid: c.sid.clone(),
            tool: c.tool.clone(),
            phase,
            state: TokenState::Issued,
            issued_at: c.iat,
            expires_at: c.exp,
            changed_at: None,
            reason: None,
        })
        .unwrap();
    mint(&w.keyring, c).unwrap()
}

fn call<'a>(tool: &'a str, sid: &'a str, agent: &'a str) -> CallContext<'a> {
    CallContext { gateway_id: GW, sid, dpop_jkt: None, agent_id: agent, tool, server: "ws" }
}

/// The whole verification path the gateway runs.
fn use_token(w: &World, token: &str, ctx: &CallContext<'_>, args: serde_json::Value) -> Result<Capability, TokenError> {
    let now = w.clock.now_unix();
    let cap = UnverifiedToken::parse(token)?.verify(&w.keyring, ctx, now)?.consume(w.store.as_ref(), now)?;
    cap.check_arguments(args.as_object().unwrap())?;
    Ok(cap)
}

fn code(r: Result<Capability, TokenError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

const READ: &str = "ws__read_note";

#[test]
fn legitimate_use_then_replay_is_refused() {
    let w = world();
    let t = issue(&w, &claims(&w, READ, json!({"name": "q3.md"})), 0);
    assert_eq!(code(use_token(&w, &t, &call(READ, "sess-a", AGENT), json!({"name": "q3.md"}))), "ok");
    assert_eq!(code(use_token(&w, &t, &call(READ, "sess-a", AGENT), json!({"name": "q3.md"}))), "token_replayed");
}

#[test]
fn token_bound_to_tool_session_agent_and_arguments() {
    let w = world();
    let args = json!({"name": "q3.md"});
    let c = |tool: &str, sid: &str, agent: &str, a: serde_json::Value| {
        let t = issue(&w, &claims(&w, READ, json!({"name": "q3.md"})), 0);
        code(use_token(&w, &t, &call(tool, sid, agent), a))
    };
    assert_eq!(c("ws__send_message", "sess-a", AGENT, args.clone()), "token_wrong_tool");
    assert_eq!(c(READ, "sess-b", AGENT, args.clone()), "token_wrong_session");
    assert_eq!(c(READ, "sess-a", "spiffe://jitgate.local/agent/janitor", args.clone()), "token_wrong_agent");
    assert_eq!(c(READ, "sess-a", AGENT, json!({"name": "customer-acme.md"})), "arguments_not_authorized");
    assert_eq!(c(READ, "sess-a", AGENT, json!({"name": "q3.md", "extra": 1})), "arguments_not_authorized");
    assert_eq!(c(READ, "sess-a", AGENT, args), "ok");
}

#[test]
fn a_key_bound_token_needs_a_proof_of_that_key() {
    let w = world();
    let args = json!({"name": "q3.md"});
    let bound = |w: &World| {
        let mut c = claims(w, READ, args.clone());
        c.cnf = Some(Confirmation { jkt: "key-a".into() });
        issue(w, &c, 0)
    };
    let with_key = |jkt: Option<&'static str>| CallContext { dpop_jkt: jkt, ..call(READ, "sess-a", AGENT) };
    assert_eq!(code(use_token(&w, &bound(&w), &with_key(None), args.clone())), "token_wrong_key");
    assert_eq!(code(use_token(&w, &bound(&w), &with_key(Some("key-b")), args.clone())), "token_wrong_key");
    assert_eq!(code(use_token(&w, &bound(&w), &with_key(Some("key-a")), args.clone())), "ok");
    // A token minted without a key is not bound to one.
    let t = issue(&w, &claims(&w, READ, args.clone()), 0);
    assert_eq!(code(use_token(&w, &t, &with_key(Some("key-b")), args)), "ok");
}

#[test]
fn expired_tokens_are_refused_using_the_injected_clock() {
    let w = world();
    let t = issue(&w, &claims(&w, READ, json!({})), 0);
    w.clock.advance(60 + SKEW_SECS + 1);
    let e = use_token(&w, &t, &call(READ, "sess-a", AGENT), json!({})).unwrap_err();
    assert_eq!(e.code(), "token_expired");
    assert!(e.to_string().contains("call jit_request"), "{e}");
    // A fresh token at the new time works.
    let t = issue(&w, &claims(&w, READ, json!({})), 0);
    assert_eq!(code(use_token(&w, &t, &call(READ, "sess-a", AGENT), json!({}))), "ok");
}

#[test]
fn phase_change_task_end_ttl_and_operator_revocation_kill_tokens() {
    let w = world();
    let ctx = call(READ, "sess-a", AGENT);
    let old = issue(&w, &claims(&w, READ, json!({})), 0);
    assert!(w.store.advance_phase("t1", 0, NOW).unwrap());
    assert_eq!(code(use_token(&w, &old, &ctx, json!({}))), "token_revoked");

    let in_phase_2 = issue(&w, &claims(&w, READ, json!({})), 1);
    let revoked = issue(&w, &claims(&w, READ, json!({})), 1);
    w.store.revoke(&Scope::Token(UnverifiedToken::parse(&revoked).unwrap().claims().jti.clone()), "operator", NOW).unwrap();
    assert_eq!(code(use_token(&w, &revoked, &ctx, json!({}))), "token_revoked");
    assert_eq!(code(use_token(&w, &in_phase_2, &ctx, json!({}))), "ok");

    let after_end = issue(&w, &claims(&w, READ, json!({})), 1);
    w.store.end_task("t1", "done", NOW).unwrap();
    assert_eq!(code(use_token(&w, &after_end, &ctx, json!({}))), "token_revoked");
    let minted_after_end = issue(&w, &claims(&w, READ, json!({})), 1);
    assert_eq!(code(use_token(&w, &minted_after_end, &ctx, json!({}))), "task_inactive");
}

#[test]
fn forged_and_confused_tokens_are_refused() {
    let w = world();
    let c = claims(&w, READ, json!({}));
    let good = issue(&w, &c, 0);
    let ctx = call(READ, "sess-a", AGENT);

    // Signed by another key claiming our kid.
    let mut rogue = KeyPair::from_seed(&[6; 32]);
    rogue.kid = w.keyring.active().kid.clone();
    let forged = mint(&Keyring::single(rogue), &c).unwrap();
    assert_eq!(code(use_token(&w, &forged, &ctx, json!({}))), "token_bad_signature");
    // Unknown kid.
    let stranger = mint(&Keyring::single(KeyPair::from_seed(&[7; 32])), &c).unwrap();
    assert_eq!(code(use_token(&w, &stranger, &ctx, json!({}))), "token_unknown_key");
    // Claims edited after signing (e.g. another tool).
    let mut edited = c.clone();
    edited.tool = "ws__delete_note".into();
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], B64.encode(serde_json::to_vec(&edited).unwrap()), parts[2]);
    assert_eq!(code(use_token(&w, &tampered, &call("ws__delete_note", "sess-a", AGENT), json!({}))), "token_bad_signature");
    // alg:none.
    let none_header = B64.encode(br#"{"alg":"none","typ":"jitgate-cap+jwt"}"#);
    assert_eq!(code(use_token(&w, &format!("{none_header}.{}.", parts[1]), &ctx, json!({}))), "token_bad_alg");
    // HS256 with the public key as the HMAC secret (classic key confusion).
    let hs_header = B64.encode(format!(r#"{{"alg":"HS256","typ":"jitgate-cap+jwt","kid":"{}"}}"#, w.keyring.active().kid));
    let input = format!("{hs_header}.{}", parts[1]);
    let mac = hmac_sha256(w.keyring.active().signing.verifying_key().as_bytes(), input.as_bytes());
    assert_eq!(code(use_token(&w, &format!("{input}.{}", B64.encode(mac)), &ctx, json!({}))), "token_bad_alg");
    // An identity JWT is not a capability.
    let id = crate::identity::mint(w.keyring.active(), GW, AGENT, GW, NOW, 60).unwrap();
    assert_eq!(code(use_token(&w, &id, &ctx, json!({}))), "token_wrong_type");
    // Oversized and malformed.
    assert_eq!(code(use_token(&w, &"a".repeat(MAX_TOKEN_BYTES + 1), &ctx, json!({}))), "token_too_large");
    assert_eq!(code(use_token(&w, "a.b", &ctx, json!({}))), "token_malformed");
    assert_eq!(code(use_token(&w, "%%%.%%%.%%%", &ctx, json!({}))), "token_malformed");
    // The good one still works after all that.
    assert_eq!(code(use_token(&w, &good, &ctx, json!({}))), "ok");
}

/// HMAC-SHA256, only to build the key-confusion attack.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new().chain_update(&ipad).chain_update(msg).finalize();
    Sha256::new().chain_update(&opad).chain_update(inner).finalize().to_vec()
}

#[test]
fn thirty_two_concurrent_uses_of_one_token_succeed_exactly_once() {
    let w = world();
    let token = issue(&w, &claims(&w, READ, json!({})), 0);
    let keyring = Arc::new(w.keyring.clone());
    let handles: Vec<_> = (0..32)
        .map(|_| {
            let (token, keyring, store) = (token.clone(), keyring.clone(), w.store.clone());
            std::thread::spawn(move || {
                UnverifiedToken::parse(&token)
                    .and_then(|u| u.verify(&keyring, &call(READ, "sess-a", AGENT), NOW))
                    .and_then(|v| v.consume(store.as_ref(), NOW))
                    .map_err(|e| e.code())
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|c| *c == "token_replayed"));
}

#[test]
fn consumed_and_revoked_tokens_stay_dead_after_a_restart() {
    let w = world();
    let used = issue(&w, &claims(&w, READ, json!({})), 0);
    let revoked = issue(&w, &claims(&w, READ, json!({})), 0);
    let fresh = issue(&w, &claims(&w, READ, json!({})), 0);
    let ctx = call(READ, "sess-a", AGENT);
    assert_eq!(code(use_token(&w, &used, &ctx, json!({}))), "ok");
    let jti = UnverifiedToken::parse(&revoked).unwrap().claims().jti.clone();
    w.store.revoke(&Scope::Token(jti), "operator", NOW).unwrap();

    // "Restart": a new store on the same file.
    let reopened = World { store: Arc::new(SqliteStore::open(&w.path).unwrap()), keyring: w.keyring.clone(), clock: w.clock.clone(), _dir: tempfile::tempdir().unwrap(), path: w.path.clone() };
    assert_eq!(code(use_token(&reopened, &used, &ctx, json!({}))), "token_replayed");
    assert_eq!(code(use_token(&reopened, &revoked, &ctx, json!({}))), "token_revoked");
    assert_eq!(code(use_token(&reopened, &fresh, &ctx, json!({}))), "ok");
}

proptest! {
    #[test]
    fn claims_survive_mint_and_parse(jti in "[A-Za-z0-9_-]{8,22}", tool in "[a-z]{1,8}__[a-z_]{1,12}", exp in 0i64..4_000_000_000, name in "[ -~]{0,20}", parent in proptest::option::of("[a-z0-9]{4,10}"), jkt in proptest::option::of("[A-Za-z0-9_-]{43}")) {
        let keyring = Keyring::single(KeyPair::from_seed(&[5; 32]));
        let c = CapabilityClaims {
            iss: GW.into(), sub: AGENT.into(), aud: "ws".into(), jti, iat: 1, nbf: 1, exp,
            sid: "s".into(), task: "t".into(), phase: "p".into(), tool,
            args: constraints::exact(json!({"name": name}).as_object().unwrap()),
            purpose: purpose_digest("x"), parent, uses: 1,
            cnf: jkt.map(|jkt| Confirmation { jkt }),
        };
        let t = mint(&keyring, &c).unwrap();
        let parsed = UnverifiedToken::parse(&t).unwrap();
        prop_assert_eq!(parsed.claims(), &c);
        prop_assert!(parsed.verify_signature(&keyring).is_ok());
    }

    #[test]
    fn parsing_arbitrary_input_never_panics(s in ".{0,400}") {
        let _ = UnverifiedToken::parse(&s);
    }
}
