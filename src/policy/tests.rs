use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::agent::{Agent, ToolPattern};
use crate::manifest::{Risk, ToolSpec};
use crate::token::Constraint;

fn agent(team: &str) -> AgentFacts {
    AgentFacts {
        agent: Agent {
            name: "triage".into(),
            id: "spiffe://x/agent/triage".into(),
            team: team.into(),
            environment: "development".into(),
            description: String::new(),
            allowed_tools: vec![ToolPattern::Server("ws".into())],
            attributes: BTreeMap::from([("tier".to_owned(), "gold".to_owned())]),
            baseline: Default::default(),
            issuers: vec![],
            source: Default::default(),
        },
        issuer: "dev".into(),
        claims: BTreeMap::from([("attested".to_owned(), "true".to_owned())]),
        quarantined: false,
    }
}

fn tool(name: &str, risk: Risk, env: &str) -> ToolFacts {
    ToolFacts::new(
        "ws",
        &ToolSpec {
            name: name.into(),
            risk,
            resource_class: "mail".into(),
            environment: env.into(),
            max_ttl: None,
            sensitive_args: vec!["to".into()],
            open_sensitive_args: vec![],
            untrusted_output: false,
            trusted_fields: Vec::new(),
            tags: vec!["sink".into()],
            args_schema: None,
            pin: String::new(),
            line: 1,
        },
    )
}

fn task() -> TaskFacts {
    TaskFacts {
        id: "task_1".into(),
        objective: "answer".into(),
        phase: "reply".into(),
        phase_index: 1,
        phase_count: 2,
        in_phase_plan: true,
        plan: vec!["ws__send".into()],
        after_untrusted_read: false,
        new_tools: vec![],
    }
}

fn request(to: &str) -> RequestFacts {
    RequestFacts {
        purpose: "reply to the customer".into(),
        constraints: BTreeMap::from([("to".to_owned(), Constraint::Eq(json!(to))), ("body".to_owned(), Constraint::Prefix("Hi".into()))]),
        ..Default::default()
    }
}

fn engine(files: &[(&str, &str)]) -> Result<PolicyEngine, PolicyErrors> {
    let sources = files.iter().map(|(n, t)| (PathBuf::from(format!("pol/{n}")), (*t).to_owned())).collect();
    PolicyEngine::from_sources(Path::new("pol"), sources)
}

fn ok_engine(files: &[(&str, &str)]) -> PolicyEngine {
    engine(files).unwrap_or_else(|e| panic!("policies should load:\n{e}"))
}

fn decide(e: &PolicyEngine, action: Action, a: &AgentFacts, t: &ToolFacts, r: &RequestFacts, hour: i64) -> Decision {
    let time = TimeFacts::at(1_795_564_800 + hour * 3600); // 2026-11-25 00:00Z + hour
    e.decide(&DecisionInput { action, agent: a, tool: t, time, task: &task(), request: Some(r), delegation: None })
}

#[test]
fn shipped_schema_parses() {
    assert!(schema().is_ok());
}

#[test]
fn every_attribute_of_the_mapping_fits_the_schema() {
    // These policies touch every entity and context attribute; strict
    // validation proves the names and types, and an allow proves the
    // runtime mapping conforms (a mismatch would deny). The conditions are
    // split over several forbids to stay within Cedar's recursion limit.
    let e = ok_engine(&[(
        "all.cedar",
        r#"permit(principal in Team::"support", action == Action::"Request", resource in Server::"ws");
            forbid(principal, action == Action::"Request", resource) unless { principal.name == "triage" && principal.id like "spiffe://*" && principal.team == "support" && principal.environment == "development" && principal.issuer == "dev" && !principal.quarantined && principal.hasTag("tier") && principal.getTag("tier") == "gold" };
            forbid(principal, action == Action::"Request", resource) unless { principal.claims.hasTag("attested") && principal.claims.getTag("attested") == "true" && resource.name == "ws__send" && resource.server == "ws" && resource.tool == "send" && resource.risk == "high" && resource.risk_level == 3 && resource.resource_class == "mail" && resource.environment == "production" && resource.tags.contains("sink") };
            forbid(principal, action == Action::"Request", resource) unless { resource.sensitive_args.contains("to") && !resource.untrusted_output && context.time.hour == 9 && context.time.minute == 0 && context.time.weekday == "Wed" && context.time.weekday_number == 3 && context.time.unix > 0 && context.task.id == "task_1" && context.task.objective == "answer" };
            forbid(principal, action == Action::"Request", resource) unless { context.task.phase == "reply" && context.task.phase_index == 1 && context.task.phase_count == 2 && context.task.in_phase_plan && context.task.plan.contains("ws__send") && context.purpose like "*customer*" && context.follows == "" && context.arguments.hasTag("to") && context.arguments.getTag("to") == "c@example.com" };
            forbid(principal, action == Action::"Request", resource) unless { !context.arguments.hasTag("body") && context.argument_names.contains("body") && context.open_arguments == ["body"] && !context.exact_arguments && !context.approval.granted && context.approval.group == "" && context.approval.approver == "" && !context.baseline.evaluated && !context.baseline.transition_known };
            forbid(principal, action == Action::"Request", resource) unless { context.baseline.score == 0 && context.baseline.explanation == "" && !context.taint.evaluated && !context.taint.sensitive_from_untrusted && context.taint.sources.isEmpty() && !context.break_glass.requested && context.break_glass.justification == "" };
            forbid(principal, action == Action::"Request", resource) unless { !context.end_user.client_trusted };"#,
    )]);
    let d = decide(&e, Action::Request, &agent("support"), &tool("send", Risk::High, "production"), &request("c@example.com"), 9);
    assert_eq!(d.outcome, Outcome::Allow, "errors: {:?}", d.errors);
    assert_eq!(d.policy_ids(), vec!["all.1"]);
    // Change one fact and a forbid fires.
    let d = decide(&e, Action::Request, &agent("support"), &tool("send", Risk::High, "production"), &request("x@evil.test"), 9);
    assert!(matches!(d.outcome, Outcome::Deny { policy: Some(_), .. }), "{:?}", d.outcome);
}

#[test]
fn default_deny_forbid_wins_and_reasons_are_shown() {
    let e = ok_engine(&[(
        "base.cedar",
        r#"
@id("support-may-send")
permit(principal in Team::"support", action == Action::"Request", resource);

@id("no-prod-after-hours")
@reason("production writes are allowed 08:00-18:00 UTC only")
forbid(principal, action == Action::"Request", resource)
when { resource.environment == "production" && (context.time.hour < 8 || context.time.hour >= 18) };
"#,
    )]);
    let support = agent("support");
    let prod = tool("send", Risk::High, "production");
    assert_eq!(decide(&e, Action::Request, &support, &prod, &request("a"), 9).outcome, Outcome::Allow);
    let d = decide(&e, Action::Request, &support, &prod, &request("a"), 20);
    assert_eq!(
        d.outcome,
        Outcome::Deny { policy: Some("no-prod-after-hours".into()), reason: "production writes are allowed 08:00-18:00 UTC only".into() }
    );
    assert_eq!(d.determining[0].line, 5);
    let d = decide(&e, Action::Request, &agent("sales"), &prod, &request("a"), 9);
    let Outcome::Deny { policy: None, reason } = d.outcome else { panic!("{:?}", d.outcome) };
    assert!(reason.contains("no policy permits agent `triage`"), "{reason}");
}

#[test]
fn approval_annotation_turns_allow_into_pending_until_granted() {
    let e = ok_engine(&[(
        "a.cedar",
        r#"@approval("oncall") permit(principal, action == Action::"Request", resource) when { resource.risk_level >= 3 };
           permit(principal, action == Action::"Request", resource) when { resource.risk_level < 3 };"#,
    )]);
    let a = agent("support");
    let high = tool("send", Risk::High, "development");
    let d = decide(&e, Action::Request, &a, &high, &request("a"), 9);
    assert_eq!(d.outcome, Outcome::NeedsApproval { group: "oncall".into() });
    let mut approved = request("a");
    approved.approval = ApprovalFacts { granted: true, group: "oncall".into(), approver: "alice".into() };
    assert_eq!(decide(&e, Action::Request, &a, &high, &approved, 9).outcome, Outcome::Allow);
    // An approval by another group does not count.
    approved.approval.group = "other".into();
    assert_eq!(decide(&e, Action::Request, &a, &high, &approved, 9).outcome, Outcome::NeedsApproval { group: "oncall".into() });
    assert_eq!(decide(&e, Action::Request, &a, &tool("read", Risk::Low, "development"), &request("a"), 9).outcome, Outcome::Allow);
}

#[test]
fn confirm_annotation_waits_for_the_end_user_or_its_fallback_group() {
    let e = ok_engine(&[(
        "c.cedar",
        r#"@confirm("oncall") permit(principal, action == Action::"Request", resource) when { context.taint.sensitive_from_untrusted };
           permit(principal, action == Action::"Request", resource) when { !context.taint.sensitive_from_untrusted };"#,
    )]);
    let (a, send) = (agent("support"), tool("send", Risk::High, "development"));
    let mut tainted = request("a");
    tainted.taint.sensitive_from_untrusted = true;
    assert_eq!(decide(&e, Action::Request, &a, &send, &tainted, 9).outcome, Outcome::NeedsConfirmation { fallback: "oncall".into() });
    // The end user's confirmation, or the fallback group's approval, allows it.
    let mut confirmed = tainted.clone();
    confirmed.confirmed_by_end_user = true;
    assert_eq!(decide(&e, Action::Request, &a, &send, &confirmed, 9).outcome, Outcome::Allow);
    let mut approved = tainted.clone();
    approved.approval = ApprovalFacts { granted: true, group: "oncall".into(), approver: "alice".into() };
    assert_eq!(decide(&e, Action::Request, &a, &send, &approved, 9).outcome, Outcome::Allow);
    approved.approval.group = "other".into();
    assert_eq!(decide(&e, Action::Request, &a, &send, &approved, 9).outcome, Outcome::NeedsConfirmation { fallback: "oncall".into() });
    // A confirmation counts only where a @confirm rule applies: an untainted
    // request is allowed anyway, and a confirmation cannot lift a forbid.
    assert_eq!(decide(&e, Action::Request, &a, &send, &request("a"), 9).outcome, Outcome::Allow);
    let strict = ok_engine(&[("s.cedar", r#"@id("never") forbid(principal, action == Action::"Request", resource) when { context.taint.sensitive_from_untrusted };
        @confirm("oncall") permit(principal, action == Action::"Request", resource);"#)]);
    assert!(matches!(decide(&strict, Action::Request, &a, &send, &confirmed, 9).outcome, Outcome::Deny { .. }));
    // Misplaced or doubled annotations are refused when the policies load.
    for (bad, want) in [
        ("@confirm(\"g\") forbid(principal, action, resource);\n", "@confirm belongs on a permit"),
        ("@confirm(\"g\") @approval(\"g\") permit(principal, action, resource);\n", "use one of @approval"),
        ("@confirm(\"\") permit(principal, action, resource);\n", "@confirm needs the group"),
    ] {
        let Err(e) = engine(&[("a.cedar", bad)]) else { panic!("{bad} should fail") };
        assert!(e.to_string().contains(want), "{e}");
    }
}

/// `@confirm("oncall")` alone lets any client that can ask answer for
/// oncall. Written with `context.end_user.client_trusted`, the same tainted
/// request asks the end user only where the agent file vouches for its
/// client, and is a pending approval of oncall for every other agent, which
/// its own client's confirmation cannot lift.
#[test]
fn policy_can_require_the_approval_path_unless_the_client_is_trusted() {
    let e = ok_engine(&[(
        "c.cedar",
        r#"@id("sink-end-user") @confirm("oncall")
           permit(principal, action == Action::"Request", resource) when { context.taint.sensitive_from_untrusted && context.end_user.client_trusted };
           @id("sink-person") @approval("oncall")
           permit(principal, action == Action::"Request", resource) when { context.taint.sensitive_from_untrusted && !context.end_user.client_trusted };
           permit(principal, action == Action::"Request", resource) when { !context.taint.sensitive_from_untrusted };"#,
    )]);
    let (a, send) = (agent("support"), tool("send", Risk::High, "development"));
    let mut tainted = request("audit@exfil.test");
    tainted.taint.sensitive_from_untrusted = true;
    let mut trusted = tainted.clone();
    trusted.end_user.client_trusted = true;
    let d = decide(&e, Action::Request, &a, &send, &trusted, 9);
    assert_eq!((d.outcome.clone(), d.policy_ids()), (Outcome::NeedsConfirmation { fallback: "oncall".into() }, vec!["sink-end-user".to_owned()]));
    trusted.confirmed_by_end_user = true;
    assert_eq!(decide(&e, Action::Request, &a, &send, &trusted, 9).outcome, Outcome::Allow);
    // The same request from an agent whose client nobody vouches for.
    let d = decide(&e, Action::Request, &a, &send, &tainted, 9);
    assert_eq!((d.outcome.clone(), d.policy_ids()), (Outcome::NeedsApproval { group: "oncall".into() }, vec!["sink-person".to_owned()]));
    let mut self_confirmed = tainted.clone();
    self_confirmed.confirmed_by_end_user = true;
    assert_eq!(decide(&e, Action::Request, &a, &send, &self_confirmed, 9).outcome, Outcome::NeedsApproval { group: "oncall".into() });
    let mut approved = tainted.clone();
    approved.approval = ApprovalFacts { granted: true, group: "oncall".into(), approver: "alice".into() };
    assert_eq!(decide(&e, Action::Request, &a, &send, &approved, 9).outcome, Outcome::Allow);
    // The rule as before: any client that can ask answers for oncall.
    let plain = ok_engine(&[("p.cedar", r#"@confirm("oncall") permit(principal, action == Action::"Request", resource) when { context.taint.sensitive_from_untrusted };"#)]);
    assert_eq!(decide(&plain, Action::Request, &a, &send, &tainted, 9).outcome, Outcome::NeedsConfirmation { fallback: "oncall".into() });
}

/// The shipped quick start and domain policies ask the end user about a
/// tainted sink only for an agent whose client is trusted.
#[test]
fn shipped_policies_ask_the_end_user_only_through_a_trusted_client() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut sources = read_dir_sources(&root.join("quickstart/policies")).unwrap_or_else(|e| panic!("{e}"));
    sources.extend(read_dir_sources(&root.join("domains/policies")).unwrap_or_else(|e| panic!("{e}")));
    let e = PolicyEngine::from_sources(&root, sources).unwrap_or_else(|e| panic!("{e}"));
    for (team, server, sink) in [("support", "workspace", "send_message"), ("finance", "bank", "send_money")] {
        let a = agent(team);
        let mut t = tool(sink, Risk::High, "development");
        t.server = server.into();
        t.exposed = format!("{server}__{sink}");
        let mut r = request("audit@exfil.test");
        r.taint = TaintFacts { evaluated: true, sensitive_from_untrusted: true, sources: vec!["jti-1".into()], ..TaintFacts::default() };
        r.baseline = BaselineFacts { evaluated: true, transition_known: true, score: 0, strong_evidence: false, explanation: String::new() };
        let untrusted = decide(&e, Action::Request, &a, &t, &r, 9);
        assert_eq!(untrusted.outcome, Outcome::NeedsApproval { group: "platform-oncall".into() }, "{team}: {:?}", untrusted.errors);
        r.end_user.client_trusted = true;
        let trusted = decide(&e, Action::Request, &a, &t, &r, 9);
        assert_eq!(trusted.outcome, Outcome::NeedsConfirmation { fallback: "platform-oncall".into() }, "{team}: {:?}", trusted.errors);
    }
}

#[test]
fn a_forbid_that_errors_denies() {
    let e = ok_engine(&[(
        "e.cedar",
        r#"permit(principal, action, resource);
           @id("overflowing")
           forbid(principal, action, resource) when { context.time.unix * 9223372036854775807 > 0 };"#,
    )]);
    let d = decide(&e, Action::Request, &agent("support"), &tool("send", Risk::High, "development"), &request("a"), 9);
    assert!(matches!(&d.outcome, Outcome::Deny { policy: Some(p), .. } if p == "overflowing"), "{:?}", d.outcome);
    assert!(!d.errors.is_empty());
}

#[test]
fn break_glass_is_its_own_action_and_ignores_approval_annotations() {
    let e = ok_engine(&[(
        "bg.cedar",
        r#"permit(principal, action == Action::"BreakGlass", resource) when { context.break_glass.justification != "" };
           forbid(principal, action, resource) when { principal.quarantined };"#,
    )]);
    let mut r = request("a");
    r.break_glass = Some("incident 42".into());
    let t = tool("send", Risk::High, "development");
    assert_eq!(decide(&e, Action::BreakGlass, &agent("support"), &t, &r, 9).outcome, Outcome::Allow);
    assert!(matches!(decide(&e, Action::Request, &agent("support"), &t, &r, 9).outcome, Outcome::Deny { .. }));
    let mut q = agent("support");
    q.quarantined = true;
    assert!(matches!(decide(&e, Action::BreakGlass, &q, &t, &r, 9).outcome, Outcome::Deny { policy: Some(_), .. }));
}

#[test]
fn begin_task_sees_the_plan() {
    let e = ok_engine(&[("b.cedar", r#"permit(principal, action == Action::"BeginTask", resource) when { context.task.plan.contains(resource.name) };"#)]);
    let d = e.decide(&DecisionInput {
        action: Action::BeginTask,
        agent: &agent("support"),
        tool: &tool("send", Risk::High, "development"),
        time: TimeFacts::at(0),
        task: &task(),
        request: None,
        delegation: None,
    });
    assert_eq!(d.outcome, Outcome::Allow, "{:?}", d.errors);
}

#[test]
fn syntax_errors_are_located() {
    let Err(e) = engine(&[("ok.cedar", "permit(principal, action, resource);\n"), ("bad.cedar", "permit(principal, action, resource);\n\npermit(principal, action resource);\n")]) else {
        panic!("should fail")
    };
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].file, PathBuf::from("pol/bad.cedar"));
    assert_eq!(e.0[0].line, 3, "{e}");
}

#[test]
fn unknown_attributes_fail_validation_with_location() {
    let Err(e) = engine(&[("v.cedar", "permit(principal, action, resource);\n\n\npermit(principal, action, resource) when { resource.owner == \"x\" };\n")]) else {
        panic!("should fail")
    };
    let text = e.to_string();
    assert!(text.contains("pol/v.cedar:4:") && text.contains("owner"), "{text}");
    let Err(e) = engine(&[("w.cedar", "permit(principal, action == Action::\"Delete\", resource);\n")]) else { panic!("should fail") };
    assert!(e.to_string().contains("Delete"), "{e}");
}

#[test]
fn duplicate_ids_misplaced_approval_and_empty_sets_are_refused() {
    let Err(e) = engine(&[("a.cedar", "@id(\"x\") permit(principal, action, resource);\n"), ("b.cedar", "@id(\"x\") permit(principal, action, resource);\n")]) else {
        panic!("should fail")
    };
    assert!(e.to_string().contains("already used at pol/a.cedar:1"), "{e}");
    let Err(e) = engine(&[("a.cedar", "@approval(\"g\") forbid(principal, action, resource);\n")]) else { panic!("should fail") };
    assert!(e.to_string().contains("@approval belongs on a permit"), "{e}");
    assert!(engine(&[]).is_err());
}

#[test]
fn action_names_parse() {
    assert_eq!("break-glass".parse::<Action>(), Ok(Action::BreakGlass));
    assert_eq!("BeginTask".parse::<Action>(), Ok(Action::BeginTask));
    assert!("delete".parse::<Action>().is_err());
}

#[test]
fn the_mapping_validates_against_the_schema_for_every_action() {
    use cedar_policy::{Entities, Request};
    let schema = schema().unwrap();
    let a = agent("support");
    let t = tool("send", Risk::High, "production");
    let mut r = request("c@example.com");
    r.break_glass = Some("INC-1".into());
    r.follows = Some("jti".into());
    r.taint.sources = vec!["jti".into()];
    for action in [Action::BeginTask, Action::Request, Action::BreakGlass] {
        let mut ents = entities::agent_entities(&a).unwrap();
        ents.push(entities::tool_entity(&t).unwrap());
        let context = if action == Action::BeginTask {
            entities::begin_task_context(TimeFacts::at(0), &task()).unwrap()
        } else {
            let args = entities::arguments_entity("request", &r.constraints).unwrap();
            let uid = args.uid();
            ents.push(args);
            entities::request_context(TimeFacts::at(0), &task(), &r, uid).unwrap()
        };
        let action_uid = entities::uid("Action", action.as_str()).unwrap();
        Request::new(entities::agent_uid(&a).unwrap(), action_uid, entities::tool_uid(&t).unwrap(), context, Some(&schema))
            .unwrap_or_else(|e| panic!("{action:?}: {e}"));
        Entities::from_entities(ents, Some(&schema)).unwrap_or_else(|e| panic!("{action:?}: {e}"));
    }
}

#[test]
fn slicing_by_scope_keeps_the_decision() {
    // Many team-scoped permits and a forbid for one agent: only the policies
    // whose scope admits the request are evaluated, with the same outcome.
    let mut text = String::new();
    for i in 0..50 {
        text.push_str(&format!("@id(\"team-{i}\") permit (principal in Team::\"team-{i}\", action == Action::\"Request\", resource);\n"));
    }
    text.push_str("@id(\"support\") permit (principal in Team::\"support\", action in [Action::\"Request\", Action::\"BeginTask\"], resource in Server::\"ws\");\n");
    text.push_str("@id(\"no-triage-send\") forbid (principal == Agent::\"spiffe://x/agent/triage\", action, resource == Tool::\"ws__send\");\n");
    text.push_str("@id(\"other-server\") forbid (principal, action, resource in Server::\"other\");\n");
    let e = ok_engine(&[("s.cedar", &text)]);
    let d = decide(&e, Action::Request, &agent("support"), &tool("read", Risk::Low, "development"), &request("a"), 9);
    assert_eq!((d.outcome.clone(), d.policy_ids()), (Outcome::Allow, vec!["support".to_owned()]));
    let d = decide(&e, Action::Request, &agent("support"), &tool("send", Risk::Low, "development"), &request("a"), 9);
    assert!(matches!(&d.outcome, Outcome::Deny { policy: Some(p), .. } if p == "no-triage-send"), "{:?}", d.outcome);
    let d = decide(&e, Action::Request, &agent("team-7"), &tool("read", Risk::Low, "development"), &request("a"), 9);
    assert_eq!(d.policy_ids(), vec!["team-7".to_owned()]);
    let d = decide(&e, Action::BreakGlass, &agent("support"), &tool("read", Risk::Low, "development"), &request("a"), 9);
    assert!(matches!(d.outcome, Outcome::Deny { policy: None, .. }));
}

#[test]
fn a_delegation_is_decided_per_tool_on_its_child_and_depth() {
    let e = ok_engine(&[(
        "d.cedar",
        r#"@id("delegate-within-the-team")
           permit (principal, action == Action::"Delegate", resource)
           when { context.delegation.child_team == principal.team && context.delegation.depth <= 2 && context.delegation.child != "" && context.task.plan.contains(resource.name) };"#,
    )]);
    let d = |child_team: &str, depth: i64| {
        let delegation = DelegationFacts { child: "reviewer".into(), child_team: child_team.into(), depth };
        let mut t = task();
        t.plan = vec!["ws__send".into()];
        e.decide(&DecisionInput {
            action: Action::Delegate,
            agent: &agent("support"),
            tool: &tool("send", Risk::High, "development"),
            time: TimeFacts::at(0),
            task: &t,
            request: None,
            delegation: Some(&delegation),
        })
    };
    assert_eq!(d("support", 1).outcome, Outcome::Allow, "{:?}", d("support", 1).errors);
    assert!(matches!(d("support", 3).outcome, Outcome::Deny { .. }), "too deep");
    assert!(matches!(d("billing", 1).outcome, Outcome::Deny { .. }), "another team");
    assert_eq!("delegate".parse::<Action>(), Ok(Action::Delegate));
}
