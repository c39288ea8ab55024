//! End-to-end: downstream servers that crash, hang, are missing, or change
//! their tool definitions. Each failure gets its own clear error, and other
//! calls, servers and sessions keep working.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test]
async fn a_crash_mid_call_is_an_error_not_a_hang_and_the_server_is_restarted() {
    let dep = Deployment::new(&Setup::default());
    dep.add_faulty_server(|m| m);
    let gw = Gateway::start(&dep);
    gw.wait_server("faulty", "ready").await;
    let tester = gw.connect(&dep.mint("tester")).await;

    let r = tokio::time::timeout(Duration::from_secs(20), call(&tester, "faulty__fault_crash", json!({}))).await.expect("must not hang").unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("downstream_crashed"), "{}", text_of(&r));
    assert!(text_of(&r).contains("restarting"), "{}", text_of(&r));

    // Other servers were never affected.
    let triage = gw.connect(&dep.mint("triage")).await;
    assert_eq!(call(&triage, "workspace__list_notes", json!({})).await.unwrap().is_error, Some(false));

    // The supervisor restarts the crashed server; the same session works again.
    let r = eventually(Duration::from_secs(30), || async {
        let r = call(&tester, "faulty__read_note", json!({"name": "welcome.md"})).await.ok()?;
        (r.is_error == Some(false)).then_some(r)
    })
    .await;
    assert!(text_of(&r).contains("Welcome"));
    assert!(gw.log().contains("downstream server unavailable"), "the crash must be logged");
}

#[tokio::test]
async fn a_hanging_call_times_out_and_is_cancelled_downstream() {
    let dep = Deployment::new(&Setup::default());
    dep.add_faulty_server(|m| m.replace("call_timeout = \"30s\"", "call_timeout = \"1s\""));
    let gw = Gateway::start(&dep);
    gw.wait_server("faulty", "ready").await;
    let tester = gw.connect(&dep.mint("tester")).await;

    let r = tokio::time::timeout(Duration::from_secs(20), call(&tester, "faulty__fault_hang", json!({}))).await.expect("gateway must time out").unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("downstream_timeout"), "{}", text_of(&r));
    assert!(text_of(&r).contains("within 1 s"), "{}", text_of(&r));
    // The connection survives a timeout: the next call on the same server works.
    let r = call(&tester, "faulty__list_notes", json!({})).await.unwrap();
    assert_eq!(r.is_error, Some(false), "{}", text_of(&r));
}

// Multi-threaded: the test's own client sends concurrent requests from spawned
// tasks; on a current-thread test runtime those were sometimes never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_per_session_are_limited_and_others_are_unaffected() {
    let dep = Deployment::new(&Setup { limits: "max_concurrent_calls_per_session = 2".into(), ..Setup::default() });
    dep.add_faulty_server(|m| m.replace("call_timeout = \"30s\"", "call_timeout = \"300s\""));
    let gw = Gateway::start(&dep);
    gw.wait_server("faulty", "ready").await;
    let tester = std::sync::Arc::new(gw.connect(&dep.mint("tester")).await);

    let mut tokens = Vec::new();
    for _ in 0..2 {
        let task = begin(&tester, json!([{"name": "p", "tools": ["faulty__fault_hang"]}])).await.unwrap();
        tokens.push(request(&tester, &task, "faulty__fault_hang", json!({})).await.unwrap());
    }
    let mut hung = Vec::new();
    for token in tokens {
        let t = tester.clone();
        hung.push(tokio::spawn(async move {
            let mut args = serde_json::Map::new();
            args.insert("_jit_token".into(), token.into());
            t.peer().call_tool_once(rmcp::model::CallToolRequestParams::new("faulty__fault_hang").with_arguments(args)).await
        }));
    }
    // Wait until the gateway has both hang calls (its debug log says so)
    // before probing: a probe in this session racing them could take the
    // second permit and get a hang call refused instead.
    eventually(Duration::from_secs(30), || {
        let received = gw.log().lines().filter(|l| l.contains("faulty__fault_hang") && l.contains("call received")).count();
        async move { (received == 2).then_some(()) }
    })
    .await;
    assert!(!gw.log().contains("too_many_concurrent_calls"), "the hang calls themselves must have been admitted");
    // Both are in flight: a third call in this session is refused at once.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let r = loop {
        let r = call(&tester, "faulty__list_notes", json!({})).await.unwrap();
        if refusal_code(&r).as_deref() == Some("too_many_concurrent_calls") {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "never limited: {}\nlog:\n{}", text_of(&r), gw.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(text_of(&r).contains("max_concurrent_calls_per_session"));
    // Another session of the same agent is not limited by this one.
    let other = gw.connect(&dep.mint("tester")).await;
    assert_eq!(call(&other, "faulty__list_notes", json!({})).await.unwrap().is_error, Some(false));
    // The agent gives up on the hung calls: dropping them sends notifications/cancelled,
    // jitgate cancels downstream and the session gets its permits back.
    for h in hung {
        h.abort();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let r = loop {
        let r = call(&tester, "faulty__list_notes", json!({})).await.unwrap();
        if r.is_error == Some(false) {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "permits never came back: {}\nlog:\n{}", text_of(&r), gw.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(text_of(&r).contains("welcome.md"));
}

#[tokio::test]
async fn a_server_missing_at_start_up_is_reported_and_others_keep_working() {
    let dep = Deployment::new(&Setup::default());
    let manifest = dep.add_faulty_server(|m| m);
    // Point the registered server at a command that does not exist.
    let text = std::fs::read_to_string(&manifest).unwrap();
    let bin = workspace_server_bin().display().to_string();
    std::fs::write(&manifest, text.replace(&format!("command = {:?}", bin), "command = \"/nonexistent/mcp-server\"")).unwrap();

    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    gw.wait_server("faulty", "unavailable").await;
    let log = gw.log();
    assert!(log.contains("cannot start `/nonexistent/mcp-server`"), "{log}");

    let triage = gw.connect(&dep.mint("triage")).await;
    assert_eq!(call(&triage, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap().is_error, Some(false));
    let tester = gw.connect(&dep.mint("tester")).await;
    assert!(tool_names(&tester).await.is_empty());
    let r = call(&tester, "faulty__list_notes", json!({})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("downstream_unavailable"), "{}", text_of(&r));
    assert!(text_of(&r).contains("/nonexistent/mcp-server"), "{}", text_of(&r));
}

#[tokio::test]
async fn a_pin_mismatch_withholds_only_that_tool_and_is_reported() {
    let dep = Deployment::new(&Setup::default());
    // Corrupt one pin: as if the server's send_message changed since review.
    dep.add_faulty_server(|m| {
        let at = m.find("[tools.\"send_message\"]").unwrap();
        let pin_at = at + m[at..].find("pin = \"sha256:").unwrap() + "pin = \"sha256:".len();
        let mut m = m;
        m.replace_range(pin_at..pin_at + 64, &"ab".repeat(32));
        m
    });
    let gw = Gateway::start(&dep);
    gw.wait_server("faulty", "ready").await;
    let tester = gw.connect(&dep.mint("tester")).await;
    let names = tool_names(&tester).await;
    assert!(!names.contains(&"faulty__send_message".to_owned()), "{names:?}");
    assert!(names.contains(&"faulty__read_note".to_owned()));
    let r = call(&tester, "faulty__send_message", json!({"to": "a@example.org", "subject": "s", "body": "b"})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("tool_withheld"), "{}", text_of(&r));
    assert!(gw.log().contains("withholding downstream tool"), "must be reported loudly");

    // `jitgate check` finds it too, with file and line.
    let out = std::process::Command::new(jitgate_bin()).args(["check", "--config"]).arg(&dep.config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("faulty.toml:") && stderr.contains("PIN MISMATCH") && stderr.contains("send_message"), "{stderr}");
}

#[tokio::test]
async fn a_rug_pull_at_run_time_withholds_the_changed_tool() {
    let dep = Deployment::new(&Setup::default());
    dep.add_faulty_server(|m| m);
    let gw = Gateway::start(&dep);
    gw.wait_server("faulty", "ready").await;
    let tester = gw.connect(&dep.mint("tester")).await;
    assert!(tool_names(&tester).await.contains(&"faulty__send_message".to_owned()));
    let ok = call(&tester, "faulty__send_message", json!({"to": "a@example.org", "subject": "s", "body": "b"})).await.unwrap();
    assert_eq!(ok.is_error, Some(false), "{}", text_of(&ok));

    // The server changes send_message's description and announces it.
    call(&tester, "faulty__fault_rugpull", json!({})).await.unwrap();
    let r = eventually(Duration::from_secs(10), || async {
        let r = call(&tester, "faulty__send_message", json!({"to": "a@example.org", "subject": "s", "body": "b"})).await.ok()?;
        (refusal_code(&r).as_deref() == Some("tool_withheld")).then_some(r)
    })
    .await;
    assert!(text_of(&r).contains("changed since the platform team pinned it"), "{}", text_of(&r));
    let names = tool_names(&tester).await;
    assert!(!names.contains(&"faulty__send_message".to_owned()) && names.contains(&"faulty__read_note".to_owned()), "{names:?}");
}

/// A rug pull of any part of the definition an agent's model reads, not only
/// the description: a "pre-approved" title, a read-only hint, an output schema
/// carrying an instruction, `_meta`. Each withholds the tool; the others stay.
async fn rug_pull_of(field: &str) {
    let dep = Deployment::new(&Setup::default());
    dep.add_faulty_server(|m| m);
    let gw = Gateway::start(&dep);
    gw.wait_server("faulty", "ready").await;
    let tester = gw.connect(&dep.mint("tester")).await;
    let send = json!({"to": "a@example.org", "subject": "s", "body": "b"});
    assert_eq!(call(&tester, "faulty__send_message", send.clone()).await.unwrap().is_error, Some(false));

    let r = call(&tester, "faulty__fault_rugpull", json!({"field": field})).await.unwrap();
    assert!(text_of(&r).contains(field), "{}", text_of(&r));
    let r = eventually(Duration::from_secs(10), || async {
        let r = call(&tester, "faulty__send_message", send.clone()).await.ok()?;
        (refusal_code(&r).as_deref() == Some("tool_withheld")).then_some(r)
    })
    .await;
    assert!(text_of(&r).contains("changed since the platform team pinned it"), "{field}: {}", text_of(&r));
    assert_eq!(call(&tester, "faulty__read_note", json!({"name": "welcome.md"})).await.unwrap().is_error, Some(false));
}

#[tokio::test]
async fn a_rug_pull_of_the_title_withholds_the_tool() {
    rug_pull_of("title").await;
}

#[tokio::test]
async fn a_rug_pull_of_the_annotations_withholds_the_tool() {
    rug_pull_of("annotations").await;
}

#[tokio::test]
async fn a_rug_pull_of_the_output_schema_withholds_the_tool() {
    rug_pull_of("outputSchema").await;
}

#[tokio::test]
async fn a_rug_pull_of_meta_withholds_the_tool() {
    rug_pull_of("_meta").await;
}

/// `manifest repin` after a reviewed change: it shows the changed tool, a dry
/// run writes nothing, the real run rewrites only that pin and keeps every
/// reviewed setting, and `check` is clean again.
#[tokio::test]
async fn repin_updates_only_changed_pins_and_keeps_the_review() {
    let dep = Deployment::new(&Setup::default());
    let manifest = dep.add_faulty_server(|m| {
        let mut m = m.replacen("risk = \"high\"", "risk = \"critical\" # reviewed by the platform team", 1);
        let at = m.find("[tools.\"send_message\"]").unwrap();
        let pin_at = at + m[at..].find("pin = \"sha256:").unwrap() + "pin = \"sha256:".len();
        m.replace_range(pin_at..pin_at + 64, &"ab".repeat(32));
        m
    });
    let before = std::fs::read_to_string(&manifest).unwrap();
    let repin = |dry: bool| {
        let mut c = std::process::Command::new(jitgate_bin());
        c.args(["manifest", "repin"]).arg(&manifest);
        if dry {
            c.arg("--dry-run");
        }
        c.output().unwrap()
    };
    let out = repin(true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("send_message: DEFINITION CHANGED") && stdout.contains("read_note: unchanged"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), before, "a dry run writes nothing");

    let out = repin(false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = std::fs::read_to_string(&manifest).unwrap();
    assert!(!after.contains(&"ab".repeat(32)), "the stale pin is replaced");
    assert!(after.contains("# reviewed by the platform team"), "comments and reviewed settings are kept");
    let changed: Vec<_> = before.lines().zip(after.lines()).filter(|(a, b)| a != b).collect();
    assert_eq!(changed.len(), 1, "exactly one line changes: {changed:?}");
    assert!(changed[0].1.starts_with("pin = \"sha256:"), "{changed:?}");

    let out = std::process::Command::new(jitgate_bin()).args(["check", "--config"]).arg(&dep.config).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The same rug pull when everything speaks 2026-07-28: the server announces
/// the change on jitgate's subscriptions/listen stream, jitgate withholds the
/// tool and tells the agent on the agent's own listen stream.
#[tokio::test]
async fn a_rug_pull_reaches_a_listening_2026_agent_through_a_2026_server() {
    let dep = Deployment::new(&Setup::default());
    dep.add_faulty_server(|m| m.replacen("[server]\n", "[server]\nprotocol = \"2026-07-28\"\n", 1));
    let gw = Gateway::start(&dep);
    gw.wait_server("faulty", "ready").await;
    gw.wait_log("protocol=2026-07-28").await;
    let tester = gw.connect_modern(&dep.mint("tester")).await;
    let filter = rmcp::model::SubscriptionFilter::builder().tools_list_changed().build();
    let mut changes = tester.peer().listen(filter).await.expect("jitgate accepts subscriptions/listen");
    assert_eq!(changes.acknowledged().tools_list_changed, Some(true));
    assert!(tool_names(&tester).await.contains(&"faulty__send_message".to_owned()));

    call(&tester, "faulty__fault_rugpull", json!({})).await.unwrap();
    let note = tokio::time::timeout(Duration::from_secs(20), changes.next()).await.expect("a list change in time").unwrap();
    assert!(matches!(note, Some(rmcp::model::ServerNotification::ToolListChangedNotification(_))), "{note:?}");
    let names = eventually(Duration::from_secs(30), || async {
        let names = tool_names(&tester).await;
        (!names.contains(&"faulty__send_message".to_owned())).then_some(names)
    })
    .await;
    assert!(names.contains(&"faulty__read_note".to_owned()), "{names:?}");
    let r = call(&tester, "faulty__send_message", json!({"to": "a@example.org", "subject": "s", "body": "b"})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("tool_withheld"), "{}", text_of(&r));
}

/// `subscriptions/listen` streams are bounded per agent, like handshake-era
/// sessions: of three streams one agent opens with a bound of two, exactly
/// one ends at once with an error that names the limit and what to do; the
/// other two, and another agent's stream, carry the next change.
#[tokio::test]
async fn listen_streams_are_bounded_per_agent_and_the_held_ones_still_carry_changes() {
    let dep = Deployment::new(&Setup { limits: "max_listen_streams_per_agent = 2".into(), ..Setup::default() });
    dep.add_faulty_server(|m| m);
    let gw = Gateway::start(&dep);
    gw.wait_server("faulty", "ready").await;
    let tester = gw.connect_modern(&dep.mint("tester")).await;
    let triage = gw.connect_modern(&dep.mint("triage")).await;
    let filter = rmcp::model::SubscriptionFilter::builder().tools_list_changed().build();
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(tester.peer().listen(filter.clone()).await.expect("jitgate acknowledges subscriptions/listen"));
    }
    // Each stream takes its place after its acknowledgement, so which of
    // the three is refused is not fixed; that one ends, the others wait.
    let (first, refused, _) = {
        let ends = streams.iter_mut().map(|s| Box::pin(s.next()));
        tokio::time::timeout(Duration::from_secs(60), futures::future::select_all(ends)).await.expect("the stream over the bound ends")
    };
    let message = first.expect_err("the stream over the bound ends with an error").to_string();
    assert!(message.contains("2 subscriptions/listen streams") && message.contains("limits.max_listen_streams_per_agent"), "{message}");
    assert!(message.contains("close streams it no longer reads"), "{message}");
    streams.remove(refused);
    // Another agent has places of its own.
    streams.push(triage.peer().listen(filter.clone()).await.expect("another agent listens"));

    call(&tester, "faulty__fault_rugpull", json!({})).await.unwrap();
    for s in &mut streams {
        let note = tokio::time::timeout(Duration::from_secs(20), s.next()).await.expect("a list change in time").unwrap();
        assert!(matches!(note, Some(rmcp::model::ServerNotification::ToolListChangedNotification(_))), "{note:?}");
    }
}

/// A downstream result over `limits.max_result_bytes` is dropped with its own
/// error instead of being relayed, scanned and stored; a result under the
/// limit from the same tool still arrives.
#[tokio::test]
async fn a_result_over_the_limit_is_refused_and_small_ones_still_arrive() {
    let dep = Deployment::new(&Setup { limits: "max_result_bytes = 4096".into(), ..Setup::default() });
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    std::fs::write(dep.workspace_state.join("notes/huge.md"), "x".repeat(20_000)).unwrap();
    let triage = gw.connect(&dep.mint("triage")).await;

    let r = call(&triage, "workspace__read_note", json!({"name": "huge.md"})).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("downstream_result_too_large"), "{}", text_of(&r));
    assert!(text_of(&r).contains("limits.max_result_bytes") && !text_of(&r).contains("xxxx"), "{}", text_of(&r));

    let r = call(&triage, "workspace__read_note", json!({"name": "welcome.md"})).await.unwrap();
    assert_eq!(r.is_error, Some(false), "{}", text_of(&r));
}
