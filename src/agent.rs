//! Agent files (`agents/*.toml`): who an agent is and what it may ever use.
//!
//! An agent is known to jitgate only through its file: a verified identity
//! whose subject has no agent file is refused. `allowed_tools` is the
//! outermost bound on the agent's authority: exposed names (`server__tool`)
//! or a whole server (`server__*`). `[end_user]` says whether a person
//! answers the questions jitgate asks through the agent's MCP client; policy
//! sees it as `context.end_user.client_trusted`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::source::{self, SourceError, SourceFile};

/// The file suffix of a learned baseline beside the agent files
/// (`jitgate baseline learn`); such files are not agent files.
pub const LEARNED_SUFFIX: &str = ".baseline.toml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    name: Spanned<String>,
    id: Spanned<String>,
    #[serde(default)]
    team: String,
    #[serde(default = "default_env")]
    environment: String,
    #[serde(default)]
    description: String,
    allowed_tools: Vec<Spanned<String>>,
    /// Attributes the platform team sets for policies (`principal.getTag(...)`).
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    baseline: DeclaredBaseline,
    /// Names of the issuers (`[[identity.issuers]] name`) that may speak for
    /// this agent; empty means any issuer whose trust domain holds its id.
    #[serde(default)]
    issuers: Vec<String>,
    #[serde(default)]
    end_user: EndUserClient,
    /// `enforce` (the default) or `observe` (see [`AgentMode`]).
    #[serde(default)]
    mode: RawMode,
    /// With `mode = "observe"`: only these servers' tools are observed; the
    /// others are enforced. Empty: every server.
    #[serde(default)]
    observe_servers: Vec<String>,
    /// Names of the agents this one may hand part of a task to (`jit_delegate`).
    #[serde(default)]
    delegates_to: Vec<String>,
}

/// What an agent file says besides the agent itself, kept by
/// [`AgentDirectory`] by agent id.
#[derive(Debug, Clone, Default)]
pub struct AgentSettings {
    pub end_user: EndUserClient,
    pub mode: AgentMode,
    /// Names of the agents it may delegate to.
    pub delegates_to: Vec<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawMode {
    #[default]
    Enforce,
    Observe,
}

/// How jitgate treats the agent's calls (`mode`, kept by [`AgentDirectory`]).
///
/// Enforcing, a call needs its capability token. Observing, a plain
/// `tools/call` passes through without the just-in-time protocol, and is
/// recorded with the decision enforcement would have made; nothing is
/// minted. Observe mode is for rolling jitgate out in front of agents that
/// run today: tune policy on what it reports, then switch to `enforce`.
///
/// ```toml
/// mode = "observe"
/// observe_servers = ["workspace"]   # optional: the others are enforced
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AgentMode {
    #[default]
    Enforce,
    /// Observe the tools of these servers (all of them when empty).
    Observe { servers: Vec<String> },
}

impl AgentMode {
    /// Is a call of this server's tool observed rather than enforced?
    pub fn observes(&self, server: &str) -> bool {
        match self {
            AgentMode::Enforce => false,
            AgentMode::Observe { servers } => servers.is_empty() || servers.iter().any(|s| s == server),
        }
    }
}

/// Who answers the questions jitgate asks through this agent's MCP client
/// (`[end_user]`).
///
/// jitgate asks the end user through the client the agent itself connects
/// with, so whoever drives that client answers. An unattended agent whose
/// client declares elicitation, or a client that answers on its own, confirms
/// for itself, and a `@confirm("GROUP")` rule then never reaches GROUP. Only
/// the platform team can say that a person sits at the client: policy sees
/// its word as `context.end_user.client_trusted`, false unless it is given.
///
/// ```toml
/// [end_user]
/// client_trusted = true   # a person answers this agent's questions in their MCP client
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndUserClient {
    /// A person reads and answers the questions the agent's client is asked.
    #[serde(default)]
    pub client_trusted: bool,
}

/// What the platform team declares this agent normally does (`[baseline]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredBaseline {
    /// Tools it normally uses; empty means its `allowed_tools`.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Phase names its task plans normally use; empty means any.
    #[serde(default)]
    pub phases: Vec<String>,
    /// Tool-to-tool transitions it normally makes, as `["from", "to"]` pairs;
    /// empty means any transition within the task's plan.
    #[serde(default)]
    pub transitions: Vec<(String, String)>,
    /// Intent requests per minute above which it is bursting.
    pub max_requests_per_minute: Option<u32>,
    /// UTC hours it works in, `[start, end)`, e.g. `[7, 19]`.
    pub active_hours: Option<(u8, u8)>,
    /// A request scoring at least this (0-100) quarantines the agent.
    pub drift_threshold: Option<u8>,
}

fn default_env() -> String {
    "development".into()
}

/// One agent's file.
#[derive(Debug, Clone)]
pub struct Agent {
    pub name: String,
    /// SPIFFE-style subject its identity tokens carry in `sub`.
    pub id: String,
    pub team: String,
    pub environment: String,
    pub description: String,
    pub allowed_tools: Vec<ToolPattern>,
    /// Platform-set attributes, visible to policies as the agent's tags.
    pub attributes: BTreeMap<String, String>,
    /// The declared baseline.
    pub baseline: DeclaredBaseline,
    /// Issuers that may speak for this agent (empty: any whose trust domain holds its id).
    pub issuers: Vec<String>,
    /// Where the agent file is, for errors found after loading it.
    pub source: AgentSource,
}

/// The file an agent came from and where in it each `allowed_tools` entry is
/// (line, column), so that a check that needs the registered servers can
/// point at the entry it refuses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentSource {
    pub path: PathBuf,
    pub allowed_tools_at: Vec<(usize, usize)>,
}

impl AgentSource {
    /// A located error about the `index`th allowed tool.
    pub fn error_at_tool(&self, index: usize, message: String) -> SourceError {
        let (line, column) = self.allowed_tools_at.get(index).copied().unwrap_or((1, 1));
        SourceError { file: self.path.clone(), line, column, message }
    }
}

/// An entry of `allowed_tools`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolPattern {
    Exact(String),
    /// `server__*`: every tool of that server.
    Server(String),
}

impl ToolPattern {
    fn parse(s: &str) -> Option<Self> {
        let (server, tool) = s.split_once(crate::manifest::NAMESPACE_SEPARATOR)?;
        if server.is_empty() || tool.is_empty() {
            return None;
        }
        Some(if tool == "*" { ToolPattern::Server(server.to_owned()) } else { ToolPattern::Exact(s.to_owned()) })
    }

    fn matches(&self, exposed: &str) -> bool {
        match self {
            ToolPattern::Exact(t) => t == exposed,
            ToolPattern::Server(s) => exposed
                .strip_prefix(s.as_str())
                .is_some_and(|rest| rest.starts_with(crate::manifest::NAMESPACE_SEPARATOR)),
        }
    }

    /// Does the pattern name anything in the given server?
    pub fn server(&self) -> &str {
        match self {
            ToolPattern::Exact(t) => t.split(crate::manifest::NAMESPACE_SEPARATOR).next().unwrap_or(""),
            ToolPattern::Server(s) => s,
        }
    }
}

impl Agent {
    /// May this agent ever use the exposed tool?
    pub fn may_use(&self, exposed: &str) -> bool {
        self.allowed_tools.iter().any(|p| p.matches(exposed))
    }

    /// Load one agent file.
    pub fn load(path: &Path) -> Result<Self, SourceError> {
        Self::from_source(SourceFile::read(path)?)
    }

    /// Validate an agent file's text (as read from `file.path`).
    pub fn from_source(file: SourceFile) -> Result<Self, SourceError> {
        Self::parse(file).map(|(agent, _)| agent)
    }

    /// Validate an agent file's text: the agent, and who answers its
    /// client's questions (`[end_user]`, kept by [`AgentDirectory`]).
    pub fn parse(file: SourceFile) -> Result<(Self, AgentSettings), SourceError> {
        let raw: RawAgent = source::parse_toml(&file)?;
        let mode = match raw.mode {
            RawMode::Enforce if !raw.observe_servers.is_empty() => {
                return Err(file.error_at(None, "observe_servers is set but mode is not \"observe\": set mode = \"observe\" to observe those servers' tools, or remove observe_servers"));
            }
            RawMode::Enforce => AgentMode::Enforce,
            RawMode::Observe => AgentMode::Observe { servers: raw.observe_servers.clone() },
        };
        let id = raw.id.get_ref().clone();
        // A SPIFFE ID, or, for an agent bound to named issuers (an OAuth
        // client of an OpenID provider), the `sub` those issuers give it.
        let spiffe = id.starts_with("spiffe://") && id.len() > "spiffe://".len();
        let subject = !raw.issuers.is_empty() && !id.is_empty() && id.len() <= 256 && !id.chars().any(|c| c.is_whitespace() || c.is_control());
        if !spiffe && !subject {
            return Err(file.error_at(
                Some(raw.id.span()),
                format!(
                    "agent id `{id}` must be a SPIFFE ID such as \"spiffe://example.org/agent/triage\", or, with `issuers = [..]` naming the issuers that vouch for it, the subject (`sub`) they give it, such as an OAuth client id"
                ),
            ));
        }
        let name = raw.name.get_ref().clone();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(file.error_at(Some(raw.name.span()), format!("agent name `{name}` must be non-empty and use only a-z A-Z 0-9 - _")));
        }
        let mut allowed_tools = Vec::new();
        let mut allowed_tools_at = Vec::new();
        for t in raw.allowed_tools {
            allowed_tools_at.push(source::line_col(&file.text, t.span().start));
            let p = ToolPattern::parse(t.get_ref()).ok_or_else(|| {
                file.error_at(Some(t.span()), format!("allowed tool `{}` must be `server__tool` or `server__*`", t.get_ref()))
            })?;
            allowed_tools.push(p);
        }
        let agent = Self {
            name,
            id,
            team: raw.team,
            environment: raw.environment,
            description: raw.description,
            allowed_tools,
            attributes: raw.attributes,
            baseline: raw.baseline,
            issuers: raw.issuers,
            source: AgentSource { path: file.path.clone(), allowed_tools_at },
        };
        Ok((agent, AgentSettings { end_user: raw.end_user, mode, delegates_to: raw.delegates_to }))
    }
}

/// All agent files of a deployment, indexed by subject.
#[derive(Debug, Clone, Default)]
pub struct AgentDirectory {
    by_id: BTreeMap<String, Agent>,
    /// What each agent file says besides the agent, by id.
    settings: BTreeMap<String, AgentSettings>,
}

impl AgentDirectory {
    /// Load every `*.toml` in `dir`. Duplicate names or ids are errors.
    pub fn load(dir: &Path) -> Result<Self, Vec<SourceError>> {
        let mut errors = Vec::new();
        let mut by_id: BTreeMap<String, Agent> = BTreeMap::new();
        let mut settings = BTreeMap::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) => {
                return Err(vec![SourceError {
                    file: dir.to_owned(),
                    line: 0,
                    column: 0,
                    message: format!("cannot read agents directory: {e}; set gateway.agents_dir to a directory of agent files"),
                }]);
            }
        };
        // Learned profiles (`NAME.baseline.toml`) live beside the agent files.
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && !p.to_string_lossy().ends_with(LEARNED_SUFFIX))
            .collect();
        files.sort();
        for f in files {
            match SourceFile::read(&f).and_then(Agent::parse) {
                Ok((agent, agent_settings)) => {
                    if let Some(other) = by_id.values().find(|a| a.name == agent.name || a.id == agent.id) {
                        errors.push(SourceError {
                            file: f.clone(),
                            line: 1,
                            column: 1,
                            message: format!("agent `{}` ({}) clashes with agent `{}` ({}): names and ids must be unique", agent.name, agent.id, other.name, other.id),
                        });
                        continue;
                    }
                    settings.insert(agent.id.clone(), agent_settings);
                    by_id.insert(agent.id.clone(), agent);
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() { Ok(Self { by_id, settings }) } else { Err(errors) }
    }

    /// The mode of the agent with this id; an agent the directory does not
    /// know is enforced.
    pub fn mode(&self, id: &str) -> AgentMode {
        self.settings.get(id).map(|s| s.mode.clone()).unwrap_or_default()
    }

    /// The names the agent with this id may delegate to (`delegates_to`).
    pub fn delegates_to(&self, id: &str) -> &[String] {
        self.settings.get(id).map(|s| s.delegates_to.as_slice()).unwrap_or_default()
    }

    /// May the agent with this id delegate to the agent named `child`?
    pub fn may_delegate(&self, id: &str, child: &str) -> bool {
        self.settings.get(id).is_some_and(|s| s.delegates_to.iter().any(|c| c == child))
    }

    /// Who answers the questions asked through the client of the agent with
    /// this id; an agent the directory does not know has no trusted client.
    pub fn end_user(&self, id: &str) -> EndUserClient {
        self.settings.get(id).map(|s| s.end_user).unwrap_or_default()
    }

    /// The agent with this SPIFFE subject.
    pub fn by_subject(&self, sub: &str) -> Option<&Agent> {
        self.by_id.get(sub)
    }

    /// The agent with this name.
    pub fn by_name(&self, name: &str) -> Option<&Agent> {
        self.by_id.values().find(|a| a.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Agent> {
        self.by_id.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_reference_is_an_agent_file_this_parser_reads() {
        let file = source::reference_toml_block("## Agent file (`agents/NAME.toml`)");
        if let Err(e) = Agent::parse(file) {
            panic!("{e}");
        }
    }

    #[test]
    fn patterns_match_exact_and_whole_server() {
        let exact = ToolPattern::parse("ws__read_note").unwrap();
        assert!(exact.matches("ws__read_note"));
        assert!(!exact.matches("ws__read_notes"));
        let server = ToolPattern::parse("ws__*").unwrap();
        assert!(server.matches("ws__delete_note"));
        // A server whose name merely starts with "ws" is a different server.
        assert!(!server.matches("wsx__delete_note"));
        assert!(ToolPattern::parse("read_note").is_none());
        assert!(ToolPattern::parse("__x").is_none());
    }

    #[test]
    fn agent_file_errors_have_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        std::fs::write(&p, "name = \"a\"\nid = \"agent-a\"\nallowed_tools = []\n").unwrap();
        let e = Agent::load(&p).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        std::fs::write(&p, "name = \"a\"\nid = \"spiffe://x/a\"\nallowed_tools = [\n  \"ws__ok\",\n  \"oops\"]\n").unwrap();
        let e = Agent::load(&p).unwrap_err();
        assert_eq!(e.line, 5, "{e}");
    }

    #[test]
    fn only_the_agent_file_can_vouch_for_the_end_user_client() {
        let dir = tempfile::tempdir().unwrap();
        let head = "allowed_tools = []\n";
        std::fs::write(dir.path().join("a.toml"), format!("name = \"a\"\nid = \"spiffe://x/a\"\n{head}")).unwrap();
        std::fs::write(dir.path().join("b.toml"), format!("name = \"b\"\nid = \"spiffe://x/b\"\n{head}\n[end_user]\nclient_trusted = true\n")).unwrap();
        let agents = AgentDirectory::load(dir.path()).unwrap();
        // Not trusted unless the file says so, nor for an agent it does not know.
        assert!(!agents.end_user("spiffe://x/a").client_trusted);
        assert!(agents.end_user("spiffe://x/b").client_trusted);
        assert!(!agents.end_user("spiffe://x/c").client_trusted);
        let p = dir.path().join("c.toml");
        std::fs::write(&p, format!("name = \"c\"\nid = \"spiffe://x/c\"\n{head}[end_user]\ntrusted = true\n")).unwrap();
        let e = Agent::load(&p).unwrap_err();
        assert!(e.line == 5 && e.message.contains("trusted"), "{e}");
        std::fs::write(&p, format!("name = \"c\"\nid = \"spiffe://x/c\"\n{head}[end_user]\nclient_trusted = \"yes\"\n")).unwrap();
        assert!(Agent::load(&p).is_err());
    }

    #[test]
    fn a_non_spiffe_id_needs_the_issuers_that_vouch_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        // An OAuth client id is an agent id only for the issuers named.
        std::fs::write(&p, "name = \"a\"\nid = \"triage-client\"\nallowed_tools = []\nissuers = [\"corp-idp\"]\n").unwrap();
        assert_eq!(Agent::load(&p).unwrap().id, "triage-client");
        for bad in ["triage-client", "two words", ""] {
            std::fs::write(&p, format!("name = \"a\"\nid = \"{bad}\"\nallowed_tools = []\n")).unwrap();
            let e = Agent::load(&p).unwrap_err();
            assert!(e.message.contains("issuers"), "{e}");
        }
        std::fs::write(&p, "name = \"a\"\nid = \"two words\"\nallowed_tools = []\nissuers = [\"corp-idp\"]\n").unwrap();
        assert!(Agent::load(&p).is_err());
    }
}
