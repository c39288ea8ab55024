//! `jitgate policy test`: declarative cases decided by the gateway's own
//! decision ([`super::judge`]) against a policy directory, for CI.
//!
//! A case file is TOML, one `[[case]]` table per case. Its keys are the
//! flags of `policy explain` (`tainted`, `baseline_score`, `at`, ...), plus
//! `name`, the expectation (`expect`, `expect_policy`, `expect_group`) and
//! the agent and tool: a name from the deployment (`agent = "triage"`, with
//! `--config`), or described in place (`[case.agent]`, `[case.tool]`), so a
//! case file needs no deployment at all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;
use serde_json::json;

use super::{Judged, Question, judge};
use crate::cli::{CliError, Deployment};
use crate::policy::{Action, PolicyEngine, ToolFacts};

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Case files (TOML, `[[case]]` tables), or directories: their
    /// `*.cases.toml` files.
    #[arg(required = true)]
    pub cases: Vec<PathBuf>,
    /// The gateway config: its agent files, manifests and policy directory.
    /// Cases that name an agent or a tool need it.
    #[arg(long, env = "JITGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Decide with the policies in this directory instead of the config's
    /// (a change under review). Needed without --config.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Print one JSON object per case on stdout (for scripts).
    #[arg(long)]
    pub json: bool,
}

/// When a case gives no `at`: a Wednesday, 10:00 UTC (2026-01-07), so that
/// a case file gives the same answer whatever day CI runs it.
pub const DEFAULT_AT: i64 = 1_767_780_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    case: Vec<Case>,
}

/// One case: the request, its facts, and the decision expected.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// An agent file's name, or `{ name, team, environment, attributes }`.
    agent: toml::Value,
    /// A registered tool (`server__tool`), or `{ name, risk, ... }`.
    tool: toml::Value,
    #[serde(default = "request")]
    action: String,
    #[serde(default)]
    arguments: serde_json::Map<String, serde_json::Value>,
    /// RFC 3339; default [`DEFAULT_AT`].
    at: Option<String>,
    issuer: Option<String>,
    /// The current phase's tools; default the tool alone.
    plan: Option<Vec<String>>,
    #[serde(default = "yes")]
    in_plan: bool,
    #[serde(default)]
    previously_planned: bool,
    #[serde(default)]
    after_untrusted_read: bool,
    #[serde(default)]
    tainted: bool,
    #[serde(default)]
    destination_in_text: bool,
    #[serde(default)]
    text_from_third_party: bool,
    #[serde(default)]
    unknown_transition: bool,
    #[serde(default)]
    baseline_score: i64,
    #[serde(default)]
    strong_evidence: bool,
    approved_by_group: Option<String>,
    #[serde(default)]
    confirmed_by_end_user: bool,
    end_user_client_trusted: Option<bool>,
    #[serde(default)]
    justification: String,
    #[serde(default)]
    quarantined: bool,
    /// allow, deny, needs_approval, needs_confirmation or quarantine.
    expect: String,
    /// A policy id among those that decided.
    expect_policy: Option<String>,
    /// The group that approves (needs_approval) or is the fallback (needs_confirmation).
    expect_group: Option<String>,
}

fn request() -> String {
    "request".into()
}

fn yes() -> bool {
    true
}

const OUTCOMES: &[&str] = &["allow", "deny", "needs_approval", "needs_confirmation", "quarantine"];

/// An agent described in a case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InlineAgent {
    name: String,
    id: Option<String>,
    #[serde(default)]
    team: String,
    #[serde(default = "development")]
    environment: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    /// `[end_user] client_trusted` of its agent file.
    #[serde(default)]
    client_trusted: bool,
}

/// A tool described in a case, as its manifest would.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InlineTool {
    /// `server__tool`.
    name: String,
    risk: crate::manifest::Risk,
    #[serde(default)]
    resource_class: String,
    #[serde(default = "development")]
    environment: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    sensitive_args: Vec<String>,
    #[serde(default)]
    untrusted_output: bool,
}

fn development() -> String {
    "development".into()
}

/// What the cases are decided against.
struct Against {
    policy: PolicyEngine,
    deployment: Option<Deployment>,
}

/// One case's result.
struct Ran {
    file: PathBuf,
    name: String,
    expected: String,
    judged: Result<Judged, String>,
    failure: Option<String>,
}

pub fn test(a: TestArgs) -> Result<(), CliError> {
    let against = load(&a)?;
    let files = case_files(&a.cases)?;
    let mut ran = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| CliError::Usage(format!("cannot read case file {}: {e}", file.display())))?;
        let parsed: CaseFile = toml::from_str(&text).map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
        if parsed.case.is_empty() {
            return Err(CliError::Usage(format!("{} has no cases: write one `[[case]]` table per case (see `jitgate policy test --help`)", file.display())));
        }
        for case in parsed.case {
            ran.push(run_case(&against, file, case)?);
        }
    }
    report(&ran, a.json);
    let failed = ran.iter().filter(|r| r.failure.is_some()).count();
    if failed > 0 {
        return Err(CliError::CheckFailed(format!("{failed} of {} policy test case(s) failed", ran.len())));
    }
    Ok(())
}

fn load(a: &TestArgs) -> Result<Against, CliError> {
    let deployment = match &a.config {
        Some(c) => Some(Deployment::load(c).map_err(CliError::Config)?),
        None => None,
    };
    let policy = match (&a.policy, deployment.as_ref()) {
        (Some(dir), _) => PolicyEngine::load_dir(dir).map_err(|e| {
            CliError::Config(crate::source::SourceErrors(
                e.0.into_iter().map(|p| crate::source::SourceError { file: p.file, line: p.line, column: p.column, message: p.message }).collect(),
            ))
        })?,
        (None, Some(d)) => PolicyEngine::load_dir(&d.config.policy.dir).map_err(|e| CliError::Other(e.to_string()))?,
        (None, None) => return Err(CliError::Usage("give --config (the deployment's policies, agents and tools) or --policy DIR (a policy directory; cases then describe their agent and tool)".into())),
    };
    Ok(Against { policy, deployment })
}

/// The case files named, directories read for their `*.cases.toml`.
fn case_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let entries = std::fs::read_dir(p).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", p.display())))?;
            let mut found: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|f| f.to_string_lossy().ends_with(".cases.toml") && f.is_file()).collect();
            if found.is_empty() {
                return Err(CliError::Usage(format!("{} holds no *.cases.toml files", p.display())));
            }
            found.sort();
            files.extend(found);
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            return Err(CliError::Usage(format!("case file {} does not exist", p.display())));
        }
    }
    Ok(files)
}

fn run_case(against: &Against, file: &Path, case: Case) -> Result<Ran, CliError> {
    let at = |m: String| CliError::Usage(format!("{}: case `{}`: {m}", file.display(), case.name));
    if !OUTCOMES.contains(&case.expect.as_str()) {
        return Err(at(format!("expect = `{}`: use one of {}", case.expect, OUTCOMES.join(", "))));
    }
    let question = question_of(against, &case).map_err(at)?;
    let judged = as_the_gateway_would(&case, &question, judge(&against.policy, &question));
    let failure = failure_of(&case, &judged);
    Ok(Ran { file: file.to_owned(), name: case.name, expected: expectation(&case.expect, case.expect_policy.as_deref(), case.expect_group.as_deref()), judged: Ok(judged), failure })
}

/// What the gateway does around policy's decision (which `judge` gives):
/// an agent file's `allowed_tools` and the current phase's plan refuse a
/// request before policy is asked; a plan that policy would put to a person
/// or the end user is accepted (each request of the tool then is put so).
fn as_the_gateway_would(case: &Case, q: &Question, mut j: Judged) -> Judged {
    let refused = |rule: &str, reason: String| Judged {
        decision: crate::policy::Decision { outcome: crate::policy::Outcome::Deny { policy: Some(rule.to_owned()), reason: reason.clone() }, determining: Vec::new(), errors: Vec::new() },
        kind: "deny",
        word: "DENY",
        reason,
    };
    // An agent described in the case has no allowed_tools to check.
    if case.agent.is_str() && !q.agent.may_use(&q.tool.exposed) {
        return refused("allowed-tools", format!("`{}` is not in agent `{}`'s allowed_tools", q.tool.exposed, q.agent.name));
    }
    if q.action == Action::Request && !q.in_plan {
        return refused("phase-plan", format!("`{}` is not in the current phase's plan", q.tool.exposed));
    }
    if q.action == Action::BeginTask && matches!(j.kind, "needs_approval" | "needs_confirmation") {
        j.reason = format!("the plan is accepted; each request of the tool then waits ({})", j.reason);
        j.kind = "allow";
        j.word = "ALLOW";
    }
    j
}

/// The case as the decision's input.
fn question_of(against: &Against, case: &Case) -> Result<Question, String> {
    let action: Action = case.action.parse()?;
    let (agent, file_trusted) = agent_of(against, &case.agent)?;
    let tool = tool_of(against, &case.tool)?;
    let now = match &case.at {
        Some(t) => super::unix_of(t).ok_or_else(|| format!("at = `{t}`: write a time as 2026-11-25T22:00:00Z"))?,
        None => DEFAULT_AT,
    };
    let issuer = match &case.issuer {
        Some(i) => i.clone(),
        None => against.deployment.as_ref().and_then(|d| d.config.identity.issuers.first().map(|i| i.name.clone())).unwrap_or_default(),
    };
    Ok(Question {
        action,
        agent,
        issuer,
        quarantined: case.quarantined,
        client_trusted: case.end_user_client_trusted.unwrap_or(file_trusted),
        plan: case.plan.clone().unwrap_or_else(|| vec![tool.exposed.clone()]),
        tool,
        arguments: case.arguments.clone(),
        now,
        in_plan: case.in_plan,
        after_untrusted_read: case.after_untrusted_read,
        previously_planned: case.previously_planned,
        approved_by_group: case.approved_by_group.clone(),
        tainted: case.tainted,
        destination_in_text: case.destination_in_text,
        text_from_third_party: case.text_from_third_party,
        unknown_transition: case.unknown_transition,
        baseline_score: case.baseline_score,
        strong_evidence: case.strong_evidence,
        confirmed_by_end_user: case.confirmed_by_end_user,
        justification: case.justification.clone(),
    })
}

/// The agent, and whether its file vouches for its client.
fn agent_of(against: &Against, v: &toml::Value) -> Result<(crate::agent::Agent, bool), String> {
    match v {
        toml::Value::String(name) => {
            let d = against.deployment.as_ref().ok_or_else(|| format!("agent = `{name}` names an agent file: give --config, or describe the agent as [case.agent] with name and team"))?;
            let agent = d.agents.by_name(name).ok_or_else(|| format!("no agent named `{name}` in {}", d.config.agents_dir.display()))?;
            Ok((agent.clone(), d.agents.end_user(&agent.id).client_trusted))
        }
        toml::Value::Table(_) => {
            let a: InlineAgent = v.clone().try_into().map_err(|e| format!("[case.agent]: {e}"))?;
            let agent = crate::agent::Agent {
                id: a.id.unwrap_or_else(|| format!("spiffe://policy-test/agent/{}", a.name)),
                name: a.name,
                team: a.team,
                environment: a.environment,
                description: String::new(),
                allowed_tools: Vec::new(),
                attributes: a.attributes,
                baseline: Default::default(),
                issuers: Vec::new(),
                source: Default::default(),
            };
            Ok((agent, a.client_trusted))
        }
        _ => Err("agent must be an agent file's name or a table (name, team, environment, attributes, client_trusted)".into()),
    }
}

fn tool_of(against: &Against, v: &toml::Value) -> Result<ToolFacts, String> {
    let split = |name: &str| name.split_once(crate::manifest::NAMESPACE_SEPARATOR).map(|(s, t)| (s.to_owned(), t.to_owned())).ok_or_else(|| format!("tool `{name}` must be server__tool"));
    match v {
        toml::Value::String(name) => {
            let (server, tool) = split(name)?;
            let d = against.deployment.as_ref().ok_or_else(|| format!("tool = `{name}` names a registered tool: give --config, or describe the tool as [case.tool] with name and risk"))?;
            let spec = d.manifests.iter().find(|(m, _)| m.name == server).and_then(|(m, _)| m.tools.get(&tool)).ok_or_else(|| format!("`{name}` is not a registered tool"))?;
            Ok(ToolFacts::new(&server, spec))
        }
        toml::Value::Table(_) => {
            let t: InlineTool = v.clone().try_into().map_err(|e| format!("[case.tool]: {e}"))?;
            let (server, tool) = split(&t.name)?;
            let spec = crate::manifest::ToolSpec {
                name: tool,
                risk: t.risk,
                resource_class: t.resource_class,
                environment: t.environment,
                max_ttl: None,
                sensitive_args: t.sensitive_args,
                open_sensitive_args: Vec::new(),
                untrusted_output: t.untrusted_output,
                trusted_fields: Vec::new(),
                tags: t.tags,
                args_schema: None,
                pin: String::new(),
                line: 0,
            };
            Ok(ToolFacts::new(&server, &spec))
        }
        _ => Err("tool must be a registered tool's name (server__tool) or a table (name, risk, resource_class, environment, tags, sensitive_args, untrusted_output)".into()),
    }
}

fn expectation(kind: &str, policy: Option<&str>, group: Option<&str>) -> String {
    let mut s = kind.to_owned();
    if let Some(p) = policy {
        s.push_str(&format!(" by {p}"));
    }
    if let Some(g) = group {
        s.push_str(&format!(" (group {g})"));
    }
    s
}

fn group_of(j: &Judged) -> Option<&str> {
    match &j.decision.outcome {
        crate::policy::Outcome::NeedsApproval { group } => Some(group),
        crate::policy::Outcome::NeedsConfirmation { fallback } => Some(fallback),
        _ => None,
    }
}

/// The policies that decided, or the gateway's own rule that refused first.
fn policy_ids(j: &Judged) -> Vec<String> {
    let ids: Vec<String> = j.decision.determining.iter().map(|p| p.id.clone()).collect();
    match &j.decision.outcome {
        crate::policy::Outcome::Deny { policy: Some(rule), .. } if ids.is_empty() => vec![rule.clone()],
        _ => ids,
    }
}

/// Why the case failed, if it did.
fn failure_of(case: &Case, j: &Judged) -> Option<String> {
    let mut wrong = Vec::new();
    if j.kind != case.expect {
        wrong.push(format!("decision {} (expected {})", j.kind, case.expect));
    }
    if let Some(p) = &case.expect_policy
        && !policy_ids(j).contains(p)
    {
        wrong.push(format!("policy `{p}` did not decide it"));
    }
    if let Some(g) = &case.expect_group
        && group_of(j) != Some(g.as_str())
    {
        wrong.push(format!("approvers {} (expected {g})", group_of(j).unwrap_or("none")));
    }
    if !j.decision.errors.is_empty() {
        wrong.push(format!("policy evaluation errors: {}", j.decision.errors.join("; ")));
    }
    (!wrong.is_empty()).then(|| wrong.join("; "))
}

fn actual(j: &Judged) -> String {
    let ids = policy_ids(j);
    let mut s = j.kind.to_owned();
    if !ids.is_empty() {
        s.push_str(&format!(" by {}", ids.join(", ")));
    }
    if let Some(g) = group_of(j) {
        s.push_str(&format!(" (group {g})"));
    }
    s
}

fn report(ran: &[Ran], as_json: bool) {
    for r in ran {
        let Ok(j) = &r.judged else { continue };
        if as_json {
            let policies: Vec<_> = j.decision.determining.iter().map(|p| json!({"id": p.id, "file": p.file, "line": p.line, "effect": p.effect})).collect();
            outln!(
                "{}",
                json!({"file": r.file, "case": r.name, "passed": r.failure.is_none(), "expected": r.expected, "decision": j.kind, "approval_group": group_of(j), "policies": policies, "reason": j.reason, "failure": r.failure})
            );
            continue;
        }
        match &r.failure {
            None => outln!("ok    {} ({})", r.name, actual(j)),
            Some(why) => {
                outln!("FAIL  {} [{}]", r.name, r.file.display());
                outln!("      expected: {}", r.expected);
                outln!("      actual:   {}{}", actual(j), if j.reason.is_empty() { String::new() } else { format!(": {}", j.reason) });
                outln!("      why:      {why}");
                if j.decision.determining.is_empty() {
                    outln!("      policies: none applied (default deny)");
                }
                for p in &j.decision.determining {
                    outln!("      policy:   {} {} ({}:{})", p.effect, p.id, p.file.display(), p.line);
                }
            }
        }
    }
    if !as_json {
        let failed = ran.iter().filter(|r| r.failure.is_some()).count();
        outln!("{} case(s): {} passed, {failed} failed", ran.len(), ran.len() - failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
        @id("support-reads")
        permit (principal in Team::"support", action == Action::"Request", resource)
        when { resource.risk_level <= 2 };
        @id("critical-needs-oncall")
        @approval("oncall")
        permit (principal in Team::"support", action == Action::"Request", resource)
        when { resource.risk == "critical" };
        @id("no-tainted-sinks")
        forbid (principal, action == Action::"Request", resource)
        when { resource.tags.contains("sink") && context.taint.sensitive_from_untrusted };
        @id("critical-plans-need-oncall")
        @approval("oncall")
        permit (principal in Team::"support", action == Action::"BeginTask", resource)
        when { resource.risk == "critical" };
    "#;

    fn against() -> Against {
        let policy = PolicyEngine::from_sources(Path::new("pol"), vec![(PathBuf::from("pol/p.cedar"), POLICY.to_owned())]).unwrap_or_else(|e| panic!("{e}"));
        Against { policy, deployment: None }
    }

    fn run(toml_text: &str) -> Vec<Result<Ran, CliError>> {
        let parsed: CaseFile = toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}"));
        parsed.case.into_iter().map(|c| run_case(&against(), Path::new("t.cases.toml"), c)).collect()
    }

    const AGENT: &str = "agent = { name = \"triage\", team = \"support\" }";

    #[test]
    fn matching_expectations_pass_and_a_wrong_one_fails_with_what_decided() {
        let text = format!(
            r#"
            [[case]]
            name = "a low-risk read runs"
            {AGENT}
            tool = {{ name = "ws__read", risk = "low" }}
            expect = "allow"
            expect_policy = "support-reads"

            [[case]]
            name = "a tainted send is refused"
            {AGENT}
            tool = {{ name = "ws__send", risk = "medium", tags = ["sink"] }}
            tainted = true
            expect = "deny"
            expect_policy = "no-tainted-sinks"

            [[case]]
            name = "critical waits for oncall"
            {AGENT}
            tool = {{ name = "ws__delete", risk = "critical" }}
            expect = "needs_approval"
            expect_group = "oncall"

            [[case]]
            name = "wrong: the tainted send expected to run"
            {AGENT}
            tool = {{ name = "ws__send", risk = "medium", tags = ["sink"] }}
            tainted = true
            expect = "allow"
            "#
        );
        let ran: Vec<Ran> = run(&text).into_iter().map(|r| r.unwrap_or_else(|e| panic!("{e}"))).collect();
        let failures: Vec<Option<&str>> = ran.iter().map(|r| r.failure.as_deref()).collect();
        assert_eq!(&failures[..3], &[None, None, None], "{failures:?}");
        let why = failures[3].unwrap_or_else(|| panic!("a wrong expectation passed"));
        assert!(why.contains("decision deny (expected allow)"), "{why}");
        let Ok(j) = &ran[3].judged else { panic!("judged") };
        assert_eq!(actual(j), "deny by no-tainted-sinks");
    }

    #[test]
    fn the_wrong_policy_or_group_fails_even_with_the_right_outcome() {
        let text = format!(
            r#"
            [[case]]
            name = "critical by the wrong policy"
            {AGENT}
            tool = {{ name = "ws__delete", risk = "critical" }}
            expect = "needs_approval"
            expect_policy = "support-reads"
            expect_group = "security"
            "#
        );
        let ran = run(&text).remove(0).unwrap_or_else(|e| panic!("{e}"));
        let why = ran.failure.unwrap_or_default();
        assert!(why.contains("policy `support-reads` did not decide it") && why.contains("approvers oncall (expected security)"), "{why}");
    }

    #[test]
    fn what_the_gateway_refuses_before_policy_is_not_passed_by_policy() {
        let named = crate::agent::Agent {
            name: "triage".into(),
            id: "spiffe://t/agent/triage".into(),
            team: "support".into(),
            environment: "development".into(),
            description: String::new(),
            allowed_tools: vec![crate::agent::ToolPattern::Exact("ws__read".into())],
            attributes: Default::default(),
            baseline: Default::default(),
            issuers: vec![],
            source: Default::default(),
        };
        // Each case as the gateway would see it: `named` for an agent file's agent.
        let decide = |toml_text: &str, named_agent: bool| {
            let case = toml::from_str::<CaseFile>(toml_text).unwrap_or_else(|e| panic!("{e}")).case.remove(0);
            let inline = Case { agent: toml::Value::Table(toml::from_str("name = \"x\"\nteam = \"support\"").unwrap_or_else(|e| panic!("{e}"))), ..case };
            let mut q = question_of(&against(), &inline).unwrap_or_else(|e| panic!("{e}"));
            let case = if named_agent {
                q.agent = named.clone();
                Case { agent: toml::Value::String("triage".into()), ..inline }
            } else {
                inline
            };
            let j = as_the_gateway_would(&case, &q, judge(&against().policy, &q));
            (j.kind, policy_ids(&j), failure_of(&case, &j))
        };
        let case = |extra: &str| format!("[[case]]\nname = \"c\"\nagent = \"triage\"\n{extra}\n");
        let (kind, ids, failure) = decide(&case("tool = { name = \"ws__delete\", risk = \"low\" }\nexpect = \"allow\""), true);
        assert_eq!((kind, ids), ("deny", vec!["allowed-tools".to_owned()]), "a tool outside allowed_tools is refused before policy");
        assert!(failure.is_some());
        let (kind, ids, _) = decide(&case("tool = { name = \"ws__read\", risk = \"low\" }\nin_plan = false\nexpect = \"allow\""), false);
        assert_eq!((kind, ids), ("deny", vec!["phase-plan".to_owned()]), "a tool outside the phase's plan is refused before policy");
        let (kind, _, failure) = decide(&case("tool = { name = \"ws__delete\", risk = \"critical\" }\naction = \"begin-task\"\nexpect = \"needs_approval\""), false);
        assert_eq!(kind, "allow", "the gateway accepts a plan of a tool whose requests wait for a person");
        assert!(failure.is_some_and(|f| f.contains("(expected needs_approval)")));
        // The same agent's allowed tool passes to policy as ever.
        let (kind, ids, failure) = decide(&case("tool = { name = \"ws__read\", risk = \"low\" }\nexpect = \"allow\""), true);
        assert_eq!((kind, ids, failure), ("allow", vec!["support-reads".to_owned()], None));
    }

    #[test]
    fn a_case_that_cannot_be_read_says_which_and_why() {
        let err = |text: &str| match run(text).remove(0) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted: {text}"),
        };
        let e = err(&format!("[[case]]\nname = \"n\"\n{AGENT}\ntool = {{ name = \"ws__read\", risk = \"low\" }}\nexpect = \"permit\"\n"));
        assert!(e.contains("case `n`") && e.contains("allow, deny, needs_approval"), "{e}");
        let e = err("[[case]]\nname = \"n\"\nagent = \"triage\"\ntool = { name = \"ws__read\", risk = \"low\" }\nexpect = \"allow\"\n");
        assert!(e.contains("give --config"), "{e}");
        let e = err(&format!("[[case]]\nname = \"n\"\n{AGENT}\ntool = {{ name = \"read\", risk = \"low\" }}\nexpect = \"allow\"\n"));
        assert!(e.contains("server__tool"), "{e}");
        let e = err(&format!("[[case]]\nname = \"n\"\n{AGENT}\ntool = {{ name = \"ws__read\", risk = \"low\" }}\nat = \"yesterday\"\nexpect = \"allow\"\n"));
        assert!(e.contains("at = `yesterday`"), "{e}");
        // A key no case has is refused, not ignored (a typo would test nothing).
        let parsed: Result<CaseFile, _> = toml::from_str("[[case]]\nname = \"n\"\nagent = \"a\"\ntool = \"t\"\nexpect = \"allow\"\ntaint = true\n");
        assert!(parsed.is_err_and(|e| e.to_string().contains("taint")));
    }
}
