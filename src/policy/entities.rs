//! The mapping from what jitgate knows (agent file, verified identity, tool
//! manifest, task, request) to Cedar entities and context.
//!
//! This is the only place that decides what a policy can see, so it is kept
//! pure and tested against the shipped schema: a mapping that does not fit
//! the schema is refused at decision time (and the request denied), never
//! evaluated half-typed.

use std::collections::{BTreeMap, HashMap, HashSet};

use cedar_policy::{Context, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use serde_json::Value;

use crate::agent::Agent;
use crate::manifest::ToolSpec;
use crate::token::{ArgConstraints, Constraint};

/// Who is asking: the agent file plus what its verified identity says.
#[derive(Debug, Clone)]
pub struct AgentFacts {
    pub agent: Agent,
    /// Name of the approved issuer that vouched for this session.
    pub issuer: String,
    /// Unregistered claims of the identity token, as strings.
    pub claims: BTreeMap<String, String>,
    pub quarantined: bool,
}

/// The tool asked for, from its manifest.
#[derive(Debug, Clone)]
pub struct ToolFacts {
    /// `server__tool`.
    pub exposed: String,
    pub server: String,
    pub spec: ToolSpec,
}

impl ToolFacts {
    pub fn new(server: &str, spec: &ToolSpec) -> Self {
        Self {
            exposed: format!("{server}{}{}", crate::manifest::NAMESPACE_SEPARATOR, spec.name),
            server: server.to_owned(),
            spec: spec.clone(),
        }
    }
}

/// The task as far as the decision is concerned.
#[derive(Debug, Clone, Default)]
pub struct TaskFacts {
    pub id: String,
    pub objective: String,
    pub phase: String,
    pub phase_index: usize,
    pub phase_count: usize,
    pub in_phase_plan: bool,
    pub plan: Vec<String>,
    /// The agent's last call, in any of its tasks, read untrusted output.
    pub after_untrusted_read: bool,
    /// `BeginTask`: the plan's tools that the plan of the agent's last call
    /// did not name (every tool for its first task); empty for requests.
    pub new_tools: Vec<String>,
}

/// The approval state of the exact request.
#[derive(Debug, Clone, Default)]
pub struct ApprovalFacts {
    pub granted: bool,
    pub group: String,
    pub approver: String,
}

/// The baseline verdict (filled by the baseline checks).
#[derive(Debug, Clone, Default)]
pub struct BaselineFacts {
    pub evaluated: bool,
    pub transition_known: bool,
    pub score: i64,
    /// See [`crate::baseline::profile::Assessment::strong_evidence`].
    pub strong_evidence: bool,
    pub explanation: String,
}

/// The taint verdict (filled by taint tracking).
#[derive(Debug, Clone, Default)]
pub struct TaintFacts {
    pub evaluated: bool,
    pub sensitive_from_untrusted: bool,
    /// A sink's other argument (a message body) carries a URL, an address
    /// or an account or phone number from untrusted content.
    pub destination_in_text: bool,
    /// Some other argument (a calendar event's title or place, a booking's
    /// hotel where the manifest marks nothing sensitive) repeats text from
    /// untrusted content: a phrase of three words or more found there word
    /// for word, or five words in a row of a longer text.
    pub text_from_third_party: bool,
    /// Those arguments.
    pub third_party_arguments: Vec<String>,
    pub sources: Vec<String>,
    /// Sensitive arguments admitted by a constraint whose values cannot be
    /// checked (counted as tainted).
    pub unverifiable: Vec<String>,
}

/// Who would answer a question asked through the agent's MCP client.
#[derive(Debug, Clone, Copy, Default)]
pub struct EndUserFacts {
    /// The platform team vouches that a person answers the agent's client
    /// (`[end_user] client_trusted` in its agent file). Otherwise whoever
    /// drives the client, possibly the agent itself, answers a `@confirm`
    /// question, so policy can send such requests to people instead.
    pub client_trusted: bool,
}

/// One intent request.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    pub purpose: String,
    pub follows: Option<String>,
    pub constraints: ArgConstraints,
    pub approval: ApprovalFacts,
    pub baseline: BaselineFacts,
    pub taint: TaintFacts,
    /// The justification, when this is a break-glass request.
    pub break_glass: Option<String>,
    /// Does the justification repeat content from untrusted output?
    pub break_glass_justification_tainted: bool,
    /// The end user confirmed exactly this request through the agent's MCP
    /// client (an answer to jitgate's own question, never an argument).
    pub confirmed_by_end_user: bool,
    /// Who would answer that question.
    pub end_user: EndUserFacts,
}

/// The decision time, split the way rules use it (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeFacts {
    pub unix: i64,
    pub hour: i64,
    pub minute: i64,
    /// 1 = Monday .. 7 = Sunday.
    pub weekday_number: i64,
}

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

impl TimeFacts {
    pub fn at(unix: i64) -> Self {
        let days = unix.div_euclid(86_400);
        let secs = unix.rem_euclid(86_400);
        // 1970-01-01 was a Thursday (weekday 4).
        let weekday_number = (days + 3).rem_euclid(7) + 1;
        Self { unix, hour: secs / 3600, minute: (secs % 3600) / 60, weekday_number }
    }

    pub fn weekday(&self) -> &'static str {
        let i = usize::try_from(self.weekday_number - 1).unwrap_or(0);
        WEEKDAYS.get(i).copied().unwrap_or("Mon")
    }
}

/// The schema's entity type names, parsed once: parsing a name runs the
/// Cedar parser, which was most of the cost of building a request.
pub(crate) fn type_name(name: &str) -> Result<EntityTypeName, String> {
    static NAMES: std::sync::OnceLock<HashMap<&'static str, EntityTypeName>> = std::sync::OnceLock::new();
    let names = NAMES.get_or_init(|| {
        ["Agent", "Team", "Server", "Tool", "Claims", "Arguments", "Action"]
            .into_iter()
            .filter_map(|n| n.parse().ok().map(|t| (n, t)))
            .collect()
    });
    match names.get(name) {
        Some(t) => Ok(t.clone()),
        None => name.parse().map_err(|e| format!("entity type `{name}`: {e}")),
    }
}

/// The uid `Type::"id"`.
pub fn uid(ty: &str, id: &str) -> Result<EntityUid, String> {
    Ok(EntityUid::from_type_name_and_id(type_name(ty)?, EntityId::new(id)))
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

fn set_of(items: impl IntoIterator<Item = String>) -> RestrictedExpression {
    RestrictedExpression::new_set(items.into_iter().map(RestrictedExpression::new_string))
}

fn record(pairs: Vec<(&str, RestrictedExpression)>) -> Result<RestrictedExpression, String> {
    RestrictedExpression::new_record(pairs.into_iter().map(|(k, v)| (k.to_owned(), v))).map_err(|e| e.to_string())
}

fn long(n: usize) -> RestrictedExpression {
    RestrictedExpression::new_long(i64::try_from(n).unwrap_or(i64::MAX))
}

/// A JSON value as a tag string: strings as they are, anything else as JSON text.
fn tag_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn tags(map: impl IntoIterator<Item = (String, String)>) -> HashMap<String, RestrictedExpression> {
    map.into_iter().map(|(k, v)| (k, RestrictedExpression::new_string(v))).collect()
}

/// The agent's uid.
pub fn agent_uid(a: &AgentFacts) -> Result<EntityUid, String> {
    uid("Agent", &a.agent.id)
}

/// The tool's uid.
pub fn tool_uid(t: &ToolFacts) -> Result<EntityUid, String> {
    uid("Tool", &t.exposed)
}

/// The principal and the entities it refers to (its claims).
pub fn agent_entities(a: &AgentFacts) -> Result<Vec<Entity>, String> {
    let claims_uid = uid("Claims", &a.agent.id)?;
    let claims = Entity::new_with_tags(claims_uid.clone(), HashMap::new(), HashSet::new(), tags(a.claims.clone()))
        .map_err(|e| e.to_string())?;
    let mut parents = HashSet::new();
    if !a.agent.team.is_empty() {
        parents.insert(uid("Team", &a.agent.team)?);
    }
    let attrs: HashMap<String, RestrictedExpression> = [
        ("name", string(&a.agent.name)),
        ("id", string(&a.agent.id)),
        ("team", string(&a.agent.team)),
        ("environment", string(&a.agent.environment)),
        ("issuer", string(&a.issuer)),
        ("quarantined", RestrictedExpression::new_bool(a.quarantined)),
        ("claims", RestrictedExpression::new_entity_uid(claims_uid)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let agent = Entity::new_with_tags(agent_uid(a)?, attrs, parents, tags(a.agent.attributes.clone())).map_err(|e| e.to_string())?;
    Ok(vec![agent, claims])
}

/// The resource entity.
pub fn tool_entity(t: &ToolFacts) -> Result<Entity, String> {
    let spec = &t.spec;
    let attrs: HashMap<String, RestrictedExpression> = [
        ("name", string(&t.exposed)),
        ("server", string(&t.server)),
        ("tool", string(&spec.name)),
        ("risk", string(spec.risk.as_str())),
        ("risk_level", RestrictedExpression::new_long(spec.risk.level())),
        ("resource_class", string(&spec.resource_class)),
        ("environment", string(&spec.environment)),
        ("tags", set_of(spec.tags.iter().cloned())),
        ("sensitive_args", set_of(spec.sensitive_args.iter().cloned())),
        ("untrusted_output", RestrictedExpression::new_bool(spec.untrusted_output)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let parents = HashSet::from([uid("Server", &t.server)?]);
    Entity::new(tool_uid(t)?, attrs, parents).map_err(|e| e.to_string())
}

/// The arguments entity of one request, named after the request's id.
pub fn arguments_entity(request_id: &str, constraints: &ArgConstraints) -> Result<Entity, String> {
    let fixed = constraints.iter().filter_map(|(name, c)| match c {
        Constraint::Eq(v) => Some((name.clone(), tag_text(v))),
        _ => None,
    });
    Entity::new_with_tags(uid("Arguments", request_id)?, HashMap::new(), HashSet::new(), tags(fixed)).map_err(|e| e.to_string())
}

fn time_record(t: TimeFacts) -> Result<RestrictedExpression, String> {
    record(vec![
        ("unix", RestrictedExpression::new_long(t.unix)),
        ("hour", RestrictedExpression::new_long(t.hour)),
        ("minute", RestrictedExpression::new_long(t.minute)),
        ("weekday", string(t.weekday())),
        ("weekday_number", RestrictedExpression::new_long(t.weekday_number)),
    ])
}

fn task_record(t: &TaskFacts) -> Result<RestrictedExpression, String> {
    record(vec![
        ("id", string(&t.id)),
        ("objective", string(&t.objective)),
        ("phase", string(&t.phase)),
        ("phase_index", long(t.phase_index)),
        ("phase_count", long(t.phase_count)),
        ("in_phase_plan", RestrictedExpression::new_bool(t.in_phase_plan)),
        ("plan", set_of(t.plan.iter().cloned())),
        ("after_untrusted_read", RestrictedExpression::new_bool(t.after_untrusted_read)),
        ("new_tools", set_of(t.new_tools.iter().cloned())),
    ])
}

/// A delegation as policy sees it (`context.delegation` of `Delegate`).
#[derive(Debug, Clone, Default)]
pub struct DelegationFacts {
    /// The child agent's name and team.
    pub child: String,
    pub child_team: String,
    /// 1 for a task the delegating agent began itself, 2 for a delegation
    /// of a delegated task, and so on.
    pub depth: i64,
}

/// Context of a `Delegate` decision: the delegating task, and the delegation.
pub fn delegate_context(time: TimeFacts, task: &TaskFacts, d: &DelegationFacts) -> Result<Context, String> {
    let delegation = record(vec![("child", string(&d.child)), ("child_team", string(&d.child_team)), ("depth", RestrictedExpression::new_long(d.depth))])?;
    Context::from_pairs([("time".to_owned(), time_record(time)?), ("task".to_owned(), task_record(task)?), ("delegation".to_owned(), delegation)]).map_err(|e| e.to_string())
}

/// Context of a `BeginTask` decision.
pub fn begin_task_context(time: TimeFacts, task: &TaskFacts) -> Result<Context, String> {
    Context::from_pairs([("time".to_owned(), time_record(time)?), ("task".to_owned(), task_record(task)?)]).map_err(|e| e.to_string())
}

/// Context of a `Request` or `BreakGlass` decision; `arguments` is the uid of
/// the entity made by [`arguments_entity`].
pub fn request_context(time: TimeFacts, task: &TaskFacts, r: &RequestFacts, arguments: EntityUid) -> Result<Context, String> {
    let open: Vec<String> = r.constraints.iter().filter(|(_, c)| !matches!(c, Constraint::Eq(_))).map(|(n, _)| n.clone()).collect();
    let pairs = vec![
        ("time", time_record(time)?),
        ("task", task_record(task)?),
        ("purpose", string(&r.purpose)),
        ("follows", string(r.follows.as_deref().unwrap_or(""))),
        ("arguments", RestrictedExpression::new_entity_uid(arguments)),
        ("argument_names", set_of(r.constraints.keys().cloned())),
        ("exact_arguments", RestrictedExpression::new_bool(open.is_empty())),
        ("open_arguments", set_of(open)),
        ("argument_kinds", set_of(r.constraints.iter().map(|(n, c)| format!("{n}:{}", c.kind())))),
        (
            "approval",
            record(vec![
                ("granted", RestrictedExpression::new_bool(r.approval.granted)),
                ("group", string(&r.approval.group)),
                ("approver", string(&r.approval.approver)),
            ])?,
        ),
        (
            "baseline",
            record(vec![
                ("evaluated", RestrictedExpression::new_bool(r.baseline.evaluated)),
                ("transition_known", RestrictedExpression::new_bool(r.baseline.transition_known)),
                ("score", RestrictedExpression::new_long(r.baseline.score)),
                ("strong_evidence", RestrictedExpression::new_bool(r.baseline.strong_evidence)),
                ("explanation", string(&r.baseline.explanation)),
            ])?,
        ),
        (
            "taint",
            record(vec![
                ("evaluated", RestrictedExpression::new_bool(r.taint.evaluated)),
                ("sensitive_from_untrusted", RestrictedExpression::new_bool(r.taint.sensitive_from_untrusted)),
                ("destination_in_text", RestrictedExpression::new_bool(r.taint.destination_in_text)),
                ("text_from_third_party", RestrictedExpression::new_bool(r.taint.text_from_third_party)),
                ("third_party_arguments", set_of(r.taint.third_party_arguments.iter().cloned())),
                ("sources", set_of(r.taint.sources.iter().cloned())),
                ("unverifiable", set_of(r.taint.unverifiable.iter().cloned())),
            ])?,
        ),
        (
            "break_glass",
            record(vec![
                ("requested", RestrictedExpression::new_bool(r.break_glass.is_some())),
                ("justification", string(r.break_glass.as_deref().unwrap_or(""))),
                ("justification_tainted", RestrictedExpression::new_bool(r.break_glass_justification_tainted)),
            ])?,
        ),
        ("end_user", record(vec![("client_trusted", RestrictedExpression::new_bool(r.end_user.client_trusted))])?),
    ];
    Context::from_pairs(pairs.into_iter().map(|(k, v)| (k.to_owned(), v))).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_facts_split_utc() {
        // 2026-11-25T11:30:00Z is a Wednesday.
        let t = TimeFacts::at(1_795_606_200);
        assert_eq!((t.hour, t.minute, t.weekday()), (11, 30, "Wed"));
        assert_eq!(TimeFacts::at(0).weekday(), "Thu");
        assert_eq!(TimeFacts::at(-1).hour, 23);
        assert_eq!(TimeFacts::at(3 * 86_400 + 5).weekday(), "Sun");
    }

    #[test]
    fn only_fixed_arguments_become_tags() {
        let mut c = ArgConstraints::new();
        c.insert("to".into(), Constraint::Eq(Value::String("a@b".into())));
        c.insert("n".into(), Constraint::Eq(serde_json::json!(3)));
        c.insert("path".into(), Constraint::Prefix("/x/".into()));
        let e = arguments_entity("r1", &c).unwrap_or_else(|e| panic!("{e}"));
        assert!(e.tag("to").is_some() && e.tag("n").is_some());
        assert!(e.tag("path").is_none());
    }
}
