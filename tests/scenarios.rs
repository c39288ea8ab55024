//! The scenario corpus (`tests/scenarios/*.toml`) replayed through the real
//! gateway by the eval runner (`examples/eval.rs`): every benign task must
//! complete with at most one end-user confirmation, and no attack call may
//! run. The runner's figures are printed so CI logs show them.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

#[test]
fn every_benign_task_completes_and_no_attack_call_runs() {
    let eval = jitgate_bin().parent().unwrap().join("examples").join("eval");
    assert!(eval.exists(), "eval runner not built at {}; `cargo test` builds examples", eval.display());
    let _ = workspace_server_bin();
    let out = Command::new(&eval).arg("--json").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("eval output is not JSON ({e}); stderr:\n{}", String::from_utf8_lossy(&out.stderr)));
    let (benign, completed) = (report["benign_total"].as_u64().unwrap(), report["benign_completed"].as_u64().unwrap());
    let (attacks, executed) = (report["attack_calls"].as_u64().unwrap(), report["attack_calls_executed"].as_u64().unwrap());
    eprintln!(
        "scenario corpus: benign {completed}/{benign} completed; attack calls executed {executed}/{attacks} (refused {}, held for approval {}); end-user questions: {} in benign tasks (at most {} per task), {} in attacks",
        report["attack_calls_refused"],
        report["attack_calls_held_for_approval"],
        report["end_user_questions_benign"],
        report["end_user_questions_most_per_benign_task"],
        report["end_user_questions_attacks"]
    );
    // The corpus is what the issue asks for: at least 40 of each.
    assert!(benign >= 40 && report["scenarios"].as_array().unwrap().len() as u64 - benign >= 40, "{report}");
    assert_eq!(completed, benign, "benign tasks refused: {}", report["misses"]);
    assert_eq!(executed, 0, "attack calls executed: {}", report["misses"]);
    // Third-party values the user asked for reach their sink with one
    // confirmation each, and no benign task asks its user twice.
    let third_party: Vec<&Value> = report["scenarios"].as_array().unwrap().iter().filter(|s| s["kind"] == "benign" && s["end_user_questions"] != 0).collect();
    assert!(third_party.len() >= 8, "the corpus has benign third-party flows: {report}");
    assert_eq!(report["end_user_questions_most_per_benign_task"], 1, "{}", report["misses"]);
    assert!(attacks >= 40);
    assert_eq!(out.status.code(), Some(0));
}
