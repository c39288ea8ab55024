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
    hex::encode(Sha256::digest(crate::canonical::json(v).as_bytes()))
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
    fn recorded_content_is_redacted_before_it_is_cut_in_every_block() {
        use rmcp::model::{CallToolResult, ContentBlock};
        let secret = "s3cr3t-value";
        let big = json!({"token": secret, "filler": "x".repeat(10_000)}).to_string();
        let r = CallToolResult::success(vec![
            ContentBlock::text(big),
            ContentBlock::text(json!({"token": secret}).to_string()),
            ContentBlock::text(format!("plain text mentioning {secret}")),
        ]);
        let keys = vec!["token".to_owned()];
        let recorded = recorded_content(&r, &keys).to_string();
        assert!(!recorded.contains(secret), "{recorded}");
        assert!(recorded.len() < 6_000, "cut to size");
        // Without redaction configured, plain text is kept as it is.
        let plain = CallToolResult::success(vec![ContentBlock::text("hello".to_owned())]);
        assert_eq!(recorded_content(&plain, &[]), json!({"content": ["hello"]}));
    }

    #[test]
    fn redaction_reaches_nested_keys() {
        let v = redact(&json!({"to": "a@b", "nested": [{"to": "c"}], "body": "x"}), &["to".into()]);
        assert_eq!(v, json!({"to": "[redacted]", "nested": [{"to": "[redacted]"}], "body": "x"}));
    }
}

/// Most characters of a result's content kept in a record.
pub const MAX_RECORDED_CONTENT: usize = 4096;

/// What `[audit] content = true` records of a result: each text block (JSON
/// ones parsed) and the structured content, redacted first and only then cut
/// to [`MAX_RECORDED_CONTENT`]. Text that is not JSON cannot be redacted by
/// key, so where redaction is configured it is recorded only by size.
pub fn recorded_content(result: &rmcp::model::CallToolResult, redact_keys: &[String]) -> Value {
    let mut blocks = Vec::new();
    for block in &result.content {
        let Some(text) = block.as_text().map(|t| t.text.as_str()) else { continue };
        blocks.push(match serde_json::from_str::<Value>(text) {
            Ok(v) => redact(&v, redact_keys),
            Err(_) if redact_keys.is_empty() => Value::String(text.to_owned()),
            Err(_) => serde_json::json!({"withheld": "not JSON, so [audit] redact cannot apply", "bytes": text.len()}),
        });
    }
    let mut recorded = serde_json::json!({"content": blocks});
    if let Some(sc) = &result.structured_content {
        recorded["structured"] = redact(sc, redact_keys);
    }
    let text = recorded.to_string();
    if text.chars().count() <= MAX_RECORDED_CONTENT {
        return recorded;
    }
    // Cut only after redaction: the cut text holds no redacted value.
    serde_json::json!({"truncated": text.chars().take(MAX_RECORDED_CONTENT).collect::<String>(), "bytes": text.len()})
}

/// Sign the current head of the chain, unless the last checkpoint already
/// covers it. Returns the new checkpoint, if one was written.
///
/// The checkpoint is also appended to the witness file outside the store
/// (and logged), so that deleting checkpoints from the store and rewriting
/// the chain there shows when `audit verify` compares the two.
pub fn write_checkpoint(
    store: &dyn crate::store::Store,
    key: &crate::keys::KeyPair,
    iss: &str,
    now: i64,
    witness: &std::path::Path,
) -> Result<Option<Checkpoint>, String> {
    let Some((seq, hash)) = store.audit_head().map_err(|e| e.to_string())? else { return Ok(None) };
    if store.checkpoints().map_err(|e| e.to_string())?.last().is_some_and(|c| c.seq == seq) {
        return Ok(None);
    }
    let claims = CheckpointClaims { iss: iss.to_owned(), seq, hash: hash.clone(), at: now };
    let jws = crate::jws::sign(&claims, &key.kid, CHECKPOINT_TYP, &key.signing).map_err(|e| e.to_string())?;
    let c = Checkpoint { seq, hash, at: now, jws };
    store.record_checkpoint(&c).map_err(|e| e.to_string())?;
    append_witness(witness, &c).map_err(|e| format!("checkpoint {seq} is in the store but not in the witness file {}: {e}", witness.display()))?;
    tracing::info!(seq, hash = %c.hash, checkpoint = %c.jws, "audit checkpoint (witness)");
    Ok(Some(c))
}

/// Append a checkpoint to the witness file (JSON lines), created private.
fn append_witness(path: &std::path::Path, c: &Checkpoint) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut line = serde_json::to_vec(&serde_json::json!({"seq": c.seq, "hash": c.hash, "at": c.at, "jws": c.jws})).map_err(std::io::Error::other)?;
    line.push(b'\n');
    // One write of one line: appends from several processes do not interleave.
    options.open(path)?.write_all(&line)
}

/// The checkpoints in a witness file; a missing file holds none. Lines that
/// are not checkpoints are skipped (a signature check decides what counts).
pub fn read_witness(path: &std::path::Path) -> std::io::Result<Vec<Checkpoint>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            Some(Checkpoint {
                seq: v.get("seq")?.as_i64()?,
                hash: v.get("hash")?.as_str()?.to_owned(),
                at: v.get("at")?.as_i64()?,
                jws: v.get("jws")?.as_str()?.to_owned(),
            })
        })
        .collect())
}
