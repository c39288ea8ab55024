//! The tamper-evident audit trail.
//!
//! Every event (identity refusals, tasks, intents and their decisions,
//! approvals, break-glass, tokens consumed, forwarded calls, revocations,
//! drift) is one record. Records are append-only and hash-chained: record `n`
//! carries `seq = n` and the hash of record `n - 1`, and its own hash covers
//! both and its content. At an interval and on shutdown the gateway writes a
//! checkpoint: the last seq and hash, signed with its Ed25519 key.
//! [`verify`] finds edits, deletions, reordering, and truncation after a
//! checkpoint.
//!
//! Writing is fail-closed where it matters: a call whose record cannot be
//! written is refused before anything is forwarded.
//!
//! Records never hold a full token (only its `jti`) nor any injected secret.

pub mod verify;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// JOSE `typ` of checkpoints.
pub const CHECKPOINT_TYP: &str = "jitgate-audit-checkpoint+jwt";

/// The hash "before" the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: &'static str,
    pub task: Option<String>,
    pub agent: Option<String>,
    pub data: Value,
}

impl Event {
    pub fn new(kind: &'static str, task: Option<&str>, agent: Option<&str>, data: Value) -> Self {
        Self { kind, task: task.map(str::to_owned), agent: agent.map(str::to_owned), data }
    }
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: i64,
    pub at: i64,
    pub kind: String,
    pub task: Option<String>,
    pub agent: Option<String>,
    pub data: Value,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of a record: SHA-256 over the canonical JSON of its fields and
/// the previous hash. serde_json maps are ordered, so this text is canonical.
pub fn record_hash(seq: i64, at: i64, kind: &str, task: Option<&str>, agent: Option<&str>, data: &Value, prev_hash: &str) -> String {
    let canonical = serde_json::json!([seq, at, kind, task, agent, data, prev_hash]).to_string();
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// The signed content of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointClaims {
    pub iss: String,
    pub seq: i64,
    pub hash: String,
    pub at: i64,
}

/// A stored checkpoint: the compact JWS and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub at: i64,
    pub jws: String,
}

/// SHA-256 of a value's JSON, for argument digests in records.
pub fn digest(v: &Value) -> String {
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

/// Replace the values of the named keys (at any depth) with "[redacted]".
pub fn redact(v: &Value, keys: &[String]) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter().map(|(k, v)| (k.clone(), if keys.iter().any(|r| r == k) { Value::from("[redacted]") } else { redact(v, keys) })).collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|i| redact(i, keys)).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hash_covers_every_field() {
        let base = record_hash(1, 10, "k", Some("t"), Some("a"), &json!({"x": 1}), GENESIS);
        assert_eq!(base, record_hash(1, 10, "k", Some("t"), Some("a"), &json!({"x": 1}), GENESIS));
        for other in [
            record_hash(2, 10, "k", Some("t"), Some("a"), &json!({"x": 1}), GENESIS),
            record_hash(1, 11, "k", Some("t"), Some("a"), &json!({"x": 1}), GENESIS),
            record_hash(1, 10, "j", Some("t"), Some("a"), &json!({"x": 1}), GENESIS),
            record_hash(1, 10, "k", None, Some("a"), &json!({"x": 1}), GENESIS),
            record_hash(1, 10, "k", Some("t"), Some("b"), &json!({"x": 1}), GENESIS),
            record_hash(1, 10, "k", Some("t"), Some("a"), &json!({"x": 2}), GENESIS),
            record_hash(1, 10, "k", Some("t"), Some("a"), &json!({"x": 1}), &base),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn redaction_reaches_nested_keys() {
        let v = redact(&json!({"to": "a@b", "nested": [{"to": "c"}], "body": "x"}), &["to".into()]);
        assert_eq!(v, json!({"to": "[redacted]", "nested": [{"to": "[redacted]"}], "body": "x"}));
    }
}

/// Sign the current head of the chain, unless the last checkpoint already
/// covers it. Returns the new checkpoint, if one was written.
pub fn write_checkpoint(
    store: &dyn crate::store::Store,
    key: &crate::keys::KeyPair,
    iss: &str,
    now: i64,
) -> Result<Option<Checkpoint>, String> {
    let Some((seq, hash)) = store.audit_head().map_err(|e| e.to_string())? else { return Ok(None) };
    if store.checkpoints().map_err(|e| e.to_string())?.last().is_some_and(|c| c.seq == seq) {
        return Ok(None);
    }
    let claims = CheckpointClaims { iss: iss.to_owned(), seq, hash: hash.clone(), at: now };
    let jws = crate::jws::sign(&claims, &key.kid, CHECKPOINT_TYP, &key.signing).map_err(|e| e.to_string())?;
    let c = Checkpoint { seq, hash, at: now, jws };
    store.record_checkpoint(&c).map_err(|e| e.to_string())?;
    Ok(Some(c))
}
