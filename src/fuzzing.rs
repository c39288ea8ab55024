//! Entry points for the fuzz targets in `fuzz/` (run with `cargo afl`, see
//! `scripts/fuzz.sh`) and for the seed-corpus regression test below. Each
//! takes untrusted bytes and runs them through the same parsers and checks
//! the gateway applies to what an agent, a downstream server or a file hands
//! it. Whatever the input, none may panic, hang or allocate without bound.
//!
//! Each returns how far the input got (`true`: accepted by the last stage),
//! so that the seed test can show the seeds reach the deep paths.
#![doc(hidden)]

use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::identity::IdentityVerifier;
use crate::keys::KeyPair;
use crate::source::SourceFile;

/// The fixed time the fuzz harness runs at, so committed seed tokens stay valid.
pub const NOW: i64 = 1_800_000_000;
/// The identity issuer's key seed (fuzzing only; never a real key).
pub const ISSUER_SEED: [u8; 32] = [7; 32];
pub const ISSUER: &str = "fuzz-issuer";
pub const AUDIENCE: &str = "jitgate://fuzz";
pub const AGENT: &str = "spiffe://fuzz.test/agent/fuzz";
/// The URI DPoP proofs are checked against.
pub const DPOP_URI: &str = "127.0.0.1:8080/mcp";

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// A verifier for one issuer with a fixed key and one agent, built once per
/// process from files in one temporary directory (the same for every
/// process, so that AFL++'s many short-lived processes leave one directory).
fn verifier() -> Option<&'static IdentityVerifier> {
    static VERIFIER: OnceLock<Option<IdentityVerifier>> = OnceLock::new();
    VERIFIER
        .get_or_init(|| {
            let dir = std::env::temp_dir().join("jitgate-fuzz-harness");
            let agents = dir.join("agents");
            std::fs::create_dir_all(&agents).ok()?;
            std::fs::write(agents.join("fuzz.toml"), format!("name = \"fuzz\"\nid = \"{AGENT}\"\nallowed_tools = [\"ws__*\"]\n")).ok()?;
            let key = KeyPair::from_seed(&ISSUER_SEED).public().to_b64url();
            let config = format!(
                "[gateway]\nid = \"{AUDIENCE}\"\nstate_dir = \"state\"\nagents_dir = \"agents\"\n\n[[identity.issuers]]\nname = \"fuzz\"\niss = \"{ISSUER}\"\ntrust_domain = \"spiffe://fuzz.test\"\npublic_keys = [\"{key}\"]\n"
            );
            let config = crate::config::Config::from_source(SourceFile { path: dir.join("gateway.toml"), text: config }).ok()?;
            let directory = crate::agent::AgentDirectory::load(&agents).ok()?;
            IdentityVerifier::new(AUDIENCE, &config.identity, directory, Arc::new(crate::clock::ManualClock::at(NOW))).ok()
        })
        .as_ref()
}

/// A compact JWS from an agent: as an identity token (signature, issuer,
/// audience, lifetime, subject) and as a capability token (shape, type,
/// claims, signature).
pub fn jws(data: &[u8]) -> bool {
    let Some(token) = text(data) else { return false };
    if let Ok(t) = crate::token::UnverifiedToken::parse(token) {
        let keyring = crate::token::Keyring::single(KeyPair::from_seed(&[9; 32]));
        let _ = t.verify_signature(&keyring);
    }
    verifier().is_some_and(|v| v.verify(token).is_ok())
}

/// A DPoP proof header, checked for a POST to [`DPOP_URI`].
pub fn dpop(data: &[u8]) -> bool {
    let Some(proof) = text(data) else { return false };
    crate::dpop::verify(proof, "POST", DPOP_URI, "access-token", NOW).is_ok()
}

/// Bytes on the stdio front end (or an HTTP body): framed into lines under
/// the message limit, screened, parsed as JSON-RPC as rmcp does, and for a
/// `tools/call` the token taken out and a meta-tool's arguments parsed.
pub fn jsonrpc(data: &[u8]) -> bool {
    use crate::stdio::{Line, read_bounded};
    let mut reader = tokio::io::BufReader::new(data);
    let mut any = false;
    // read_bounded on an in-memory reader never waits, so a plain executor does.
    while let Ok(line) = futures::executor::block_on(read_bounded(&mut reader, 64 * 1024)) {
        match line {
            Line::Eof => break,
            Line::Oversized(_) => continue,
            Line::Complete(line) => any |= jsonrpc_message(&line),
        }
    }
    any
}

fn jsonrpc_message(line: &[u8]) -> bool {
    if crate::stdio::screen(line).is_err() {
        return false;
    }
    let Ok(message) = serde_json::from_slice::<rmcp::model::ClientJsonRpcMessage>(line) else { return false };
    let rmcp::model::JsonRpcMessage::Request(request) = message else { return true };
    let rmcp::model::ClientRequest::CallToolRequest(call) = request.request else { return true };
    let mut arguments = call.params.arguments.clone().unwrap_or_default();
    let meta = call.params.meta.as_ref().map(|m| m.0.clone()).unwrap_or_default();
    let _ = crate::gateway::authorize::take_token(&meta, &mut arguments);
    let name = call.params.name.to_string();
    if crate::gateway::meta::is_meta(&name) {
        return crate::gateway::meta::parse_arguments(&name, Value::Object(arguments));
    }
    true
}

/// Tool arguments against constraints: `{"constraints": {...}, "arguments": {...}}`.
pub fn constraints(data: &[u8]) -> bool {
    let Ok(Value::Object(mut input)) = serde_json::from_slice::<Value>(data) else { return false };
    let Ok(constraints) = serde_json::from_value::<crate::constraints::ArgConstraints>(input.remove("constraints").unwrap_or(Value::Null)) else {
        return false;
    };
    for (name, c) in &constraints {
        let _ = c.validate(name);
    }
    let Some(Value::Object(arguments)) = input.remove("arguments") else { return false };
    crate::constraints::check_arguments(&constraints, &arguments).is_ok()
}

/// A downstream server's tool result, as taint tracking reads it: its
/// values and passages go into a ledger, and the first words of the result's
/// text must then taint an argument (a name the text wrote is never lost).
/// Passes when the result holds a value that could steer an action.
pub fn tool_result(data: &[u8]) -> bool {
    use crate::taint::{Source, TaintLedger, scan_output};
    let Ok(result) = serde_json::from_slice::<rmcp::model::CallToolResult>(data) else { return false };
    let scan = scan_output(&result, &["from".to_owned()]);
    let source = Source { call: "fuzz".into(), tool: "fuzz".into(), ..Source::default() };
    let entries = scan.destinations.iter().chain(&scan.values).chain(&scan.passages).map(|v| (v.clone(), source.clone())).collect();
    let ledger = TaintLedger::new(entries, false);
    if let Some(first) = scan.passages.first() {
        // Words of one field: no phrase spans two.
        let probe: Vec<&str> = first.split(' ').filter(|w| !w.is_empty()).take_while(|w| *w != "|").take(3).collect();
        if probe.iter().map(|w| w.chars().count()).sum::<usize>() >= 3 {
            let args = crate::token::ArgConstraints::from([("to".to_owned(), crate::token::Constraint::Eq(Value::String(probe.join(" "))))]);
            assert!(ledger.check(&["to".to_owned()], &[], &args).tainted, "words of a passage not found: {probe:?}");
        }
    }
    !scan.values.is_empty() || !scan.destinations.is_empty()
}

/// A tool manifest file.
pub fn manifest(data: &[u8]) -> bool {
    let Some(text) = text(data) else { return false };
    crate::manifest::Manifest::from_source(SourceFile { path: "fuzz/manifest.toml".into(), text: text.to_owned() }).is_ok()
}

/// An agent file.
pub fn agent_file(data: &[u8]) -> bool {
    let Some(text) = text(data) else { return false };
    crate::agent::Agent::from_source(SourceFile { path: "fuzz/agent.toml".into(), text: text.to_owned() }).is_ok()
}

/// A gateway config file.
pub fn config(data: &[u8]) -> bool {
    let Some(text) = text(data) else { return false };
    crate::config::Config::from_source(SourceFile { path: "fuzz/gateway.toml".into(), text: text.to_owned() }).is_ok()
}

/// Every target by the name its seed directory and fuzz binary carry.
pub const TARGETS: &[(&str, fn(&[u8]) -> bool)] = &[
    ("jws", jws),
    ("dpop", dpop),
    ("jsonrpc", jsonrpc),
    ("constraints", constraints),
    ("tool_result", tool_result),
    ("manifest", manifest),
    ("agent_file", agent_file),
    ("config", config),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target);
        let mut out: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
            .collect();
        out.sort();
        out
    }

    /// Every committed seed runs without a panic, and every target has seeds
    /// that pass all its checks (files named `ok-*`) and seeds that do not
    /// (`bad-*`), so the fuzzer starts from both sides of each check.
    #[test]
    fn committed_seeds_reach_both_outcomes() {
        for (target, run) in TARGETS {
            let seeds = seeds(target);
            assert!(seeds.iter().any(|(n, _)| n.starts_with("ok-")) && seeds.iter().any(|(n, _)| n.starts_with("bad-")), "{target}: needs ok- and bad- seeds");
            for (name, data) in seeds {
                assert_eq!(run(&data), name.starts_with("ok-"), "{target}/{name}");
            }
        }
    }

    /// Writes the seeds that must be computed (signed tokens). Run once with
    /// `cargo test --lib fuzzing::tests::write_computed_seeds -- --ignored`.
    #[test]
    #[ignore]
    fn write_computed_seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
        let key = KeyPair::from_seed(&ISSUER_SEED);
        let token = crate::identity::mint(&key, ISSUER, AGENT, AUDIENCE, NOW - 10, 300).unwrap();
        std::fs::write(dir.join("jws/ok-identity"), &token).unwrap();
        let other = crate::identity::mint(&key, ISSUER, "spiffe://elsewhere.test/agent/fuzz", AUDIENCE, NOW - 10, 300).unwrap();
        std::fs::write(dir.join("jws/bad-other-trust-domain"), other).unwrap();
        let expired = crate::identity::mint(&key, ISSUER, AGENT, AUDIENCE, NOW - 1000, 300).unwrap();
        std::fs::write(dir.join("jws/bad-expired"), expired).unwrap();
        let (proof, _) = crate::dpop::tests::ed25519_proof(3, "POST", &format!("http://{DPOP_URI}"), "access-token", NOW - 5, "seed-1");
        std::fs::write(dir.join("dpop/ok-ed25519"), proof).unwrap();
        let (stale, _) = crate::dpop::tests::ed25519_proof(3, "POST", &format!("http://{DPOP_URI}"), "access-token", NOW - 3600, "seed-2");
        std::fs::write(dir.join("dpop/bad-stale"), stale).unwrap();
    }
}
