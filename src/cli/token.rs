//! `jitgate token inspect`: decode a capability token, verify its signature
//! with the gateway's keys and show its state in the store. Never prints the
//! token itself.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use super::CliError;
use crate::clock::rfc3339;
use crate::config::Config;
use crate::token::{Keyring, UnverifiedToken};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Decode, verify and look up a capability token; or, given a token id
    /// (the `jti` that the audit trail, `trace` and `revoke --token` use),
    /// show what the store has of it.
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The token, its id, or `-` to read either from stdin. An id may begin
    /// with `-` (random base64url): it is taken as the value.
    #[arg(allow_hyphen_values = true)]
    pub token: String,
    /// The gateway config file.
    #[arg(long, env = "JITGATE_CONFIG")]
    pub config: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: TokenCommand) -> Result<(), CliError> {
    let TokenCommand::Inspect(a) = cmd;
    let token = if a.token == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| CliError::Other(e.to_string()))?;
        s.trim().to_owned()
    } else {
        a.token.trim().to_owned()
    };
    let config = Config::load(&a.config)?;
    // A compact JWS has dots; a token id never does.
    if !token.contains('.') {
        return inspect_id(&config, &token, a.json);
    }
    let parsed = UnverifiedToken::parse(&token).map_err(|e| CliError::Usage(format!("[{}] {e}", e.code())))?;
    let signature = match Keyring::load(&config.keys_dir()) {
        Ok(k) => match parsed.verify_signature(&k) {
            Ok(()) => "valid".to_owned(),
            Err(e) => format!("INVALID: {e}"),
        },
        Err(e) => format!("unknown (cannot load keys: {e})"),
    };
    let record = super::open_store(&config).ok().and_then(|s| s.token(&parsed.claims().jti).ok().flatten());
    let c = parsed.claims();
    let state = record.as_ref().map(|r| r.state.as_str()).unwrap_or("not in store");
    let report = json!({
        "kid": parsed.kid(),
        "signature": signature,
        "claims": c,
        "issued_at": rfc3339(c.iat),
        "expires_at": rfc3339(c.exp),
        "state": state,
        "state_changed_at": record.as_ref().and_then(|r| r.changed_at).map(rfc3339),
        "reason": record.as_ref().and_then(|r| r.reason.clone()),
        "fingerprint": crate::jws::fingerprint(&token),
    });
    if a.json {
        outln!("{report}");
    } else {
        outln!("token {} (kid {}, fingerprint {}), signature {signature}", c.jti, parsed.kid().unwrap_or("?"), report["fingerprint"].as_str().unwrap_or(""));
        outln!("  agent   {}\n  tool    {} on server {}\n  task    {} phase {}\n  session {}", c.sub, c.tool, c.aud, c.task, c.phase, c.sid);
        outln!("  args    {}", serde_json::to_string(&c.args).unwrap_or_default());
        outln!("  valid   {} .. {}", rfc3339(c.nbf), rfc3339(c.exp));
        outln!("  state   {state}{}", record.and_then(|r| r.reason).map(|r| format!(" ({r})")).unwrap_or_default());
    }
    Ok(())
}

/// What the store has of a token, by its id.
fn inspect_id(config: &Config, jti: &str, as_json: bool) -> Result<(), CliError> {
    if jti.is_empty() || jti.len() > 128 || !jti.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(CliError::Usage("give a capability token (header.claims.signature) or a token id (the jti shown by jit_request, trace and the audit trail)".into()));
    }
    let store = super::open_store(config)?;
    let record = store
        .token(jti)
        .map_err(|e| CliError::Other(e.to_string()))?
        .ok_or_else(|| CliError::Usage(format!("no token `{jti}` in the store ({})", config.store_path().display())))?;
    let report = json!({
        "jti": record.jti,
        "task": record.task,
        "agent": record.agent,
        "session": record.sid,
        "tool": record.tool,
        "phase": record.phase,
        "state": record.state.as_str(),
        "issued_at": rfc3339(record.issued_at),
        "expires_at": rfc3339(record.expires_at),
        "state_changed_at": record.changed_at.map(rfc3339),
        "reason": record.reason,
    });
    if as_json {
        outln!("{report}");
    } else {
        outln!("token {} (from the store; give the token itself to check its signature and arguments)", record.jti);
        outln!("  agent   {}\n  tool    {}\n  task    {} phase {}\n  session {}", record.agent, record.tool, record.task, record.phase, record.sid);
        outln!("  valid   {} .. {}", rfc3339(record.issued_at), rfc3339(record.expires_at));
        outln!("  state   {}{}", record.state.as_str(), record.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default());
    }
    Ok(())
}
