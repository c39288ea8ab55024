//! The audit trail through the real gateway: a full task's trace tree,
//! tamper detection by `jitgate audit verify`, and fail-closed calls when a
//! record cannot be written.

mod common;

use common::*;
use serde_json::{Value, json};


fn db(dep: &Deployment) -> rusqlite::Connection {
    rusqlite::Connection::open(dep.path("state/jitgate.sqlite")).unwrap()
}

/// `audit verify`'s exit code and its report (stdout), with the error it
/// ends with (stderr) after it.
fn verify(dep: &Deployment) -> (Option<i32>, String) {
    let (code, out, err) = jitgate(&["audit", "verify", "--config", dep.config.to_str().unwrap()]);
    (code, format!("{out}{err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_reconstructed_from_the_log_and_tampering_is_found() {
    let dep = Deployment::new(&Setup { policies: quickstart_policies(), ..Setup::default() });
    let task;
    let read_jti;
    {
        let gw = Gateway::start(&dep);
        gw.wait_server("workspace", "ready").await;
        let triage = gw.connect(&dep.mint("triage")).await;
        task = begin(&triage, json!([{"name": "read", "tools": ["workspace__read_inbox"]}, {"name": "reply", "tools": ["workspace__send_message"]}])).await.unwrap();
        let read = grant(&triage, json!({"task": task, "tool": "workspace__read_inbox", "arguments": {}, "purpose": "triage new mail"})).await.unwrap();
        read_jti = read["jti"].as_str().unwrap().to_owned();
        call_with_token(&triage, "workspace__read_inbox", json!({}), read["token"].as_str().unwrap()).await.unwrap();
        raw_call(&triage, "jit_next_phase", json!({"task": task, "phase": "reply"})).await.unwrap();
        let send = |to: &str| json!({"task": task, "tool": "workspace__send_message", "arguments": {"to": to, "subject": "Re", "body": "Hello"}, "purpose": "reply", "follows": read_jti});
        assert_held_for_end_user(&grant(&triage, send("audit@exfil.attacker.test")).await, "platform-oncall");
        let ok = grant(&triage, send("alice@example.org")).await.unwrap();
        call_with_token(&triage, "workspace__send_message", json!({"to": "alice@example.org", "subject": "Re", "body": "Hello"}), ok["token"].as_str().unwrap()).await.unwrap();
        raw_call(&triage, "jit_end_task", json!({"task": task, "outcome": "done"})).await.unwrap();
        // The revocation of the end is recorded by the gateway's maintenance loop.
        let recorded = || {
            db(&dep)
                .query_row("SELECT count(*) FROM audit WHERE kind = 'revocation' AND data LIKE '%\"scope\":\"task\"%'", [], |r| r.get::<_, i64>(0))
                .unwrap_or(0)
        };
        eventually(std::time::Duration::from_secs(30), || async { (recorded() > 0).then_some(()) }).await;
        // A graceful stop signs a checkpoint over the whole log.
        let mut gw = gw;
        assert!(std::process::Command::new("kill").args(["-TERM", &gw.child.id().to_string()]).status().unwrap().success());
        let status = gw.child.wait().unwrap();
        assert!(status.success(), "{status}");
        gw.wait_log("audit checkpoint signed").await;
    }

    // The tree: phases, each request with its decision and policies, the
    // follow-on links, the calls, the end and the revocation.
    let (code, out, err) = jitgate(&["trace", &task, "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    for want in [
        "objective: test task",
        "phase read",
        "phase reply",
        "workspace__read_inbox → allow [support-tool-set]",
        "workspace__send_message → pending_approval [untrusted-data-into-sinks-needs-the-end-user]",
        "tainted by output of",
        "(workspace__read_inbox)",
        "workspace__send_message → allow [support-tool-set]",
        "└─ call",
        ": ok in",
        "ended: done",
        "revoked (task)",
    ] {
        assert!(out.contains(want), "trace lacks `{want}`:\n{out}");
    }
    assert!(!out.contains(&read_jti) || out.matches(&read_jti[..8]).count() >= 1);
    let (_, json_out, _) = jitgate(&["trace", &task, "--json", "--config", dep.config.to_str().unwrap()]);
    let tree: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(tree["phases"][1]["requests"][0]["decision"], "pending_approval");
    assert_eq!(tree["phases"][1]["requests"][0]["taint_sources"][0], read_jti.as_str());
    assert_eq!(tree["phases"][1]["requests"][1]["call"]["status"], "ok");
    let (code, list, _) = jitgate(&["trace", "--agent", "triage", "--since", "1h", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert!(list.contains(&task) && list.contains("0 denied"), "{list}");
    // No full token is ever in the log.
    let (_, export, _) = jitgate(&["audit", "export", "--config", dep.config.to_str().unwrap()]);
    assert!(export.lines().count() > 8 && !export.contains("eyJ"), "tokens must never be logged");
    // Nor the credential jitgate injects into the workspace server.
    let secret = std::fs::read_to_string(repo_root().join("examples/quickstart/secrets/workspace-token")).unwrap();
    assert!(!export.contains(secret.trim()), "an injected secret reached the audit log");

    // Intact: verifies, and a checkpoint was signed on shutdown.
    let (code, err) = verify(&dep);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("ok: the chain is intact"), "{err}");

    // Edited.
    let c = db(&dep);
    let original: String = c.query_row("SELECT data FROM audit WHERE seq = 3", [], |r| r.get(0)).unwrap();
    c.execute("UPDATE audit SET data = replace(data, 'triage', 'friendly') WHERE seq = 3", []).unwrap();
    let (code, err) = verify(&dep);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("record 3") && err.contains("edited"), "{err}");
    c.execute("UPDATE audit SET data = ?1 WHERE seq = 3", [&original]).unwrap();
    assert_eq!(verify(&dep).0, Some(0));

    // Deleted.
    let row: (i64, String, String, String) =
        c.query_row("SELECT at, kind, data, hash FROM audit WHERE seq = 5", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap();
    let prev: String = c.query_row("SELECT prev_hash FROM audit WHERE seq = 5", [], |r| r.get(0)).unwrap();
    let (task_col, agent_col): (Option<String>, Option<String>) = c.query_row("SELECT task, agent FROM audit WHERE seq = 5", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    c.execute("DELETE FROM audit WHERE seq = 5", []).unwrap();
    let (code, err) = verify(&dep);
    assert_eq!(code, Some(3));
    assert!(err.contains("record 5 is missing"), "{err}");
    c.execute(
        "INSERT INTO audit(seq, at, kind, task, agent, data, prev_hash, hash) VALUES (5, ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        rusqlite::params![row.0, row.1, task_col, agent_col, row.2, prev, row.3],
    )
    .unwrap();
    assert_eq!(verify(&dep).0, Some(0));

    // Reordered: two records swap contents.
    let swap = |a: i64, b: i64| {
        c.execute("UPDATE audit SET seq = -1 WHERE seq = ?1", [a]).unwrap();
        c.execute("UPDATE audit SET seq = ?1 WHERE seq = ?2", [a, b]).unwrap();
        c.execute("UPDATE audit SET seq = ?1 WHERE seq = -1", [b]).unwrap();
    };
    swap(6, 7);
    let (code, err) = verify(&dep);
    assert_eq!(code, Some(3));
    assert!(err.contains("record 6") && (err.contains("reordered") || err.contains("edited")), "{err}");
    swap(6, 7);
    assert_eq!(verify(&dep).0, Some(0));

    // Truncated after the checkpoint.
    let last: i64 = c.query_row("SELECT max(seq) FROM audit", [], |r| r.get(0)).unwrap();
    c.execute("DELETE FROM audit WHERE seq > ?1", [last - 2]).unwrap();
    let (code, err) = verify(&dep);
    assert_eq!(code, Some(3));
    assert!(err.contains("truncated"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_record_cannot_be_written_is_refused_and_not_forwarded() {
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let triage = gw.connect(&dep.mint("triage")).await;
    let task = begin(&triage, json!([{"name": "send", "tools": ["workspace__send_message"]}])).await.unwrap();
    let args = json!({"to": "alice@example.org", "subject": "Hi", "body": "audit test"});
    let token = request(&triage, &task, "workspace__send_message", args.clone()).await.unwrap();

    // Inject a write failure for call records only.
    db(&dep)
        .execute_batch("CREATE TRIGGER fail_calls BEFORE INSERT ON audit WHEN NEW.kind = 'call.forwarded' BEGIN SELECT RAISE(ABORT, 'injected audit failure'); END;")
        .unwrap();
    let refused = call_with_token(&triage, "workspace__send_message", args.clone(), &token).await.unwrap();
    assert_eq!(refusal_code(&refused).as_deref(), Some("audit_unavailable"), "{}", text_of(&refused));
    assert!(text_of(&refused).contains("not forwarded"));
    // The log reaches the test through a pipe: wait for the line, bounded.
    gw.wait_log("AUDIT WRITE FAILED").await;
    let outbox = std::fs::read_to_string(dep.workspace_state.join("outbox.jsonl")).unwrap_or_default();
    assert!(!outbox.contains("audit test"), "nothing may reach the server: {outbox}");

    // Repaired: the same call with a new token goes through.
    db(&dep).execute_batch("DROP TRIGGER fail_calls;").unwrap();
    let token = request(&triage, &task, "workspace__send_message", args.clone()).await.unwrap();
    let sent = call_with_token(&triage, "workspace__send_message", args, &token).await.unwrap();
    assert_ne!(sent.is_error, Some(true), "{}", text_of(&sent));
    assert!(std::fs::read_to_string(dep.workspace_state.join("outbox.jsonl")).unwrap().contains("audit test"));

    // With intents failing too, no token is issued at all.
    db(&dep)
        .execute_batch("CREATE TRIGGER fail_all BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'injected audit failure'); END;")
        .unwrap();
    let r = request(&triage, &task, "workspace__send_message", json!({"to": "a@example.org", "subject": "s", "body": "b"})).await.unwrap_err();
    assert_eq!(refusal_code(&r).as_deref(), Some("audit_unavailable"), "{}", text_of(&r));
}

/// Every refusal is on record: refused calls (replay, another session's
/// token, a forged token), refused plans and requests, and identity failures
/// over HTTP, the last counted in aggregate so that unauthenticated traffic
/// cannot fill the store.
#[tokio::test]
async fn refusals_are_audited_and_unauthenticated_ones_in_aggregate() {
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let token = dep.mint("triage");
    let triage = gw.connect(&token).await;
    let task = begin(&triage, json!([{"name": "read", "tools": ["workspace__read_note"]}])).await.unwrap();
    let t = request(&triage, &task, "workspace__read_note", json!({"name": "q3-plan.md"})).await.unwrap();
    call_with_token(&triage, "workspace__read_note", json!({"name": "q3-plan.md"}), &t).await.unwrap();
    let replay = call_with_token(&triage, "workspace__read_note", json!({"name": "q3-plan.md"}), &t).await.unwrap();
    assert_eq!(refusal_code(&replay).as_deref(), Some("token_replayed"));
    let forged = call_with_token(&triage, "workspace__read_note", json!({"name": "q3-plan.md"}), "eyJhbGciOiJFZERTQSJ9.e30.AAAA").await.unwrap();
    assert!(refusal_code(&forged).is_some());
    let other_session = gw.connect(&token).await;
    let t2 = request(&triage, &task, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap();
    let wrong = call_with_token(&other_session, "workspace__read_note", json!({"name": "welcome.md"}), &t2).await.unwrap();
    assert_eq!(refusal_code(&wrong).as_deref(), Some("token_wrong_session"));
    let plan = begin(&triage, json!([{"name": "x", "tools": ["workspace__delete_note"]}])).await.unwrap_err();
    assert!(refusal_code(&plan).is_some());
    let not_in_phase = request(&triage, &task, "workspace__send_message", json!({"to": "a@example.org", "subject": "s", "body": "b"})).await.unwrap_err();
    assert!(refusal_code(&not_in_phase).is_some());
    for bad in [None, Some("not.a.jwt"), Some("also-bad")] {
        assert_eq!(post_raw(&gw.url, bad, None, INIT).await.0, 401);
    }
    // The legitimate call after all that still works.
    assert!(text_of(&call(&triage, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap()).contains("Welcome"));

    let records = eventually(std::time::Duration::from_secs(30), || async {
        let (_, export, _) = jitgate(&["audit", "export", "--config", dep.config.to_str().unwrap()]);
        let records: Vec<Value> = export.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        records.iter().any(|r| r["kind"] == "identity.refused" && r["data"]["counts"].is_object()).then_some(records)
    })
    .await;
    let refused: Vec<&str> = records.iter().filter(|r| r["kind"] == "refusal").filter_map(|r| r["data"]["code"].as_str()).collect();
    assert!(refused.contains(&"token_replayed") && refused.contains(&"token_wrong_session"), "{refused:?}");
    assert!(refused.iter().filter(|c| c.starts_with("token_")).count() >= 3, "the forged token too: {refused:?}");
    assert!(refused.len() >= 5, "plan and request refusals too: {refused:?}");
    let counted: u64 = records.iter().filter(|r| r["kind"] == "identity.refused").filter_map(|r| r["data"]["total"].as_u64()).sum();
    assert_eq!(counted, 3, "three 401s, counted not recorded one by one");
}

/// Checkpoints are also written outside the store (the witness file): a
/// chain rewritten with recomputed hashes after its checkpoints were deleted
/// from the store is found, and records old enough to need a checkpoint but
/// covered by none fail verification.
#[tokio::test]
async fn the_witness_finds_deleted_checkpoints_and_a_recomputed_chain() {
    let dep = Deployment::new(&Setup::default());
    dep.append_config("\n[audit]\ncheckpoint_interval = \"1s\"\n");
    {
        let gw = Gateway::start(&dep);
        gw.wait_server("workspace", "ready").await;
        let triage = gw.connect(&dep.mint("triage")).await;
        assert!(text_of(&call(&triage, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap()).contains("Welcome"));
        drop(triage);
        gw.stop();
    }
    assert_eq!(verify(&dep).0, Some(0), "{}", verify(&dep).1);
    let witness = std::fs::read_to_string(dep.path("state/audit-witness.jsonl")).unwrap();
    assert!(witness.lines().count() >= 1 && witness.contains("\"jws\""), "{witness}");

    // The attacker deletes the checkpoints and rewrites a record, recomputing every hash after it.
    let c = db(&dep);
    c.execute("DELETE FROM audit_checkpoints", []).unwrap();
    let (code, err) = verify(&dep);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("checkpoints were deleted from the store"), "{err}");
    let rows: Vec<(i64, i64, String, Option<String>, Option<String>, String)> = {
        let mut stmt = c.prepare("SELECT seq, at, kind, task, agent, data FROM audit ORDER BY seq").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))).unwrap().map(Result::unwrap).collect()
    };
    let mut prev = "0".repeat(64);
    for (seq, at, kind, task, agent, data) in rows {
        let data = if seq == 2 { data.replace("triage", "friendly") } else { data };
        let value: Value = serde_json::from_str(&data).unwrap();
        let hash = jitgate::audit::record_hash(seq, at, &kind, task.as_deref(), agent.as_deref(), &value, &prev);
        c.execute("UPDATE audit SET data = ?1, prev_hash = ?2, hash = ?3 WHERE seq = ?4", rusqlite::params![data, prev, hash, seq]).unwrap();
        prev = hash;
    }
    let (code, err) = verify(&dep);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("rewritten") || err.contains("deleted from the store"), "{err}");
    // Without the witness as well, the chain verifies as a chain, but its
    // records are older than the checkpoint interval and covered by nothing.
    std::fs::remove_file(dep.path("state/audit-witness.jsonl")).unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (code, err) = verify(&dep);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("covered by no signed checkpoint"), "{err}");
}
