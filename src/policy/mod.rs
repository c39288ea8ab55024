//! Policy as code: Cedar decides every task plan, intent request and
//! break-glass request.
//!
//! A policy set is a directory of `*.cedar` files, validated against jitgate's
//! schema ([`SCHEMA_TEXT`]) before it is used. Default deny; a `forbid`
//! always wins; a `forbid` that cannot be evaluated denies too (Cedar itself
//! would skip an erroring policy, which for a `forbid` means allowing). A
//! `permit` annotated `@approval("GROUP")` turns its allow into a pending
//! approval; `@confirm("GROUP")` lets the end user confirm the exact request
//! through the agent's MCP client instead (GROUP approves when the client
//! cannot ask); `@reason("…")` is the sentence an agent sees when a policy
//! denies it; `@id("…")` names a policy (otherwise `<file>.<n>`).
//!
//! `@confirm` does not make GROUP a gate: whoever drives the agent's client
//! answers, and an agent whose client declares elicitation answers its own
//! question. A rule that should reach GROUP unless a person answers the
//! client says so with `context.end_user.client_trusted` (the agent file's
//! `[end_user] client_trusted`) on its `@confirm` permit and an `@approval`
//! permit for the other agents; the quick start's `50-untrusted-sources.cedar`
//! is written that way.
//!
//! What the agent is told is the policy id and its reason, never policy text.

pub mod approvals;
pub mod entities;
pub mod invariants;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use std::sync::Arc;

use cedar_policy::{
    ActionConstraint, Authorizer, Decision as CedarDecision, Effect, Entities, EntityUid, Policy, PolicyId, PolicySet,
    PrincipalConstraint, Request, ResourceConstraint, Schema, ValidationMode, Validator,
};
use miette::Diagnostic;
use sha2::{Digest, Sha256};

pub use entities::{AgentFacts, ApprovalFacts, BaselineFacts, DelegationFacts, EndUserFacts, RequestFacts, TaintFacts, TaskFacts, TimeFacts, ToolFacts};

/// jitgate's Cedar schema; policies are validated against it.
pub const SCHEMA_TEXT: &str = include_str!("jitgate.cedarschema");

/// Annotation: the sentence an agent sees when this policy denies it.
pub const REASON_ANNOTATION: &str = "reason";
/// Annotation: this permit needs a person of the named group to approve.
pub const APPROVAL_ANNOTATION: &str = "approval";
/// Annotation: this permit needs the end user (through the agent's MCP
/// client) to confirm the exact request; the value is the group that
/// approves instead when the client cannot ask its user. The group is not
/// asked when the client can: who answers is whoever drives the client, the
/// agent itself where nobody else does (see `context.end_user.client_trusted`).
pub const CONFIRM_ANNOTATION: &str = "confirm";
/// Annotation: when this forbid denies, quarantine the agent.
pub const QUARANTINE_ANNOTATION: &str = "quarantine";
/// Annotation: the policy's id.
pub const ID_ANNOTATION: &str = "id";

/// A problem in a policy file, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no place in a file.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.column, self.message)
        }
    }
}

/// A list of policy errors, shown one per line.
#[derive(Debug, Clone)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// Where a policy is and what it says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    pub id: String,
    pub file: PathBuf,
    pub line: usize,
    pub effect: &'static str,
    pub reason: Option<String>,
    pub approval: Option<String>,
    /// `@confirm("group")`: the end user confirms; `group` approves when the
    /// client cannot ask.
    pub confirm: Option<String>,
    /// `@quarantine`: when this forbid denies, the agent is quarantined.
    pub quarantine: bool,
}

impl PolicyInfo {
    /// Can an approval by a person of `group` satisfy this rule? Either it
    /// asks for that group's approval, or for the end user's confirmation
    /// with that group as the fallback.
    pub fn approvable_by(&self, group: &str) -> bool {
        self.approval.as_deref() == Some(group) || self.confirm.as_deref() == Some(group)
    }
}

/// The action being decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    BeginTask,
    Request,
    BreakGlass,
    /// Hand part of a task to another agent (`jit_delegate`), per tool.
    Delegate,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::BeginTask => "BeginTask",
            Action::Request => "Request",
            Action::BreakGlass => "BreakGlass",
            Action::Delegate => "Delegate",
        }
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "begintask" => Ok(Action::BeginTask),
            "request" => Ok(Action::Request),
            "breakglass" => Ok(Action::BreakGlass),
            "delegate" => Ok(Action::Delegate),
            _ => Err(format!("unknown action `{s}`; use begin-task, request, break-glass or delegate")),
        }
    }
}

/// Everything one decision looks at.
#[derive(Debug, Clone)]
pub struct DecisionInput<'a> {
    pub action: Action,
    pub agent: &'a AgentFacts,
    pub tool: &'a ToolFacts,
    pub time: TimeFacts,
    pub task: &'a TaskFacts,
    /// Absent for `BeginTask` and `Delegate`.
    pub request: Option<&'a RequestFacts>,
    /// `Delegate` only: to whom, how deep.
    pub delegation: Option<&'a DelegationFacts>,
}

/// What policy says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    /// Allowed only once a person of `group` approves this exact request.
    NeedsApproval { group: String },
    /// Allowed once the end user confirms this exact request through the
    /// agent's MCP client; when the client cannot ask, a person of
    /// `fallback` approves instead.
    NeedsConfirmation { fallback: String },
    /// `policy` is the forbid that denied, or `None` when nothing permitted.
    Deny { policy: Option<String>, reason: String },
}

/// What the gateway does with a request: policy's outcome, except that an
/// agent that drifted (see [`crate::baseline::profile::drifted`]) or was
/// denied by a forbid annotated `@quarantine` is quarantined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Quarantine { reason: String },
    Outcome(Outcome),
}

/// A decision with the policies that determined it.
#[derive(Debug, Clone)]
pub struct Decision {
    pub outcome: Outcome,
    /// The policies that determined the outcome (the satisfied forbids on a
    /// deny, the satisfied permits on an allow).
    pub determining: Vec<PolicyInfo>,
    /// Evaluation errors, by policy id (for operators, not agents).
    pub errors: Vec<String>,
}

impl Decision {
    fn deny(policy: Option<String>, reason: String, determining: Vec<PolicyInfo>, errors: Vec<String>) -> Self {
        Self { outcome: Outcome::Deny { policy, reason }, determining, errors }
    }

    /// The determining policy ids, for logs.
    pub fn policy_ids(&self) -> Vec<String> {
        self.determining.iter().map(|p| p.id.clone()).collect()
    }
}

/// Which policies can apply to one (action, principal, resource): the
/// decision only evaluates those (see [`PolicyEngine::slice`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SliceKey {
    action: Action,
    agent: String,
    team: String,
    tool: String,
    server: String,
}

/// Bound on cached slices; the cache is cleared when it is full.
const SLICE_CACHE_MAX: usize = 4096;

/// A loaded, validated policy set.
pub struct PolicyEngine {
    policies: PolicySet,
    /// Per (action, agent, tool) the policies whose scope admits it. A
    /// policy whose scope excludes a request can neither be satisfied nor
    /// error (the scope is checked before the conditions), so evaluating
    /// only the slice gives the same decision, determining policies and
    /// errors, at a cost that follows the slice, not the whole set.
    slices: std::sync::Mutex<HashMap<SliceKey, Arc<PolicySet>>>,
    info: HashMap<String, PolicyInfo>,
    authorizer: Authorizer,
    /// SHA-256 over the files' names and contents, to notice changes.
    pub fingerprint: [u8; 32],
    /// Where the policies came from.
    pub dir: PathBuf,
}

impl fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyEngine").field("dir", &self.dir).field("policies", &self.info.len()).finish()
    }
}

/// The schema, parsed. The text is compiled in, so failure is a build defect;
/// it is still reported as an error rather than a panic.
pub fn schema() -> Result<Schema, String> {
    Schema::from_cedarschema_str(SCHEMA_TEXT).map(|(s, _warnings)| s).map_err(|e| format!("built-in Cedar schema: {e}"))
}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let upto = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = upto.matches('\n').count() + 1;
    let col = upto.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

/// Turn a Cedar diagnostic into located errors (one per label, or one without a place).
fn diagnostic_errors(file: &Path, text: &str, d: &dyn Diagnostic, message: String) -> Vec<PolicyError> {
    let mut first = d.labels().and_then(|mut l| l.next());
    let help = d.help().map(|h| format!(" (help: {h})")).unwrap_or_default();
    let (line, column) = first.take().map(|l| line_col(text, l.offset())).unwrap_or((0, 0));
    vec![PolicyError { file: file.to_owned(), line, column, message: format!("{message}{help}") }]
}

/// Read the `*.cedar` files of a directory, sorted by name.
pub fn read_dir_sources(dir: &Path) -> Result<Vec<(PathBuf, String)>, PolicyErrors> {
    let err = |message: String| PolicyErrors(vec![PolicyError { file: dir.to_owned(), line: 0, column: 0, message }]);
    let entries = std::fs::read_dir(dir).map_err(|e| err(format!("cannot read the policy directory: {e}; set [policy] dir in the config to a directory of *.cedar files")))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| err(e.to_string()))?.path();
        if path.extension().is_some_and(|x| x == "cedar") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| PolicyErrors(vec![PolicyError { file: path.clone(), line: 0, column: 0, message: format!("cannot read: {e}") }]))?;
        out.push((path, text));
    }
    Ok(out)
}

/// Fingerprint of a set of sources.
pub fn fingerprint(sources: &[(PathBuf, String)]) -> [u8; 32] {
    let mut h = Sha256::new();
    for (path, text) in sources {
        h.update(path.to_string_lossy().as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

impl PolicyEngine {
    /// Load and validate every `*.cedar` file in `dir`.
    pub fn load_dir(dir: &Path) -> Result<Self, PolicyErrors> {
        let sources = read_dir_sources(dir)?;
        Self::from_sources(dir, sources)
    }

    /// Build from file contents; every problem is reported, located.
    pub fn from_sources(dir: &Path, sources: Vec<(PathBuf, String)>) -> Result<Self, PolicyErrors> {
        let schema = schema().map_err(|m| PolicyErrors(vec![PolicyError { file: dir.to_owned(), line: 0, column: 0, message: m }]))?;
        let validator = Validator::new(schema.clone());
        let mut errors = Vec::new();
        let mut all = PolicySet::new();
        let mut info: HashMap<String, PolicyInfo> = HashMap::new();
        if sources.is_empty() {
            errors.push(PolicyError {
                file: dir.to_owned(),
                line: 0,
                column: 0,
                message: "no *.cedar files: with no policy everything is denied; add policies (see the policy guide in docs/platform.md)".into(),
            });
        }
        for (path, text) in &sources {
            let parsed = match PolicySet::from_str(text) {
                Ok(p) => p,
                Err(e) => {
                    for d in e.iter() {
                        errors.extend(diagnostic_errors(path, text, d, d.to_string()));
                    }
                    continue;
                }
            };
            if parsed.num_of_templates() > 0 {
                errors.push(PolicyError { file: path.clone(), line: 0, column: 0, message: "policy templates (?principal / ?resource) are not supported; write static policies".into() });
                continue;
            }
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            // Cedar names policies policy0, policy1, … in file order.
            let mut in_file: Vec<&Policy> = parsed.policies().collect();
            in_file.sort_by_key(|p| p.id().to_string().trim_start_matches("policy").parse::<usize>().unwrap_or(usize::MAX));
            let mut file_set = PolicySet::new();
            let mut search_from = 0usize;
            for (n, p) in in_file.into_iter().enumerate() {
                let line = p
                    .to_cedar()
                    .and_then(|src| text.get(search_from..).and_then(|rest| rest.find(src.as_str())).map(|at| (at + search_from, src.len())))
                    .map(|(at, len)| {
                        search_from = at + len;
                        line_col(text, at).0
                    })
                    .unwrap_or(0);
                let id = p.annotation(ID_ANNOTATION).map(str::to_owned).unwrap_or_else(|| format!("{stem}.{}", n + 1));
                if let Some(other) = info.get(&id) {
                    errors.push(PolicyError {
                        file: path.clone(),
                        line,
                        column: 1,
                        message: format!("policy id `{id}` is already used at {}:{}; give each policy a unique @id", other.file.display(), other.line),
                    });
                    continue;
                }
                let renamed = p.new_id(PolicyId::new(id.clone()));
                let effect = if renamed.effect() == Effect::Forbid { "forbid" } else { "permit" };
                let approval = renamed.annotation(APPROVAL_ANNOTATION).map(str::to_owned);
                if effect == "forbid" && approval.is_some() {
                    errors.push(PolicyError { file: path.clone(), line, column: 1, message: format!("policy `{id}`: @approval belongs on a permit, not a forbid") });
                }
                let confirm = renamed.annotation(CONFIRM_ANNOTATION).map(str::to_owned);
                if effect == "forbid" && confirm.is_some() {
                    errors.push(PolicyError { file: path.clone(), line, column: 1, message: format!("policy `{id}`: @confirm belongs on a permit, not a forbid") });
                }
                if approval.is_some() && confirm.is_some() {
                    errors.push(PolicyError {
                        file: path.clone(),
                        line,
                        column: 1,
                        message: format!("policy `{id}`: use one of @approval (a person of a group decides) or @confirm (the end user confirms, the group decides when the client cannot ask)"),
                    });
                }
                if confirm.as_deref().is_some_and(|g| g.trim().is_empty()) {
                    errors.push(PolicyError {
                        file: path.clone(),
                        line,
                        column: 1,
                        message: format!("policy `{id}`: @confirm needs the group that approves when the client cannot ask its user, e.g. @confirm(\"platform-oncall\")"),
                    });
                }
                if approval.as_deref().is_some_and(|g| g.trim().is_empty()) {
                    errors.push(PolicyError { file: path.clone(), line, column: 1, message: format!("policy `{id}`: @approval needs a group name, e.g. @approval(\"platform-oncall\")") });
                }
                info.insert(
                    id.clone(),
                    PolicyInfo {
                        id: id.clone(),
                        file: path.clone(),
                        line,
                        effect,
                        reason: renamed.annotation(REASON_ANNOTATION).map(str::to_owned),
                        approval,
                        confirm,
                        quarantine: renamed.annotation(QUARANTINE_ANNOTATION).is_some(),
                    },
                );
                if let Err(e) = file_set.add(renamed.clone()) {
                    errors.push(PolicyError { file: path.clone(), line, column: 1, message: e.to_string() });
                }
                if let Err(e) = all.add(renamed) {
                    errors.push(PolicyError { file: path.clone(), line, column: 1, message: e.to_string() });
                }
            }
            let result = validator.validate(&file_set, ValidationMode::Strict);
            for e in result.validation_errors() {
                errors.extend(diagnostic_errors(path, text, e, e.to_string()));
            }
        }
        if !errors.is_empty() {
            return Err(PolicyErrors(errors));
        }
        Ok(Self {
            policies: all,
            slices: Default::default(),
            info,
            authorizer: Authorizer::new(),
            fingerprint: fingerprint(&sources),
            dir: dir.to_owned(),
        })
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.info.len()
    }

    pub fn is_empty(&self) -> bool {
        self.info.is_empty()
    }

    /// A policy's location and annotations.
    /// The verdict for a request: the one function the gateway and `jitgate
    /// policy explain` both use, so that explain says what the gateway does.
    /// `drift` is the baseline's explanation when the agent drifted.
    pub fn verdict(&self, drift: Option<&str>, decision: &Decision) -> Verdict {
        if let Some(why) = drift {
            return Verdict::Quarantine { reason: why.to_owned() };
        }
        match &decision.outcome {
            Outcome::Deny { policy: Some(id), reason } if self.policy(id).is_some_and(|p| p.quarantine) => {
                Verdict::Quarantine { reason: format!("policy `{id}`: {reason}") }
            }
            other => Verdict::Outcome(other.clone()),
        }
    }

    pub fn policy(&self, id: &str) -> Option<&PolicyInfo> {
        self.info.get(id)
    }

    fn infos(&self, ids: impl Iterator<Item = String>) -> Vec<PolicyInfo> {
        let mut v: Vec<PolicyInfo> = ids.filter_map(|id| self.info.get(&id).cloned()).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Decide. Any failure to build or evaluate the request denies.
    pub fn decide(&self, input: &DecisionInput<'_>) -> Decision {
        match self.evaluate(input) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "policy input could not be built; denying");
                Decision::deny(None, format!("the policy input could not be built ({e}); the request is denied"), Vec::new(), vec![e])
            }
        }
    }

    /// The policies whose scope admits this action, agent and tool (cached).
    fn slice(&self, input: &DecisionInput<'_>, agent: &EntityUid, action: &EntityUid, tool: &EntityUid) -> Result<Arc<PolicySet>, String> {
        let key = SliceKey {
            action: input.action,
            agent: input.agent.agent.id.clone(),
            team: input.agent.agent.team.clone(),
            tool: input.tool.exposed.clone(),
            server: input.tool.server.clone(),
        };
        if let Some(s) = self.slices.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(s.clone());
        }
        let team = (!key.team.is_empty()).then(|| entities::uid("Team", &key.team)).transpose()?;
        let server = entities::uid("Server", &key.server)?;
        let agent_type = entities::type_name("Agent")?;
        let tool_type = entities::type_name("Tool")?;
        let principal_ok = |p: PrincipalConstraint| match p {
            PrincipalConstraint::Any => true,
            PrincipalConstraint::Eq(u) => &u == agent,
            PrincipalConstraint::In(u) => &u == agent || Some(&u) == team.as_ref(),
            PrincipalConstraint::Is(t) => t == agent_type,
            PrincipalConstraint::IsIn(t, u) => t == agent_type && (&u == agent || Some(&u) == team.as_ref()),
        };
        let resource_ok = |r: ResourceConstraint| match r {
            ResourceConstraint::Any => true,
            ResourceConstraint::Eq(u) => &u == tool,
            ResourceConstraint::In(u) => &u == tool || u == server,
            ResourceConstraint::Is(t) => t == tool_type,
            ResourceConstraint::IsIn(t, u) => t == tool_type && (&u == tool || u == server),
        };
        let action_ok = |a: ActionConstraint| match a {
            ActionConstraint::Any => true,
            ActionConstraint::Eq(u) => &u == action,
            ActionConstraint::In(list) => list.contains(action),
        };
        let mut slice = PolicySet::new();
        for p in self.policies.policies() {
            if action_ok(p.action_constraint()) && principal_ok(p.principal_constraint()) && resource_ok(p.resource_constraint()) {
                slice.add(p.clone()).map_err(|e| e.to_string())?;
            }
        }
        let slice = Arc::new(slice);
        let mut cache = self.slices.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= SLICE_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, slice.clone());
        Ok(slice)
    }

    fn evaluate(&self, input: &DecisionInput<'_>) -> Result<Decision, String> {
        let principal = entities::agent_uid(input.agent)?;
        let resource = entities::tool_uid(input.tool)?;
        let action = entities::uid("Action", input.action.as_str())?;
        let mut ents = entities::agent_entities(input.agent)?;
        ents.push(entities::tool_entity(input.tool)?);
        let context = match (input.action, input.request) {
            (Action::BeginTask, _) => entities::begin_task_context(input.time, input.task)?,
            (Action::Delegate, _) => {
                let d = input.delegation.ok_or("a delegation decision needs the delegation")?;
                entities::delegate_context(input.time, input.task, d)?
            }
            (_, Some(r)) => {
                let args = entities::arguments_entity("request", &r.constraints)?;
                let args_uid = args.uid();
                ents.push(args);
                entities::request_context(input.time, input.task, r, args_uid)?
            }
            (_, None) => return Err("a request decision needs the request".into()),
        };
        let slice = self.slice(input, &principal, &action, &resource)?;
        // The mapping is checked against the schema by unit tests; at run
        // time a mismatch makes policies error, and an erroring forbid denies.
        let request = Request::new(principal, action, resource, context, None).map_err(|e| e.to_string())?;
        let entities = Entities::from_entities(ents, None).map_err(|e| e.to_string())?;
        let response = self.authorizer.is_authorized(&request, &slice, &entities);
        let diagnostics = response.diagnostics();
        let errors: Vec<String> = diagnostics.errors().map(|e| e.to_string()).collect();
        // Fail closed: a forbid that errored might have applied.
        let errored_forbids: Vec<String> = diagnostics
            .errors()
            .map(|e| match e {
                cedar_policy::AuthorizationError::PolicyEvaluationError(pe) => pe.policy_id().to_string(),
            })
            .filter(|id| self.info.get(id).is_some_and(|p| p.effect == "forbid"))
            .collect();
        let reasons = diagnostics.reason().map(|id| id.to_string());
        let determining = self.infos(reasons);
        if let Some(id) = errored_forbids.first() {
            return Ok(Decision::deny(
                Some(id.clone()),
                format!("policy `{id}` could not be evaluated for this request, so it is denied; ask the policy's owner to fix it"),
                self.infos(errored_forbids.iter().cloned()),
                errors,
            ));
        }
        match response.decision() {
            CedarDecision::Deny => {
                let forbid = determining.iter().find(|p| p.effect == "forbid");
                match forbid {
                    Some(p) => {
                        let reason = p.reason.clone().unwrap_or_else(|| "forbidden by policy".into());
                        Ok(Decision::deny(Some(p.id.clone()), reason, determining.clone(), errors))
                    }
                    None => Ok(Decision::deny(
                        None,
                        format!(
                            "no policy permits agent `{}` to {} `{}`",
                            input.agent.agent.name,
                            match input.action {
                                Action::BeginTask => "plan a task with",
                                Action::Request => "request",
                                Action::BreakGlass => "break glass for",
                                Action::Delegate => "delegate",
                            },
                            input.tool.exposed
                        ),
                        Vec::new(),
                        errors,
                    )),
                }
            }
            CedarDecision::Allow => {
                // An allow needs approval only if every permit that allowed it asks
                // for one, and only for a token request: planning a task that names
                // a gated tool is fine, and break-glass is its own reviewed path.
                let unconditional = determining.iter().any(|p| p.effect == "permit" && p.approval.is_none() && p.confirm.is_none());
                if unconditional || input.action != Action::Request {
                    return Ok(Decision { outcome: Outcome::Allow, determining, errors });
                }
                let granted = input.request.is_some_and(|r| {
                    (r.approval.granted && determining.iter().any(|p| p.approvable_by(&r.approval.group)))
                        || (r.confirmed_by_end_user && determining.iter().any(|p| p.confirm.is_some()))
                });
                if granted {
                    return Ok(Decision { outcome: Outcome::Allow, determining, errors });
                }
                // Any permit suffices: the end user's confirmation, when a
                // rule offers it, is the lighter path.
                if let Some(fallback) = determining.iter().filter_map(|p| p.confirm.clone()).min() {
                    return Ok(Decision { outcome: Outcome::NeedsConfirmation { fallback }, determining, errors });
                }
                let group = determining.iter().filter_map(|p| p.approval.clone()).min().unwrap_or_default();
                Ok(Decision { outcome: Outcome::NeedsApproval { group }, determining, errors })
            }
        }
    }
}

#[cfg(test)]
mod tests;
