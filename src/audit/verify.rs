//! `jitgate audit verify`: check the chain and the signed checkpoints, and
//! report the first bad record.

use serde::Serialize;

use super::{CHECKPOINT_TYP, Checkpoint, CheckpointClaims, GENESIS, Record, record_hash};
use crate::keys::PublicKey;

/// What is wrong, at which record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// A record is missing (deleted) or out of place: seq `expected` was due.
    Gap { expected: i64, found: i64 },
    /// The record does not chain onto the one before it (reordered, or one before it was removed).
    BrokenLink { seq: i64 },
    /// The record's content does not match its hash (edited).
    Edited { seq: i64 },
    /// A checkpoint's signature does not verify with any gateway key.
    BadCheckpointSignature { checkpoint: usize },
    /// A checkpoint names a record whose hash differs (the chain was rewritten).
    CheckpointMismatch { seq: i64 },
    /// Records up to a checkpoint are gone (truncated).
    Truncated { checkpoint_seq: i64, last_seq: i64 },
    /// A checkpoint in the witness file is not in the store (deleted there).
    MissingFromStore { seq: i64 },
    /// Records older than the checkpoint interval (plus grace) that no valid
    /// checkpoint covers: they could have been rewritten unnoticed.
    Uncovered { from_seq: i64, oldest_at: i64 },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Gap { expected, found } => write!(f, "record {expected} is missing (next is {found}): records were deleted"),
            Problem::BrokenLink { seq } => write!(f, "record {seq} does not chain onto record {}: records were reordered or removed", seq - 1),
            Problem::Edited { seq } => write!(f, "record {seq} does not match its hash: it was edited"),
            Problem::BadCheckpointSignature { checkpoint } => write!(f, "checkpoint #{checkpoint} has a signature no gateway key verifies: it was forged"),
            Problem::CheckpointMismatch { seq } => write!(f, "record {seq} differs from the signed checkpoint: the chain was rewritten"),
            Problem::Truncated { checkpoint_seq, last_seq } => {
                write!(f, "a signed checkpoint covers record {checkpoint_seq} but the log ends at {last_seq}: it was truncated")
            }
            Problem::MissingFromStore { seq } => {
                write!(f, "the witness holds a checkpoint of record {seq} that the store does not: checkpoints were deleted from the store")
            }
            Problem::Uncovered { from_seq, oldest_at } => write!(
                f,
                "records from {from_seq} on (the first written at {}) are covered by no signed checkpoint although they are older than the checkpoint interval: they could have been rewritten; is the witness file in place?",
                crate::clock::rfc3339(*oldest_at)
            ),
        }
    }
}

/// The result of a verification.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub records: usize,
    pub checkpoints: usize,
    /// The last record a valid checkpoint covers.
    pub covered_to: i64,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What a verification checks the records against.
pub struct Evidence<'a> {
    /// Checkpoints as the store holds them.
    pub stored: &'a [Checkpoint],
    /// Checkpoints as the witness file outside the store holds them.
    pub witnessed: &'a [Checkpoint],
    pub keys: &'a [PublicKey],
    /// Records written before this must be covered by a checkpoint.
    pub must_be_covered_before: i64,
}

/// Verify records (in seq order) against the checkpoints in the store and
/// in the witness, and the gateway's public keys.
pub fn verify(records: &[Record], evidence: &Evidence<'_>) -> Report {
    let mut checkpoints: Vec<Checkpoint> = evidence.stored.to_vec();
    for w in evidence.witnessed {
        if !evidence.stored.iter().any(|c| c.jws == w.jws) {
            checkpoints.push(w.clone());
        }
    }
    let mut report = verify_with(records, &checkpoints, evidence.keys);
    for w in evidence.witnessed {
        // Only a witnessed checkpoint that verifies counts as evidence of a deletion.
        if !evidence.stored.iter().any(|c| c.jws == w.jws) && checkpoint_claims(&w.jws, evidence.keys).is_some() {
            report.problems.push(Problem::MissingFromStore { seq: w.seq });
        }
    }
    if let Some(first) = records.iter().find(|r| r.seq > report.covered_to) {
        if first.at < evidence.must_be_covered_before {
            report.problems.push(Problem::Uncovered { from_seq: first.seq, oldest_at: first.at });
        }
    }
    report
}

/// The chain and the given checkpoints.
fn verify_with(records: &[Record], checkpoints: &[Checkpoint], keys: &[PublicKey]) -> Report {
    let mut report = Report { records: records.len(), checkpoints: checkpoints.len(), ..Default::default() };
    let mut prev_hash = GENESIS.to_owned();
    let mut expected = 1;
    for r in records {
        if r.seq != expected {
            report.problems.push(Problem::Gap { expected, found: r.seq });
            break;
        }
        if r.prev_hash != prev_hash {
            report.problems.push(Problem::BrokenLink { seq: r.seq });
            break;
        }
        if record_hash(r.seq, r.at, &r.kind, r.task.as_deref(), r.agent.as_deref(), &r.data, &r.prev_hash) != r.hash {
            report.problems.push(Problem::Edited { seq: r.seq });
            break;
        }
        prev_hash = r.hash.clone();
        expected += 1;
    }
    let last_seq = records.last().map(|r| r.seq).unwrap_or(0);
    for (i, c) in checkpoints.iter().enumerate() {
        let Some(claims) = checkpoint_claims(&c.jws, keys) else {
            report.problems.push(Problem::BadCheckpointSignature { checkpoint: i + 1 });
            continue;
        };
        if claims.seq > last_seq {
            report.problems.push(Problem::Truncated { checkpoint_seq: claims.seq, last_seq });
            continue;
        }
        match records.iter().find(|r| r.seq == claims.seq) {
            Some(r) if r.hash == claims.hash => report.covered_to = report.covered_to.max(claims.seq),
            _ => report.problems.push(Problem::CheckpointMismatch { seq: claims.seq }),
        }
    }
    report
}

/// The claims of a checkpoint whose signature verifies with one of `keys`.
fn checkpoint_claims(jws: &str, keys: &[PublicKey]) -> Option<CheckpointClaims> {
    let parsed = crate::jws::parse(jws, 4096).ok()?;
    if parsed.header.typ.as_deref() != Some(CHECKPOINT_TYP) {
        return None;
    }
    let kid = parsed.kid().ok()?;
    let key = keys.iter().find(|k| k.kid == kid)?;
    parsed.verify_signature(&key.key).ok()?;
    parsed.claims().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Event;
    use crate::keys::KeyPair;
    use crate::store::{SqliteStore, Store};
    use serde_json::json;

    fn chain(n: i64) -> (SqliteStore, KeyPair) {
        let s = SqliteStore::in_memory().unwrap();
        for i in 1..=n {
            s.append_audit(&Event::new("test", Some("t1"), Some("a"), json!({"i": i})), 100 + i).unwrap();
        }
        (s, KeyPair::from_seed(&[7; 32]))
    }

    fn checkpoint(s: &SqliteStore, key: &KeyPair) {
        let (seq, hash) = s.audit_head().unwrap().unwrap();
        let claims = CheckpointClaims { iss: "gw".into(), seq, hash: hash.clone(), at: 1 };
        let jws = crate::jws::sign(&claims, &key.kid, CHECKPOINT_TYP, &key.signing).unwrap();
        s.record_checkpoint(&Checkpoint { seq, hash, at: 1, jws }).unwrap();
    }

    fn check(records: &[Record], s: &SqliteStore, key: &KeyPair) -> Report {
        verify_with(records, &s.checkpoints().unwrap(), &[key.public()])
    }

    #[test]
    fn deleted_checkpoints_and_an_unwitnessed_rewrite_are_found() {
        let (s, key) = chain(4);
        checkpoint(&s, &key);
        let witnessed = s.checkpoints().unwrap();
        let records = s.audit_records(0, 100).unwrap();
        let keys = [key.public()];
        let evidence = |stored: &[Checkpoint], witnessed: &[Checkpoint], before: i64| {
            verify(&records, &Evidence { stored, witnessed, keys: &keys, must_be_covered_before: before })
        };
        assert!(evidence(&witnessed, &witnessed, 1_000).ok());
        // The checkpoints were deleted from the store; the witness still has them.
        let r = evidence(&[], &witnessed, 1_000);
        assert!(r.problems.contains(&Problem::MissingFromStore { seq: 4 }), "{:?}", r.problems);
        // No checkpoint anywhere, and the records are old: they are not protected.
        let r = evidence(&[], &[], 1_000);
        assert!(matches!(r.problems.as_slice(), [Problem::Uncovered { from_seq: 1, .. }]), "{:?}", r.problems);
        // Records still within the interval need no checkpoint yet.
        assert!(evidence(&[], &[], 100).ok());
        // A rewrite with recomputed hashes and no checkpoints: the witness catches it.
        let rewritten = SqliteStore::in_memory().unwrap();
        for i in 1..=4 {
            rewritten.append_audit(&Event::new("test", Some("t1"), Some("a"), json!({"i": i * 10})), 100 + i).unwrap();
        }
        let r = verify(&rewritten.audit_records(0, 100).unwrap(), &Evidence { stored: &[], witnessed: &witnessed, keys: &keys, must_be_covered_before: 1_000 });
        assert!(r.problems.iter().any(|p| matches!(p, Problem::CheckpointMismatch { seq: 4 })), "{:?}", r.problems);
    }

    #[test]
    fn an_intact_chain_verifies_and_each_kind_of_tampering_is_found() {
        let (s, key) = chain(6);
        checkpoint(&s, &key);
        let good = s.audit_records(0, 100).unwrap();
        let r = check(&good, &s, &key);
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!((r.records, r.covered_to), (6, 6));

        let mut edited = good.clone();
        edited[2].data = json!({"i": 99});
        assert_eq!(check(&edited, &s, &key).problems[0], Problem::Edited { seq: 3 });

        let mut deleted = good.clone();
        deleted.remove(3);
        assert_eq!(check(&deleted, &s, &key).problems[0], Problem::Gap { expected: 4, found: 5 });

        // Reordered: two records swap places (seq numbers rewritten to look contiguous).
        let mut reordered = good.clone();
        reordered.swap(1, 2);
        reordered[1].seq = 2;
        reordered[2].seq = 3;
        assert_eq!(check(&reordered, &s, &key).problems[0], Problem::BrokenLink { seq: 2 });

        let truncated = good[..4].to_vec();
        assert_eq!(check(&truncated, &s, &key).problems, vec![Problem::Truncated { checkpoint_seq: 6, last_seq: 4 }]);

        // Rewritten: a whole new chain with a recomputed hash for every record.
        let mut rewritten = good.clone();
        rewritten[4].data = json!({"i": "forged"});
        let mut prev = rewritten[3].hash.clone();
        for r in rewritten.iter_mut().skip(4) {
            r.prev_hash = prev.clone();
            r.hash = record_hash(r.seq, r.at, &r.kind, r.task.as_deref(), r.agent.as_deref(), &r.data, &r.prev_hash);
            prev = r.hash.clone();
        }
        assert_eq!(check(&rewritten, &s, &key).problems, vec![Problem::CheckpointMismatch { seq: 6 }]);

        // A checkpoint signed by another key is a forgery.
        let rogue = KeyPair::from_seed(&[8; 32]);
        checkpoint(&s, &rogue);
        let r = verify_with(&good, &s.checkpoints().unwrap(), &[key.public()]);
        assert_eq!(r.problems, vec![Problem::BadCheckpointSignature { checkpoint: 2 }]);
    }
}
