use super::*;
use crate::clock::ManualClock;
use std::time::Duration;

const NOW: i64 = 1_800_000_000;
const SUB: &str = "spiffe://test.local/agent/triage";

struct Fixture {
    _dir: tempfile::TempDir,
    key: KeyPair,
    verifier: IdentityVerifier,
    clock: ManualClock,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("triage.toml"),
        format!("name = \"triage\"\nid = \"{SUB}\"\nallowed_tools = [\"ws__*\"]\n"),
    )
    .unwrap();
    let agents = AgentDirectory::load(dir.path()).unwrap();
    let key = KeyPair::from_seed(&[3; 32]);
    let cfg = IdentityConfig {
        clock_skew: Duration::from_secs(5),
        issuers: vec![IssuerConfig {
            trust_domain: Some("spiffe://test.local".into()),
            max_lifetime: Duration::from_secs(3600),
            ..IssuerConfig::new("corp", "https://issuer.test", IssuerKeys::Inline(vec![key.public().to_b64url()]))
        }],
    };
    let clock = ManualClock::at(NOW);
    let verifier = IdentityVerifier::new("jitgate://gw", &cfg, agents, Arc::new(clock.clone())).unwrap();
    Fixture { _dir: dir, key, verifier, clock }
}

fn token(f: &Fixture, iss: &str, sub: &str, aud: &str, ttl: i64) -> String {
    mint(&f.key, iss, sub, aud, NOW, ttl).unwrap()
}

/// An issuer whose keys are the RSA and EC test keys of a JWKS file.
fn jwks_issuer(customize: impl FnOnce(&mut IssuerConfig)) -> (tempfile::TempDir, IdentityVerifier) {
    let dir = tempfile::tempdir().unwrap();
    let agents = dir.path().join("agents");
    std::fs::create_dir_all(&agents).unwrap();
    std::fs::write(agents.join("svc.toml"), "name = \"svc\"\nid = \"spiffe://test.local/agent/svc\"\nallowed_tools = []\n").unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, include_str!("../../tests/fixtures/keys/jwks.json")).unwrap();
    let mut issuer = IssuerConfig { trust_domain: Some("spiffe://test.local".into()), ..IssuerConfig::new("spire", "https://spire.test", IssuerKeys::JwksFile(jwks)) };
    customize(&mut issuer);
    let cfg = IdentityConfig { clock_skew: Duration::from_secs(5), issuers: vec![issuer] };
    let v = IdentityVerifier::new("jitgate://gw", &cfg, AgentDirectory::load(&agents).unwrap(), Arc::new(ManualClock::at(NOW))).unwrap();
    (dir, v)
}

fn signed(alg: jsonwebtoken::Algorithm, kid: &str, typ: &str, claims: serde_json::Value) -> String {
    let pem = match alg {
        jsonwebtoken::Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(include_bytes!("../../tests/fixtures/keys/ec-p256.pem")).unwrap(),
        _ => jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("../../tests/fixtures/keys/rsa-2048.pem")).unwrap(),
    };
    let mut h = jsonwebtoken::Header::new(alg);
    h.kid = Some(kid.into());
    h.typ = Some(typ.into());
    jsonwebtoken::encode(&h, &claims, &pem).unwrap()
}

fn svid(sub: &str) -> serde_json::Value {
    serde_json::json!({"iss": "https://spire.test", "sub": sub, "aud": "jitgate://gw", "exp": NOW + 300, "iat": NOW})
}

#[test]
fn rs256_and_es256_credentials_verify_with_keys_pinned_to_their_algorithms() {
    let (_d, v) = jwks_issuer(|_| {});
    let sub = "spiffe://test.local/agent/svc";
    assert_eq!(v.verify(&signed(jsonwebtoken::Algorithm::RS256, "rsa-1", "JWT", svid(sub))).unwrap().agent.name, "svc");
    assert_eq!(v.verify(&signed(jsonwebtoken::Algorithm::ES256, "ec-1", "JWT", svid(sub))).unwrap().agent.name, "svc");
    // rsa-1's JWK says RS256: a PS256 signature by the same key is refused.
    let e = v.verify(&signed(jsonwebtoken::Algorithm::PS256, "rsa-1", "JWT", svid(sub))).unwrap_err();
    assert_eq!(e.code(), "identity_bad_alg", "{e}");
    assert!(e.to_string().contains("fixed by the key"), "{e}");
    // The issuer's algorithms narrow further.
    let (_d, v) = jwks_issuer(|i| i.algorithms = vec![jsonwebtoken::Algorithm::ES256]);
    assert_eq!(v.verify(&signed(jsonwebtoken::Algorithm::RS256, "rsa-1", "JWT", svid(sub))).unwrap_err().code(), "identity_unknown_key");
    assert!(v.verify(&signed(jsonwebtoken::Algorithm::ES256, "ec-1", "JWT", svid(sub))).is_ok());
}

#[test]
fn an_agent_known_by_its_client_id_takes_only_tokens_issued_to_that_client() {
    let dir = tempfile::tempdir().unwrap();
    let agents = dir.path().join("agents");
    std::fs::create_dir_all(&agents).unwrap();
    std::fs::write(agents.join("svc.toml"), "name = \"svc\"\nid = \"triage-client\"\nallowed_tools = []\nissuers = [\"idp\"]\n").unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, include_str!("../../tests/fixtures/keys/jwks.json")).unwrap();
    let cfg = IdentityConfig { clock_skew: Duration::from_secs(5), issuers: vec![IssuerConfig::new("idp", "https://idp.test", IssuerKeys::JwksFile(jwks.clone()))] };
    let v = IdentityVerifier::new("jitgate://gw", &cfg, AgentDirectory::load(&agents).unwrap(), Arc::new(ManualClock::at(NOW))).unwrap();
    let token = |client: Option<&str>| {
        let mut c = serde_json::json!({"iss": "https://idp.test", "sub": "triage-client", "aud": "jitgate://gw", "exp": NOW + 300, "iat": NOW});
        if let Some(client) = client {
            c["client_id"] = serde_json::json!(client);
        }
        signed(jsonwebtoken::Algorithm::ES256, "ec-1", "at+jwt", c)
    };
    assert_eq!(v.verify(&token(Some("triage-client"))).unwrap().agent.name, "svc");
    // A person called "triage-client" signing in through another client is not the agent.
    assert_eq!(v.verify(&token(Some("someone-elses-app"))).unwrap_err().code(), "identity_not_issued_to_agent");
    assert_eq!(v.verify(&token(None)).unwrap_err().code(), "identity_not_issued_to_agent");
    // An agent bound to an issuer that does not exist stops the start.
    std::fs::write(agents.join("svc.toml"), "name = \"svc\"\nid = \"triage-client\"\nallowed_tools = []\nissuers = [\"idq\"]\n").unwrap();
    let e = IdentityVerifier::new("jitgate://gw", &cfg, AgentDirectory::load(&agents).unwrap(), Arc::new(ManualClock::at(NOW))).err().unwrap();
    assert!(e.to_string().contains("idq"), "{e}");
}

#[test]
fn an_issuer_whose_client_tokens_have_another_subject_names_the_agent_by_its_client() {
    // Keycloak's service accounts: sub is a user id, azp the client.
    let dir = tempfile::tempdir().unwrap();
    let agents = dir.path().join("agents");
    std::fs::create_dir_all(&agents).unwrap();
    std::fs::write(agents.join("svc.toml"), "name = \"svc\"\nid = \"triage-client\"\nallowed_tools = []\nissuers = [\"kc\"]\n").unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, include_str!("../../tests/fixtures/keys/jwks.json")).unwrap();
    let issuer = |claim| IssuerConfig { agent_claim: claim, ..IssuerConfig::new("kc", "https://kc.test", IssuerKeys::JwksFile(jwks.clone())) };
    let verifier = |claim| {
        let cfg = IdentityConfig { clock_skew: Duration::from_secs(5), issuers: vec![issuer(claim)] };
        IdentityVerifier::new("jitgate://gw", &cfg, AgentDirectory::load(&agents).unwrap(), Arc::new(ManualClock::at(NOW))).unwrap()
    };
    let token = |sub: &str, extra: serde_json::Value| {
        let mut c = serde_json::json!({"iss": "https://kc.test", "sub": sub, "aud": "jitgate://gw", "exp": NOW + 300, "iat": NOW});
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        signed(jsonwebtoken::Algorithm::ES256, "ec-1", "at+jwt", c)
    };
    let service_account = token("8f1c-uuid", serde_json::json!({"azp": "triage-client", "client_id": "triage-client"}));
    // By default the subject names the agent: the user id is nobody.
    assert_eq!(verifier(crate::config::AgentClaim::Sub).verify(&service_account).unwrap_err().code(), "identity_unknown_agent");
    let v = verifier(crate::config::AgentClaim::Client);
    assert_eq!(v.verify(&service_account).unwrap().agent.name, "svc");
    assert_eq!(v.verify(&token("8f1c-uuid", serde_json::json!({"azp": "triage-client"}))).unwrap().agent.name, "svc");
    // A person's token names the client they signed in through, not the agent.
    assert_eq!(v.verify(&token("triage-client", serde_json::json!({"azp": "people-portal"}))).unwrap_err().code(), "identity_unknown_agent");
    // azp and client_id that disagree, or none at all, name nobody.
    assert_eq!(v.verify(&token("x", serde_json::json!({"azp": "triage-client", "client_id": "other"}))).unwrap_err().code(), "identity_not_issued_to_agent");
    assert_eq!(v.verify(&token("triage-client", serde_json::json!({}))).unwrap_err().code(), "identity_not_issued_to_agent");
    assert_eq!(v.verify(&token("x", serde_json::json!({"azp": 5}))).unwrap_err().code(), "identity_unknown_agent");
}

#[test]
fn a_token_with_critical_header_extensions_is_refused() {
    let (_d, v) = jwks_issuer(|_| {});
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some("ec-1".into());
    h.crit = Some(vec!["exp".into()]);
    let key = jsonwebtoken::EncodingKey::from_ec_pem(include_bytes!("../../tests/fixtures/keys/ec-p256.pem")).unwrap();
    let t = jsonwebtoken::encode(&h, &svid("spiffe://test.local/agent/svc"), &key).unwrap();
    assert_eq!(v.verify(&t).unwrap_err().code(), "identity_malformed");
}

#[test]
fn spiffe_typ_and_scope_rules_of_an_issuer() {
    let (_d, v) = jwks_issuer(|i| {
        i.spiffe = true;
        i.typ = Some("at+jwt".into());
        i.required_scopes = vec!["mcp:tools".into()];
    });
    let good = |sub: &str, scope: &str| {
        let mut c = svid(sub);
        c["scope"] = serde_json::json!(scope);
        signed(jsonwebtoken::Algorithm::ES256, "ec-1", "at+jwt", c)
    };
    let sub = "spiffe://test.local/agent/svc";
    assert!(v.verify(&good(sub, "openid mcp:tools")).is_ok());
    assert_eq!(v.verify(&good(sub, "openid")).unwrap_err().code(), "insufficient_scope");
    assert_eq!(v.verify(&signed(jsonwebtoken::Algorithm::ES256, "ec-1", "JWT", svid(sub))).unwrap_err().code(), "identity_bad_type");
    for bad in ["spiffe://test.local/agent/../svc", "spiffe://test.local/agent//svc", "spiffe://test.local/agent/svc?x=1", "spiffe://TEST.local/agent/svc"] {
        assert_eq!(v.verify(&good(bad, "mcp:tools")).unwrap_err().code(), "identity_not_spiffe_id", "{bad}");
    }
    // `scp` as a list counts too.
    let mut c = svid(sub);
    c["scp"] = serde_json::json!(["mcp:tools"]);
    assert!(v.verify(&signed(jsonwebtoken::Algorithm::ES256, "ec-1", "at+jwt", c)).is_ok());
}

#[test]
fn valid_token_maps_to_agent() {
    let f = fixture();
    let v = f.verifier.verify(&token(&f, "https://issuer.test", SUB, "jitgate://gw", 600)).unwrap();
    assert_eq!(v.agent.name, "triage");
    assert_eq!(v.issuer, "corp");
}

#[test]
fn each_failure_has_its_own_code() {
    let f = fixture();
    let ok = |t: &str| f.verifier.verify(t).map(|_| ()).map_err(|e| e.code());
    assert_eq!(ok(&token(&f, "https://evil.test", SUB, "jitgate://gw", 600)), Err("identity_unknown_issuer"));
    assert_eq!(ok(&token(&f, "https://issuer.test", SUB, "jitgate://other", 600)), Err("identity_wrong_audience"));
    assert_eq!(ok(&token(&f, "https://issuer.test", "spiffe://evil.local/agent/triage", "jitgate://gw", 600)), Err("identity_outside_trust_domain"));
    assert_eq!(ok(&token(&f, "https://issuer.test", "spiffe://test.local/agent/ghost", "jitgate://gw", 600)), Err("identity_unknown_agent"));
    assert_eq!(ok("not-a-token"), Err("identity_malformed"));

    // Signed by a key the issuer does not have, with the issuer's kid: bad signature.
    let rogue = KeyPair::from_seed(&[4; 32]);
    let mut forged_key = rogue.clone();
    forged_key.kid = f.key.kid.clone();
    let forged = mint(&forged_key, "https://issuer.test", SUB, "jitgate://gw", NOW, 600).unwrap();
    assert_eq!(ok(&forged), Err("identity_bad_signature"));
    let unknown_kid = mint(&rogue, "https://issuer.test", SUB, "jitgate://gw", NOW, 600).unwrap();
    assert_eq!(ok(&unknown_kid), Err("identity_unknown_key"));

    // Longer-lived than the issuer allows (1 h here), however the times are set.
    assert_eq!(ok(&token(&f, "https://issuer.test", SUB, "jitgate://gw", i64::MAX / 2)), Err("identity_lifetime_too_long"));
    assert_eq!(ok(&token(&f, "https://issuer.test", SUB, "jitgate://gw", 7200)), Err("identity_lifetime_too_long"));
    assert!(ok(&token(&f, "https://issuer.test", SUB, "jitgate://gw", 3600)).is_ok());
    // Another kind of token signed by the same key is not an identity.
    let claims = IdentityClaims {
        iss: "https://issuer.test".into(),
        sub: SUB.into(),
        aud: Audience::One("jitgate://gw".into()),
        exp: NOW + 60,
        nbf: None,
        iat: Some(NOW),
        jti: None,
        extra: Default::default(),
    };
    let cap = jws::sign(&claims, &f.key.kid, "jitgate-cap+jwt", &f.key.signing).unwrap();
    assert_eq!(ok(&cap), Err("identity_bad_type"));
}

#[test]
fn an_issuer_without_a_trust_domain_speaks_only_for_agents_that_name_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), "name = \"a\"\nid = \"spiffe://x/agent/a\"\nallowed_tools = []\n").unwrap();
    std::fs::write(dir.path().join("b.toml"), "name = \"b\"\nid = \"spiffe://x/agent/b\"\nallowed_tools = []\nissuers = [\"loose\"]\n").unwrap();
    let key = KeyPair::from_seed(&[9; 32]);
    let cfg = IdentityConfig {
        clock_skew: Duration::from_secs(5),
        issuers: vec![IssuerConfig { max_lifetime: Duration::from_secs(3600), ..IssuerConfig::new("loose", "https://loose.test", IssuerKeys::Inline(vec![key.public().to_b64url()])) }],
    };
    let v = IdentityVerifier::new("jitgate://gw", &cfg, AgentDirectory::load(dir.path()).unwrap(), Arc::new(ManualClock::at(NOW))).unwrap();
    let t = |sub: &str| mint(&key, "https://loose.test", sub, "jitgate://gw", NOW, 60).unwrap();
    assert_eq!(v.verify(&t("spiffe://x/agent/a")).unwrap_err().code(), "identity_issuer_not_allowed");
    assert_eq!(v.verify(&t("spiffe://x/agent/b")).unwrap().agent.name, "b");
}

#[test]
fn expiry_uses_the_injected_clock_and_skew() {
    let f = fixture();
    let t = token(&f, "https://issuer.test", SUB, "jitgate://gw", 60);
    assert!(f.verifier.verify(&t).is_ok());
    f.clock.advance(64); // within 5 s skew
    assert!(f.verifier.verify(&t).is_ok());
    f.clock.advance(2);
    let e = f.verifier.verify(&t).unwrap_err();
    assert_eq!(e.code(), "identity_expired");
    assert!(e.to_string().contains("expired 6 s ago"), "{e}");
}

#[test]
fn unregistered_claims_are_kept_for_policy() {
    let f = fixture();
    let claims = IdentityClaims {
        iss: "https://issuer.test".into(),
        sub: SUB.into(),
        aud: Audience::One("jitgate://gw".into()),
        exp: NOW + 60,
        nbf: None,
        iat: None,
        jti: None,
        extra: [("attested".to_owned(), serde_json::json!(true)), ("node".to_owned(), serde_json::json!("k8s-7"))].into_iter().collect(),
    };
    let token = jws::sign(&claims, &f.key.kid, IDENTITY_TYP, &f.key.signing).unwrap();
    let v = f.verifier.verify(&token).unwrap();
    assert_eq!(v.claims.get("attested").map(String::as_str), Some("true"));
    assert_eq!(v.claims.get("node").map(String::as_str), Some("k8s-7"));
    assert!(!v.claims.contains_key("iss") && !v.claims.contains_key("exp"));
}
