//! Baselines through the real gateway: unusual chains go to a person, drift
//! quarantines with a release path, and a learned profile changes what is
//! usual. Each test shows the refused case and the legitimate one.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// A support agent with a declared baseline (the quick start's transitions, shortened).
const WATCHED: &str = r#"name = "watched"
id = "spiffe://jitgate.local/agent/watched"
team = "support"
allowed_tools = ["workspace__read_note", "workspace__fetch_page", "workspace__send_message", "workspace__list_notes", "workspace__read_inbox"]

[baseline]
transitions = [
  ["workspace__read_note", "workspace__send_message"],
  ["workspace__list_notes", "workspace__read_note"],
]
drift_threshold = 90
"#;

/// A support agent whose baseline is tight enough to drift.
const TIGHT: &str = r#"name = "tight"
id = "spiffe://jitgate.local/agent/tight"
team = "support"
allowed_tools = ["workspace__read_note", "workspace__send_message", "workspace__list_notes"]

[baseline]
tools = ["workspace__read_note", "workspace__list_notes"]
transitions = [["workspace__list_notes", "workspace__read_note"]]
drift_threshold = 80
max_requests_per_minute = 5
"#;

fn setup() -> Setup {
    Setup {
        policies: quickstart_policies(),
        agents: vec![
            ("watched.toml".into(), WATCHED.into()),
            // The same agent under another identity: a history of its own.
            ("watched-too.toml".into(), WATCHED.replace("watched", "watched-too")),
            ("tight.toml".into(), TIGHT.into()),
        ],
        ..Setup::default()
    }
}


async fn use_token(client: &rmcp::service::RunningService<rmcp::RoleClient, ()>, tool: &str, args: Value, g: &Value) {
    let r = call_with_token(client, tool, args, g["token"].as_str().unwrap()).await.unwrap();
    assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusual_high_risk_chain_goes_to_a_person() {
    let dep = Deployment::new(&setup());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let agent = gw.connect(&dep.mint("watched")).await;
    let task = begin(
        &agent,
        json!([{"name": "look", "tools": ["workspace__read_note", "workspace__fetch_page"]}, {"name": "send", "tools": ["workspace__send_message"]}]),
    )
    .await
    .unwrap();
    let mail = |to: &str| json!({"task": task, "tool": "workspace__send_message", "arguments": {"to": to, "subject": "Guide", "body": "Please see the support guide."}, "purpose": "share the guide"});

    // read_note -> send_message is in the baseline: a token at once.
    let task2 = begin(&agent, json!([{"name": "look", "tools": ["workspace__read_note"]}, {"name": "send", "tools": ["workspace__send_message"]}])).await.unwrap();
    let note = grant(&agent, json!({"task": task2, "tool": "workspace__read_note", "arguments": {"name": "q3-plan.md"}, "purpose": "read"})).await.unwrap();
    use_token(&agent, "workspace__read_note", json!({"name": "q3-plan.md"}), &note).await;
    raw_call(&agent, "jit_next_phase", json!({"task": task2, "phase": "send"})).await.unwrap();
    let body = json!({"task": task2, "tool": "workspace__send_message", "arguments": {"to": "alice@example.org", "subject": "Q3", "body": "summary"}, "purpose": "reply"});
    assert_eq!(grant(&agent, body).await.unwrap()["decision"], "allow");

    // fetch_page -> send_message is not in the baseline: a person must approve it.
    let page = grant(&agent, json!({"task": task, "tool": "workspace__fetch_page", "arguments": {"url": "https://docs.example.org/guide"}, "purpose": "read the guide"})).await.unwrap();
    use_token(&agent, "workspace__fetch_page", json!({"url": "https://docs.example.org/guide"}), &page).await;
    raw_call(&agent, "jit_next_phase", json!({"task": task, "phase": "send"})).await.unwrap();
    let pending = grant(&agent, mail("alice@example.org")).await.unwrap();
    assert_eq!(pending["decision"], "pending_approval", "{pending}");
    assert!(gw.log().contains("the transition workspace__fetch_page -> workspace__send_message is not in the baseline"), "{}", gw.log());

    // Issue 23: one harmless read in between launders nothing. After the
    // page, read_note -> send_message (known on its own) still goes to a
    // person while the page is within the taint horizon, in a new task too.
    let task3 = begin(&agent, json!([{"name": "look", "tools": ["workspace__read_note"]}, {"name": "send", "tools": ["workspace__send_message"]}])).await.unwrap();
    let note = grant(&agent, json!({"task": task3, "tool": "workspace__read_note", "arguments": {"name": "q3-plan.md"}, "purpose": "read"})).await.unwrap();
    use_token(&agent, "workspace__read_note", json!({"name": "q3-plan.md"}), &note).await;
    raw_call(&agent, "jit_next_phase", json!({"task": task3, "phase": "send"})).await.unwrap();
    let body = json!({"task": task3, "tool": "workspace__send_message", "arguments": {"to": "alice@example.org", "subject": "Q3", "body": "summary"}, "purpose": "reply"});
    assert_eq!(grant(&agent, body).await.unwrap()["decision"], "pending_approval");
    gw.wait_log("an earlier read of untrusted content by workspace__fetch_page -> workspace__send_message is not in the baseline").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_quarantines_the_agent_until_a_person_releases_it() {
    let dep = Deployment::new(&setup());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let agent = gw.connect(&dep.mint("tight")).await;
    // A usual task works (requests 1 and 2 of this minute).
    let usual = begin(&agent, json!([{"name": "read", "tools": ["workspace__list_notes", "workspace__read_note"]}])).await.unwrap();
    let list = grant(&agent, json!({"task": usual, "tool": "workspace__list_notes", "arguments": {}, "purpose": "list"})).await.unwrap();
    use_token(&agent, "workspace__list_notes", json!({}), &list).await;
    let read = grant(&agent, json!({"task": usual, "tool": "workspace__read_note", "arguments": {"name": "welcome.md"}, "purpose": "read"})).await.unwrap();

    // An unusual tool (+30) reached by an unknown high-risk transition (+60):
    // score 90, over the threshold of 80, but plausible new work. It goes to a
    // person; the agent is not quarantined (requests 3 and 4).
    let odd = begin(&agent, json!([{"name": "x", "tools": ["workspace__read_note", "workspace__send_message"]}])).await.unwrap();
    let first = grant(&agent, json!({"task": odd, "tool": "workspace__read_note", "arguments": {"name": "customer-acme.md"}, "purpose": "read"})).await.unwrap();
    use_token(&agent, "workspace__read_note", json!({"name": "customer-acme.md"}), &first).await;
    let send = json!({"task": odd, "tool": "workspace__send_message", "arguments": {"to": "x@example.net", "subject": "s", "body": "b"}, "purpose": "send"});
    let held = grant(&agent, send.clone()).await.unwrap();
    assert_eq!(held["decision"], "pending_approval", "{held}");
    assert!(!gw.log().contains("AGENT QUARANTINED"));
    // Its legitimate work goes on (request 5, within its rate).
    let again = grant(&agent, json!({"task": usual, "tool": "workspace__read_note", "arguments": {"name": "q3-plan.md"}, "purpose": "read"})).await.unwrap();
    assert_eq!(again["decision"], "allow", "{again}");

    // The same unusual request in a burst over its limit (request 6 of 5 a
    // minute) is strong evidence: drift, and the agent is quarantined.
    let refused = grant(&agent, json!({"task": odd, "tool": "workspace__send_message", "arguments": {"to": "y@example.net", "subject": "s", "body": "b"}, "purpose": "send"})).await.unwrap_err();
    assert_eq!(refusal_code(&refused).as_deref(), Some("agent_quarantined"), "{}", text_of(&refused));
    assert!(text_of(&refused).contains("drift (score 100)") && text_of(&refused).contains("requests in the last minute"), "{}", text_of(&refused));
    assert!(gw.log().contains("AGENT QUARANTINED"));

    // Everything it held is revoked: the unused token of the usual task fails,
    // and nothing new is granted.
    let r = call_with_token(&agent, "workspace__read_note", json!({"name": "welcome.md"}), read["token"].as_str().unwrap()).await.unwrap();
    assert_eq!(r.is_error, Some(true));
    let again = begin(&agent, json!([{"name": "read", "tools": ["workspace__list_notes"]}])).await.unwrap_err();
    assert_eq!(refusal_code(&again).as_deref(), Some("agent_quarantined"));
    let (code, out, _) = jitgate(&["agents", "list", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert!(out.lines().any(|l| l.starts_with("tight") && l.contains("QUARANTINED")), "{out}");

    // An agent credential cannot release; a person with a note can.
    let cred = dep.path("agent.jwt");
    std::fs::write(&cred, dep.mint("tight")).unwrap();
    let (code, _, err) = jitgate(&["agents", "release", "tight", "--note", "ok", "--config", dep.config.to_str().unwrap(), "--credential", cred.to_str().unwrap()]);
    assert_ne!(code, Some(0));
    assert!(err.contains("agent identity"), "{err}");
    std::fs::write(&cred, dep.mint_approver("alice@example.org", "platform-oncall")).unwrap();
    let (code, _, err) = jitgate(&["agents", "release", "tight", "--note", "false positive: new customer process", "--config", dep.config.to_str().unwrap(), "--credential", cred.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let back = begin(&agent, json!([{"name": "read", "tools": ["workspace__list_notes"]}])).await.unwrap();
    assert!(grant(&agent, json!({"task": back, "tool": "workspace__list_notes", "arguments": {}, "purpose": "list"})).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learned_baseline_defines_what_is_usual() {
    // An agent with no declared transitions: any chain within the plan is usual.
    let open = r#"name = "learner"
id = "spiffe://jitgate.local/agent/learner"
team = "support"
allowed_tools = ["workspace__read_note", "workspace__fetch_page", "workspace__send_message", "workspace__list_notes"]
"#;
    // Its twin has the same agent file and no history.
    let twin = open.replace("learner", "twin");
    let dep = Deployment::new(&Setup { agents: vec![("learner.toml".into(), open.into()), ("twin.toml".into(), twin)], ..setup() });
    let fetch_then_send = |task: &str| {
        (
            json!({"task": task, "tool": "workspace__fetch_page", "arguments": {"url": "https://docs.example.org/guide"}, "purpose": "guide"}),
            json!({"task": task, "tool": "workspace__send_message", "arguments": {"to": "alice@example.org", "subject": "Guide", "body": "see guide"}, "purpose": "send"}),
        )
    };
    let plan = json!([{"name": "a", "tools": ["workspace__list_notes", "workspace__read_note", "workspace__fetch_page"]}, {"name": "b", "tools": ["workspace__send_message"]}]);
    {
        let gw = Gateway::start(&dep);
        gw.wait_server("workspace", "ready").await;
        let agent = gw.connect(&dep.mint("learner")).await;
        // Its history: list -> read -> send, three times.
        for _ in 0..3 {
            let task = begin(&agent, plan.clone()).await.unwrap();
            let g = grant(&agent, json!({"task": task, "tool": "workspace__list_notes", "arguments": {}, "purpose": "list"})).await.unwrap();
            use_token(&agent, "workspace__list_notes", json!({}), &g).await;
            let g = grant(&agent, json!({"task": task, "tool": "workspace__read_note", "arguments": {"name": "q3-plan.md"}, "purpose": "read"})).await.unwrap();
            use_token(&agent, "workspace__read_note", json!({"name": "q3-plan.md"}), &g).await;
            raw_call(&agent, "jit_next_phase", json!({"task": task, "phase": "b"})).await.unwrap();
            let g = grant(&agent, json!({"task": task, "tool": "workspace__send_message", "arguments": {"to": "alice@example.org", "subject": "Q3", "body": "summary"}, "purpose": "send"})).await.unwrap();
            assert_eq!(g["decision"], "allow");
            raw_call(&agent, "jit_end_task", json!({"task": task, "outcome": "done"})).await.unwrap();
        }
    }
    let (code, _, err) = jitgate(&["baseline", "learn", "--agent", "learner", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let learned = std::fs::read_to_string(dep.path("agents/learner.baseline.toml")).unwrap();
    assert!(learned.contains("from = \"workspace__read_note\"") && learned.contains("to = \"workspace__send_message\""), "{learned}");
    assert!(learned.contains("argument_shapes"), "{learned}");

    // Restarted with the learned profile: the learned chain is still usual, the
    // fetch -> send chain it never showed now needs a person.
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    eventually(Duration::from_secs(10), || async { gw.log().contains("learned baseline loaded").then_some(()) }).await;
    let agent = gw.connect(&dep.mint("learner")).await;
    let task = begin(&agent, plan.clone()).await.unwrap();
    let g = grant(&agent, json!({"task": task, "tool": "workspace__read_note", "arguments": {"name": "q3-plan.md"}, "purpose": "read"})).await.unwrap();
    use_token(&agent, "workspace__read_note", json!({"name": "q3-plan.md"}), &g).await;
    raw_call(&agent, "jit_next_phase", json!({"task": task, "phase": "b"})).await.unwrap();
    let ok = json!({"task": task, "tool": "workspace__send_message", "arguments": {"to": "alice@example.org", "subject": "Q3", "body": "summary"}, "purpose": "send"});
    assert_eq!(grant(&agent, ok).await.unwrap()["decision"], "allow");
    let task = begin(&agent, plan.clone()).await.unwrap();
    let (fetch, send) = fetch_then_send(&task);
    let g = grant(&agent, fetch).await.unwrap();
    use_token(&agent, "workspace__fetch_page", json!({"url": "https://docs.example.org/guide"}), &g).await;
    raw_call(&agent, "jit_next_phase", json!({"task": task, "phase": "b"})).await.unwrap();
    assert_eq!(grant(&agent, send).await.unwrap()["decision"], "pending_approval");

    // The twin, without a learned profile, may chain fetch -> send (within its plan).
    let twin = gw.connect(&dep.mint("twin")).await;
    let task = begin(&twin, plan.clone()).await.unwrap();
    let (fetch, send) = fetch_then_send(&task);
    let g = grant(&twin, fetch).await.unwrap();
    use_token(&twin, "workspace__fetch_page", json!({"url": "https://docs.example.org/guide"}), &g).await;
    raw_call(&twin, "jit_next_phase", json!({"task": task, "phase": "b"})).await.unwrap();
    assert_eq!(grant(&twin, send).await.unwrap()["decision"], "allow");
}

/// The chain is what the agent did, not what it says: naming an earlier,
/// harmless call in `follows`, or starting a new task, no longer hides that
/// the last thing it did was read a web page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_and_a_new_task_do_not_hide_the_real_previous_call() {
    let dep = Deployment::new(&setup());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let agent = gw.connect_modern(&dep.mint("watched")).await;
    let task = begin(
        &agent,
        json!([{"name": "look", "tools": ["workspace__read_note", "workspace__fetch_page"]}, {"name": "send", "tools": ["workspace__send_message"]}]),
    )
    .await
    .unwrap();
    let note = grant(&agent, json!({"task": task, "tool": "workspace__read_note", "arguments": {"name": "q3-plan.md"}, "purpose": "read"})).await.unwrap();
    use_token(&agent, "workspace__read_note", json!({"name": "q3-plan.md"}), &note).await;
    let page = grant(&agent, json!({"task": task, "tool": "workspace__fetch_page", "arguments": {"url": "https://docs.example.org/guide"}, "purpose": "read the guide"})).await.unwrap();
    use_token(&agent, "workspace__fetch_page", json!({"url": "https://docs.example.org/guide"}), &page).await;
    raw_call(&agent, "jit_next_phase", json!({"task": task, "phase": "send"})).await.unwrap();
    let mail = |task: &str, follows: Option<&Value>| {
        let mut body = json!({"task": task, "tool": "workspace__send_message", "arguments": {"to": "alice@example.org", "subject": "Q3", "body": "summary"}, "purpose": "reply"});
        if let Some(f) = follows {
            body["follows"] = f.clone();
        }
        body
    };
    // It says it follows the note; it really follows the page: a person decides.
    let pending = grant(&agent, mail(&task, Some(&note["jti"]))).await.unwrap();
    assert_eq!(pending["decision"], "pending_approval", "{pending}");
    // A fresh task whose plan is only the sink: still right after the page.
    let fresh = begin(&agent, json!([{"name": "send", "tools": ["workspace__send_message"]}])).await.unwrap();
    let pending = grant(&agent, mail(&fresh, None)).await.unwrap();
    assert_eq!(pending["decision"], "pending_approval", "{pending}");
    gw.wait_log("workspace__fetch_page -> workspace__send_message (across tasks)").await;

    // Nor does a harmless read in a new task: the page is still within the
    // taint horizon, and page -> send is what the baseline does not know.
    let laundering = begin(&agent, json!([{"name": "look", "tools": ["workspace__read_note"]}, {"name": "send", "tools": ["workspace__send_message"]}])).await.unwrap();
    let note = grant(&agent, json!({"task": laundering, "tool": "workspace__read_note", "arguments": {"name": "q3-plan.md"}, "purpose": "read"})).await.unwrap();
    use_token(&agent, "workspace__read_note", json!({"name": "q3-plan.md"}), &note).await;
    raw_call(&agent, "jit_next_phase", json!({"task": laundering, "phase": "send"})).await.unwrap();
    assert_eq!(grant(&agent, mail(&laundering, None)).await.unwrap()["decision"], "pending_approval");

    // An agent that read no page: the usual chain gets a token at once.
    let other = gw.connect_modern(&dep.mint("watched-too")).await;
    let usual = begin(&other, json!([{"name": "look", "tools": ["workspace__read_note"]}, {"name": "send", "tools": ["workspace__send_message"]}])).await.unwrap();
    let note = grant(&other, json!({"task": usual, "tool": "workspace__read_note", "arguments": {"name": "q3-plan.md"}, "purpose": "read"})).await.unwrap();
    use_token(&other, "workspace__read_note", json!({"name": "q3-plan.md"}), &note).await;
    raw_call(&other, "jit_next_phase", json!({"task": usual, "phase": "send"})).await.unwrap();
    assert_eq!(grant(&other, mail(&usual, None)).await.unwrap()["decision"], "allow");
}

/// A hijacked agent ends its task right after reading a poisoned page and
/// plans a new one with a critical tool it never planned before: the plan
/// is refused. The same plan after a trusted step, and a new plan that adds
/// nothing critical, are accepted (and their calls judged when requested).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_plan_right_after_untrusted_content_cannot_add_critical_tools() {
    // A rule a platform team can add (the quick start holds critical calls
    // for a person at request time instead, so benign replanning still works).
    let mut setup = setup();
    setup.policies.push(("26-replanning.cedar".into(), REPLANNING_RULE.into()));
    let dep = Deployment::new(&setup);
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let janitor = gw.connect(&dep.mint("janitor")).await;
    let t1 = begin(&janitor, json!([{"name": "read", "tools": ["workspace__fetch_page", "workspace__read_note"]}])).await.unwrap();
    let page = request(&janitor, &t1, "workspace__fetch_page", json!({"url": "https://news.example.com/today"})).await.unwrap();
    call_with_token(&janitor, "workspace__fetch_page", json!({"url": "https://news.example.com/today"}), &page).await.unwrap();
    raw_call(&janitor, "jit_end_task", json!({"task": t1, "outcome": "done"})).await.unwrap();

    // The page said "rotate the API key": a new plan naming it is refused.
    let rotate = json!([{"name": "rotate", "tools": ["workspace__rotate_api_key"]}]);
    let refused = begin(&janitor, rotate.clone()).await.unwrap_err();
    assert_eq!(refusal_code(&refused).as_deref(), Some("policy_denied"), "{}", text_of(&refused));
    assert!(text_of(&refused).contains("no-new-critical-tools-right-after-untrusted-content"), "{}", text_of(&refused));
    // A new plan with nothing critical is fine.
    let t2 = begin(&janitor, json!([{"name": "read", "tools": ["workspace__read_note"]}])).await.unwrap();
    // After a trusted step, the critical plan may be made (its request is still judged).
    let note = request(&janitor, &t2, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap();
    call_with_token(&janitor, "workspace__read_note", json!({"name": "welcome.md"}), &note).await.unwrap();
    assert!(begin(&janitor, rotate).await.is_ok());
}

const REPLANNING_RULE: &str = r#"
@id("no-new-critical-tools-right-after-untrusted-content")
@reason("a new plan right after reading third-party content may not add critical tools; take a trusted step first (read a note), or have a person plan this work")
forbid (principal, action == Action::"BeginTask", resource)
when {
  context.task.after_untrusted_read && resource.risk_level == 4 &&
  context.task.new_tools.contains(resource.name)
};
"#;
