use super::*;
use jsonwebtoken::{EncodingKey, Header};

/// Test keys, generated once with openssl for these tests only.
pub(crate) const RSA_PRIVATE_PEM: &str = include_str!("../../tests/fixtures/keys/rsa-2048.pem");
pub(crate) const EC_PRIVATE_PEM: &str = include_str!("../../tests/fixtures/keys/ec-p256.pem");
pub(crate) const JWKS: &str = include_str!("../../tests/fixtures/keys/jwks.json");

fn jwks() -> Value {
    serde_json::from_str(JWKS).unwrap()
}

fn sign(alg: Algorithm, kid: &str, key: &EncodingKey) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, &serde_json::json!({"sub": "a", "exp": 4_000_000_000i64}), key).unwrap()
}

#[test]
fn each_key_verifies_only_with_its_pinned_algorithm() {
    let all: Vec<Algorithm> = SUPPORTED.iter().map(|(_, a)| *a).collect();
    let (keys, skipped) = keys_from_jwks(&jwks(), &all, KeyUse::Signature).unwrap();
    assert!(skipped.iter().any(|s| s.contains("enc-key")), "{skipped:?}");
    let set = KeySet::Static(Arc::new(keys));
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap();
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE_PEM.as_bytes()).unwrap();
    // rsa-1 declares alg RS256: RS256 verifies, PS256 with the same key is refused.
    let k = set.find(Some("rsa-1"), 0).unwrap();
    assert_eq!(k.verify(&sign(Algorithm::RS256, "rsa-1", &rsa), Algorithm::RS256).unwrap()["sub"], "a");
    assert!(matches!(k.verify(&sign(Algorithm::PS256, "rsa-1", &rsa), Algorithm::PS256), Err(KeyCheckError::AlgNotAllowed { .. })));
    // ec-1 has no alg: its type allows ES256 only.
    let k = set.find(Some("ec-1"), 0).unwrap();
    assert!(k.verify(&sign(Algorithm::ES256, "ec-1", &ec), Algorithm::ES256).is_ok());
    assert!(matches!(k.verify(&sign(Algorithm::RS256, "ec-1", &rsa), Algorithm::RS256), Err(KeyCheckError::AlgNotAllowed { .. })));
    // A token signed by the RSA key but naming the EC key: bad signature or wrong alg, never accepted.
    assert!(k.verify(&sign(Algorithm::ES256, "ec-1", &EncodingKey::from_ec_pem(include_str!("../../tests/fixtures/keys/ec-p256-other.pem").as_bytes()).unwrap()), Algorithm::ES256).is_err());
    assert!(matches!(set.find(Some("nope"), 0), Err(KeyCheckError::UnknownKey(_))));
}

#[test]
fn hmac_with_the_public_key_as_secret_is_refused() {
    let all: Vec<Algorithm> = SUPPORTED.iter().map(|(_, a)| *a).collect();
    let (keys, _) = keys_from_jwks(&jwks(), &all, KeyUse::Signature).unwrap();
    let k = keys.iter().find(|k| k.kid == "rsa-1").unwrap();
    // The classic confusion: HS256 keyed with the public key's bytes.
    let forged = sign(Algorithm::HS256, "rsa-1", &EncodingKey::from_secret(JWKS.as_bytes()));
    assert!(matches!(k.verify(&forged, Algorithm::HS256), Err(KeyCheckError::AlgNotAllowed { .. })));
}

#[test]
fn the_issuer_s_algorithms_narrow_what_a_key_may_do() {
    let (keys, skipped) = keys_from_jwks(&jwks(), &[Algorithm::ES256], KeyUse::Signature).unwrap();
    assert_eq!(keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(), ["ec-1"]);
    assert!(skipped.iter().any(|s| s.contains("rsa-1")), "{skipped:?}");
    assert!(keys_from_jwks(&serde_json::json!({"keys": []}), &[Algorithm::ES256], KeyUse::Signature).is_err());
    // Symmetric and short keys never load.
    let bad = serde_json::json!({"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}, {"kty": "OKP", "crv": "Ed25519", "kid": "short", "x": "AAAA"}]});
    let e = keys_from_jwks(&bad, &[Algorithm::EdDSA], KeyUse::Signature).unwrap_err();
    assert!(e.contains("symmetric") && e.contains("32 bytes"), "{e}");
}

/// A one-shot-per-connection HTTP server on loopback answering every
/// request with `body` and these headers, while `up` says so.
async fn serve(body: String, headers: &'static str, up: Arc<std::sync::atomic::AtomicBool>) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = [0u8; 2048];
            let _ = conn.read(&mut buf).await;
            let reply = if up.load(std::sync::atomic::Ordering::SeqCst) {
                format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
            } else {
                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned()
            };
            let _ = conn.write_all(reply.as_bytes()).await;
        }
    });
    url
}

#[tokio::test]
async fn a_remote_set_refreshes_on_its_cache_headers_survives_an_outage_then_fails_closed() {
    let clock = crate::clock::ManualClock::at(1_000_000);
    let all: Vec<Algorithm> = SUPPORTED.iter().map(|(_, a)| *a).collect();
    // Never fetched: nothing verifies, and /healthz says so.
    let dead = RemoteKeys::new("idp", RemoteSource::JwksUri("http://127.0.0.1:1/jwks".into()), all.clone(), Duration::from_secs(3600)).unwrap();
    assert!(dead.refresh(&clock).await.is_err());
    assert!(matches!(dead.current(clock.now_unix()), Err(KeyCheckError::KeysUnavailable(_))));
    assert_eq!(dead.health(clock.now_unix())["status"], "unavailable");

    let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let url = serve(JWKS.to_owned(), "cache-control: public, max-age=900\r\n", up.clone()).await;
    let keys = RemoteKeys::new("idp", RemoteSource::JwksUri(url), all, Duration::from_secs(3600)).unwrap();
    assert_eq!(keys.refresh(&clock).await.unwrap(), 2);
    let h = keys.health(clock.now_unix());
    assert_eq!((h["status"].as_str(), h["next_refresh_in_secs"].as_i64()), (Some("ok"), Some(900)), "{h}");
    assert!(keys.current(clock.now_unix()).unwrap().iter().any(|k| k.kid == "rsa-1"));
    // Unknown kids refresh at most once per interval.
    assert!(keys.refresh_for_unknown_kid(&clock).await);
    assert!(!keys.refresh_for_unknown_kid(&clock).await);
    clock.advance(UNKNOWN_KID_REFRESH_SECS);
    assert!(keys.refresh_for_unknown_kid(&clock).await);

    // The endpoint goes down: the last good set keeps working until max_stale...
    up.store(false, std::sync::atomic::Ordering::SeqCst);
    clock.advance(1800);
    assert!(keys.refresh(&clock).await.is_err());
    assert!(keys.current(clock.now_unix()).is_ok());
    let h = keys.health(clock.now_unix());
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(!h.to_string().contains("127.0.0.1"), "no URLs or errors in /healthz: {h}");
    // ... and not a second longer.
    clock.advance(1801);
    assert!(matches!(keys.current(clock.now_unix()), Err(KeyCheckError::KeysUnavailable(why)) if why.contains("max_stale")));
    assert_eq!(keys.health(clock.now_unix())["status"], "stale");
    // Back up: working again.
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    keys.refresh(&clock).await.unwrap();
    assert!(keys.current(clock.now_unix()).is_ok());
}

#[test]
fn a_spiffe_bundle_gives_only_its_jwt_svid_keys() {
    let mut doc = jwks();
    for k in doc["keys"].as_array_mut().unwrap() {
        if k["kid"] == "ec-1" {
            k["use"] = "jwt-svid".into();
        }
    }
    let all: Vec<Algorithm> = SUPPORTED.iter().map(|(_, a)| *a).collect();
    let (keys, _) = keys_from_jwks(&doc, &all, KeyUse::JwtSvid).unwrap();
    assert_eq!(keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(), ["ec-1"]);
}
