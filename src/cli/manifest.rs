//! `jitgate manifest init` and `repin`: write a starting manifest, with pins,
//! from a live server, and re-pin an existing one without losing its review.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use tokio::sync::Notify;

use super::CliError;
use crate::downstream::connect;
use crate::manifest::{Manifest, Risk, Transport, pin_of_tool};
use crate::telemetry::escape_unseen;

mod propose;
use propose::{Proposal, propose};

#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Connect to a live MCP server and write a manifest listing its tools with pins.
    ///
    /// Example: jitgate manifest init fs --out tool-manifests/fs.toml -- npx @modelcontextprotocol/server-filesystem /data
    Init(InitArgs),
    /// Re-pin the tools of an existing manifest from its live server, keeping
    /// every reviewed setting (risk, sensitive arguments, untrusted output).
    ///
    /// Prints each tool whose definition changed, with the live definition to
    /// review, and rewrites only the `pin = "…"` lines. Use --dry-run to look
    /// first.
    ///
    /// Example: jitgate manifest repin tool-manifests/fs.toml --dry-run
    Repin(RepinArgs),
}

#[derive(Debug, Args)]
pub struct RepinArgs {
    /// The manifest file to re-pin (its `[server.transport]` says how to reach the server).
    pub manifest: PathBuf,
    /// Show what would change, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Re-pin only this tool (repeat for several). Without it every changed
    /// tool is re-pinned: review each one shown.
    #[arg(long = "tool", value_name = "TOOL")]
    pub tools: Vec<String>,
    /// How long to wait for the server to start.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Namespace for the server's tools (`NAME__tool`).
    pub name: String,
    /// Connect over streamable HTTP to this URL instead of spawning a command.
    #[arg(long, conflicts_with = "command")]
    pub url: Option<String>,
    /// Write to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Overwrite --out if it exists.
    #[arg(long)]
    pub force: bool,
    /// How long to wait for the server to start.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Also write a starting Cedar policy for the server to FILE (put it in
    /// the policy directory): --team may plan with every tool, request low-
    /// and medium-risk ones, high-risk ones on a chain its baseline knows,
    /// and critical ones with a person's approval; a sink fed a value from
    /// untrusted content needs the end user's confirmation (where the agent
    /// file vouches for its client) or a person's approval. Without a policy
    /// no agent can use the server. Review it with the manifest.
    #[arg(long, value_name = "FILE", requires = "team", requires = "out")]
    pub policy: Option<PathBuf>,
    /// The team (the `team` of agent files) the starting policy is for.
    #[arg(long, requires = "policy")]
    pub team: Option<String>,
    /// The approvers' group in the starting policy: critical tools, unusual
    /// high-risk chains, and sinks fed untrusted values when the end user
    /// cannot be asked.
    #[arg(long, default_value = "platform-oncall", requires = "policy")]
    pub approvers: String,
    /// The command (and its arguments) that starts the server over stdio, after `--`.
    #[arg(last = true)]
    pub command: Vec<String>,
}

pub async fn run(cmd: ManifestCommand) -> Result<(), CliError> {
    match cmd {
        ManifestCommand::Init(a) => init(a).await,
        ManifestCommand::Repin(a) => repin(a).await,
    }
}

async fn live_tools(manifest: &Manifest, timeout: Duration) -> Result<(String, Vec<rmcp::model::Tool>), CliError> {
    let running = tokio::time::timeout(timeout, connect(manifest, Arc::new(Notify::new())))
        .await
        .map_err(|_| CliError::Downstream(format!("server did not start within {}", humantime::format_duration(timeout))))?
        .map_err(|e| CliError::Downstream(e.to_string()))?;
    let server_info = running.peer().peer_info().and_then(|i| i.server_info.clone()).map(|s| format!("{} {}", s.name, s.version)).unwrap_or_default();
    let tools = running.peer().list_all_tools().await.map_err(|e| CliError::Downstream(format!("tools/list failed: {e}")));
    let _ = running.cancel().await;
    let tools = tools?;
    if let Some(bad) = tools.iter().find(|t| !crate::manifest::is_registrable_tool_name(&t.name)) {
        return Err(CliError::Downstream(format!(
            "the server offers a tool named {:?}, which is empty or contains control characters; jitgate does not register such a server",
            bad.name
        )));
    }
    Ok((server_info, tools))
}

/// What re-pinning found for one manifest tool.
#[derive(Debug, PartialEq, Eq)]
enum PinChange {
    Unchanged,
    /// The old pin format matched: the reviewed parts did not change, but the
    /// rest of the definition was never covered.
    OldFormat { new: String },
    Changed { new: String },
    MissingOnServer,
}

fn pin_change(pinned: &str, live: Option<&rmcp::model::Tool>) -> PinChange {
    let Some(tool) = live else { return PinChange::MissingOnServer };
    let new = pin_of_tool(tool);
    if new == pinned {
        PinChange::Unchanged
    } else if crate::manifest::legacy_pin_of_tool(tool) == pinned {
        PinChange::OldFormat { new }
    } else {
        PinChange::Changed { new }
    }
}

/// Replace the pin value of the tool declared at `line` (1-based), leaving
/// every other byte of the file as it was. Returns None when the pin line is
/// not found (the file was written in an unusual layout).
fn replace_pin(text: &str, line: usize, old: &str, new: &str) -> Option<String> {
    let quoted = format!("\"{old}\"");
    let mut offset = 0;
    for (n, l) in text.split_inclusive('\n').enumerate() {
        if n + 1 >= line && l.trim_start().starts_with("pin") {
            if let Some(at) = l.find(&quoted) {
                let start = offset + at + 1;
                let mut out = text.to_owned();
                out.replace_range(start..start + old.len(), new);
                return Some(out);
            }
        }
        offset += l.len();
    }
    None
}

async fn repin(a: RepinArgs) -> Result<(), CliError> {
    let manifest = Manifest::load(&a.manifest)?;
    let (server_info, live) = live_tools(&manifest, a.timeout).await?;
    let mut text = std::fs::read_to_string(&a.manifest).map_err(|e| CliError::Other(format!("cannot read {}: {e}", a.manifest.display())))?;
    let mut changed = 0;
    if let Some(unknown) = a.tools.iter().find(|t| !manifest.tools.contains_key(t.as_str())) {
        return Err(CliError::Usage(format!("`{unknown}` is not a tool of {}", a.manifest.display())));
    }
    for (name, spec) in &manifest.tools {
        if !a.tools.is_empty() && !a.tools.contains(name) {
            continue;
        }
        let tool = live.iter().find(|t| t.name == name.as_str());
        let new = match pin_change(&spec.pin, tool) {
            PinChange::Unchanged => {
                outln!("{name}: unchanged");
                continue;
            }
            PinChange::MissingOnServer => {
                outln!("{name}: NOT OFFERED by the server; pin left as it is (remove the tool if it is gone for good)");
                continue;
            }
            PinChange::OldFormat { new } => {
                outln!("{name}: pinned in the old format; name, description and input schema are as reviewed, the rest is now pinned too");
                new
            }
            PinChange::Changed { new } => {
                outln!("{name}: DEFINITION CHANGED since it was pinned; review it before you trust it:");
                new
            }
        };
        if let Some(tool) = tool {
            let def = serde_json::to_string_pretty(tool).unwrap_or_default();
            for l in def.lines() {
                outln!("    {l}");
            }
            // A new argument that chooses where data goes is not sensitive
            // until someone says so: point it out.
            for arg in propose(tool).sensitive.iter().filter(|arg| !spec.sensitive_args.contains(arg)) {
                outln!("  note: `{arg}` looks like it chooses where data goes but is not in sensitive_args; review");
            }
        }
        text = replace_pin(&text, spec.line, &spec.pin, &new)
            .ok_or_else(|| CliError::Other(format!("{}:{}: cannot find the `pin = \"{}\"` line of tool `{name}`", a.manifest.display(), spec.line, spec.pin)))?;
        changed += 1;
    }
    if a.dry_run || changed == 0 {
        outln!("{changed} pin(s) would change in {} ({server_info}); nothing written", a.manifest.display());
        return Ok(());
    }
    // Write next to the file and rename, so a failure never leaves half a manifest.
    let tmp = a.manifest.with_extension("toml.repin");
    std::fs::write(&tmp, &text).map_err(|e| CliError::Other(format!("cannot write {}: {e}", tmp.display())))?;
    if let Err(e) = Manifest::load(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    std::fs::rename(&tmp, &a.manifest).map_err(|e| CliError::Other(format!("cannot replace {}: {e}", a.manifest.display())))?;
    outln!("re-pinned {changed} tool(s) in {} from {server_info}; risk classes and other settings kept", a.manifest.display());
    Ok(())
}

async fn init(a: InitArgs) -> Result<(), CliError> {
    let cases = a.policy.as_ref().map(|p| cases_beside(p));
    for file in a.out.iter().chain(&a.policy).chain(&cases) {
        if file.exists() && !a.force {
            return Err(CliError::Usage(format!("{} exists; pass --force to overwrite it", file.display())));
        }
    }
    for (what, value) in [("--team", a.team.as_deref()), ("--approvers", a.policy.as_ref().map(|_| a.approvers.as_str()))] {
        if let Some(v) = value {
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c)) {
                return Err(CliError::Usage(format!("{what} `{v}`: use letters, digits and . _ @ - (it is written into a Cedar policy)")));
            }
        }
    }
    let transport = match (&a.url, a.command.split_first()) {
        (Some(url), _) => Transport::Url(url.clone()),
        (None, Some((command, args))) => Transport::Command {
            command: command.clone(),
            args: args.to_vec(),
            env: BTreeMap::new(),
            cwd: std::env::current_dir().unwrap_or_default(),
        },
        (None, None) => return Err(CliError::Usage("give the server command after `--`, or --url URL".into())),
    };
    let probe = Manifest {
            protocol: Default::default(),
        path: PathBuf::from("<manifest init>"),
        name: a.name.clone(),
        description: String::new(),
        pinned_version: String::new(),
        call_timeout: None,
        transport: transport.clone(),
        credentials: vec![],
        exchanged: None,
        tools: BTreeMap::new(),
    };
    let (server_info, tools) = live_tools(&probe, a.timeout).await?;
    let text = render(&a.name, &server_info, &transport, &tools);
    // Validate what we wrote with the real loader before handing it out.
    if let Some(out) = &a.out {
        std::fs::write(out, &text).map_err(|e| CliError::Other(format!("cannot write {}: {e}", out.display())))?;
        Manifest::load(out)?;
        let questions = text.lines().filter(|l| l.starts_with("# REVIEW:")).count();
        outln!(
            "wrote {} with {} tool(s) from {server_info}: review every proposal, and the {questions} line(s) marked `# REVIEW:`, before registering it",
            out.display(),
            tools.len()
        );
        if let (Some(policy), Some(team)) = (&a.policy, &a.team) {
            let text = starting_policy(&a.name, team, &a.approvers, &tools);
            let dir = policy.parent().unwrap_or(Path::new("."));
            crate::policy::PolicyEngine::from_sources(dir, vec![(policy.clone(), text.clone())])
                .map_err(|e| CliError::Other(format!("the starting policy does not validate (a bug; please report it):\n{e}")))?;
            std::fs::write(policy, &text).map_err(|e| CliError::Other(format!("cannot write {}: {e}", policy.display())))?;
            outln!(
                "wrote {}: team {team} may use {}'s tools by risk; put it in the policy directory, review it with the manifest, then run `jitgate check`",
                policy.display(),
                a.name
            );
            let cases = cases_beside(policy);
            std::fs::write(&cases, starting_cases(&a.name, team, &a.approvers, &tools)).map_err(|e| CliError::Other(format!("cannot write {}: {e}", cases.display())))?;
            outln!(
                "wrote {}: what the starting policy decides, as cases; keep them passing as you change it: `jitgate policy test --config CONFIG {}`",
                cases.display(),
                cases.display()
            );
        }
    } else {
        out!("{text}");
    }
    Ok(())
}

/// A starting policy for a newly registered server, by risk (the manifest's,
/// read at decision time, so raising a tool's risk in the manifest tightens
/// it). The same shape as the quick start's team policies: a sink fed with a
/// third-party value is neither run nor refused but put to the end user
/// (through a client the agent file vouches for) or to `approvers`, so a team
/// that starts here gets containment and its work done.
fn starting_policy(server: &str, team: &str, approvers: &str, tools: &[rmcp::model::Tool]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "// Starting policy for the `{server}` server, written by `jitgate manifest init`.");
    let _ = writeln!(out, "// Review it with the manifest: what a tool may do follows its `risk` there.");
    let _ = writeln!(out, "// Tools as proposed (edit the manifest's risk, not this list):");
    for risk in ["low", "medium", "high", "critical"] {
        // Names come from the server: escaped, so that no character of one
        // (a lone carriage return ends a Cedar comment) can leave the comment.
        let names: Vec<String> = tools.iter().filter(|t| propose(t).risk.as_str() == risk).map(|t| t.name.escape_debug().to_string()).collect();
        if !names.is_empty() {
            let _ = writeln!(out, "//   {risk}: {}", names.join(", "));
        }
    }
    // A sink fed a third-party value, or any write (a sink or a high-risk
    // tool) whose arguments carry text a third party wrote (issue 24).
    let tainted_sink = "((resource.tags.contains(\"sink\") && (context.taint.sensitive_from_untrusted || context.taint.destination_in_text)) ||\n   (context.taint.text_from_third_party && !resource.untrusted_output && (resource.tags.contains(\"sink\") || resource.risk_level >= 3)))";
    let guard = format!("context.baseline.score < 90 &&\n  !({tainted_sink})");
    // What the end user (or, for an untrusted client, a person) may let
    // through: not critical (that always waits for a person, below), not far
    // outside the baseline, and not an unusual chain into a high-risk tool
    // (a person decides that, tainted or not).
    let askable = format!("{tainted_sink} &&\n  resource.risk_level <= 3 && context.baseline.score < 90 &&\n  (resource.risk_level < 3 || context.baseline.transition_known)");
    let _ = write!(
        out,
        r#"
// Team {team} may declare tasks that use any of the server's tools.
@id("{server}-may-plan")
permit (principal in Team::"{team}", action == Action::"BeginTask", resource in Server::"{server}");

// Low- and medium-risk requests run directly, unless far outside the agent's
// baseline or feeding a sink with a value read from untrusted content (those
// are put to the end user or a person: below).
@id("{server}-low-and-medium-risk")
permit (principal in Team::"{team}", action == Action::"Request", resource in Server::"{server}")
when {{
  resource.risk_level <= 2 &&
  {guard}
}};

// High-risk requests run directly only on a chain the agent's baseline knows.
@id("{server}-high-risk-on-a-known-chain")
permit (principal in Team::"{team}", action == Action::"Request", resource in Server::"{server}")
when {{
  resource.risk_level == 3 && context.baseline.transition_known &&
  {guard}
}};

// High-risk requests on a chain the baseline does not know wait for a person.
@id("{server}-unusual-high-risk-needs-approval")
@approval("{approvers}")
permit (principal in Team::"{team}", action == Action::"Request", resource in Server::"{server}")
when {{ resource.risk_level == 3 && !context.baseline.transition_known }};

// A sink whose sensitive argument carries a value from content a third party
// wrote (the IBAN in a bill, the address on a web page, the link in a mail)
// may be exactly what the user asked for, or what an attacker planted. Only
// the end user can tell, so the end user confirms the exact call, shown where
// each value came from. The question goes through the agent's own MCP client
// and whoever drives that client answers it: an unattended agent would
// answer itself. So the end user is asked only where the agent file says a
// person answers the client (`[end_user] client_trusted = true`); a trusted
// client that cannot ask sends the request to {approvers} instead.
@id("{server}-third-party-values-into-sinks-ask-the-end-user")
@confirm("{approvers}")
permit (principal in Team::"{team}", action == Action::"Request", resource in Server::"{server}")
when {{
  context.end_user.client_trusted &&
  {askable}
}};

// The same requests from an agent whose client nobody vouches for: a person
// of {approvers} approves the exact call.
@id("{server}-third-party-values-into-sinks-need-a-person")
@approval("{approvers}")
permit (principal in Team::"{team}", action == Action::"Request", resource in Server::"{server}")
when {{
  !context.end_user.client_trusted &&
  {askable}
}};

// Critical requests wait for a person of group {approvers}
// (`jitgate approvals approve ID`); each approval covers one exact request.
@id("{server}-critical-needs-approval")
@approval("{approvers}")
permit (principal in Team::"{team}", action == Action::"Request", resource in Server::"{server}")
when {{ resource.risk == "critical" }};

// Break-glass, wherever another policy grants it, never carries a
// third-party value into one of this server's sinks.
@id("{server}-no-third-party-values-into-sinks-under-break-glass")
@reason("a sensitive argument carries a value that came from third-party content; ask without break-glass, and the end user or {approvers} will be asked to confirm the call")
forbid (principal, action == Action::"BreakGlass", resource in Server::"{server}")
when {{ {tainted_sink} }};
"#
    );
    out
}

/// The case file written beside a starting policy: `60-notes.cedar` →
/// `60-notes.cases.toml`.
fn cases_beside(policy: &Path) -> PathBuf {
    policy.with_extension("cases.toml")
}

/// Cases for [`starting_policy`]: one tool of each proposed risk, a sink fed
/// a third-party value from a vouched and an unvouched client, another
/// team. Tools and agents are described in place, so the file runs before
/// the server is registered; `jitgate policy test` decides them.
fn starting_cases(server: &str, team: &str, approvers: &str, tools: &[rmcp::model::Tool]) -> String {
    let proposed: Vec<(String, Proposal)> = tools.iter().map(|t| (format!("{server}{}{}", crate::manifest::NAMESPACE_SEPARATOR, t.name), propose(t))).collect();
    let tool_table = |name: &str, p: &Proposal| {
        let tags = if p.sink { "[\"sink\"]" } else { "[]" };
        let sensitive: Vec<String> = p.sensitive.iter().map(|s| quote(s)).collect();
        format!(
            "tool = {{ name = {}, risk = \"{}\", tags = {tags}, sensitive_args = [{}], untrusted_output = {} }}",
            quote(name),
            p.risk.as_str(),
            sensitive.join(", "),
            p.untrusted_output
        )
    };
    let agent = |trusted: bool| format!("agent = {{ name = \"{team}-agent\", team = \"{team}\", client_trusted = {trusted} }}");
    let mut out = String::new();
    let _ = writeln!(out, "# Cases for the starting policy of the `{server}` server, written by `jitgate manifest init`:");
    let _ = writeln!(out, "# what it decides, one [[case]] each. Keep them passing as you change the policy:");
    let _ = writeln!(out, "#   jitgate policy test --config CONFIG THIS_FILE");
    let _ = writeln!(out, "# Agents and tools are described here (as the manifest proposes them); `agent = \"NAME\"` and");
    let _ = writeln!(out, "# `tool = \"{server}__TOOL\"` name the deployment's own instead. Other keys are the flags of");
    let _ = writeln!(out, "# `jitgate policy explain`. The issuer is the config's first unless a case says `issuer`.");
    let mut case = |name: String, lines: Vec<String>| {
        let _ = writeln!(out, "\n[[case]]\nname = {}", quote(&name));
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
    };
    if let Some((name, p)) = proposed.first() {
        case(format!("team {team} plans a task with {name}"), vec![agent(true), tool_table(name, p), "action = \"begin-task\"".into(), "expect = \"allow\"".into(), format!("expect_policy = \"{server}-may-plan\"")]);
        case(format!("another team may not use {name}"), vec![format!("agent = {{ name = \"outsider\", team = \"not-{team}\" }}"), tool_table(name, p), "expect = \"deny\"".into()]);
    }
    for risk in [Risk::Low, Risk::Medium, Risk::High, Risk::Critical] {
        let Some((name, p)) = proposed.iter().find(|(_, p)| p.risk == risk) else { continue };
        let (expect, by) = match risk {
            Risk::Low | Risk::Medium => ("allow", format!("{server}-low-and-medium-risk")),
            Risk::High => ("allow", format!("{server}-high-risk-on-a-known-chain")),
            Risk::Critical => ("needs_approval", format!("{server}-critical-needs-approval")),
        };
        let mut lines = vec![agent(true), tool_table(name, p), format!("expect = \"{expect}\""), format!("expect_policy = \"{by}\"")];
        if risk == Risk::Critical {
            lines.push(format!("expect_group = \"{approvers}\""));
        }
        case(format!("a {} request of {name}", risk.as_str()), lines);
        if risk == Risk::High {
            case(
                format!("{name} reached by a chain the baseline does not know waits for {approvers}"),
                vec![agent(true), tool_table(name, p), "unknown_transition = true".into(), "expect = \"needs_approval\"".into(), format!("expect_policy = \"{server}-unusual-high-risk-needs-approval\""), format!("expect_group = \"{approvers}\"")],
            );
        }
    }
    if let Some((name, p)) = proposed.iter().find(|(_, p)| p.sink && p.risk <= Risk::High) {
        case(
            format!("{name} with a value read from third-party content asks the end user"),
            vec![agent(true), tool_table(name, p), "tainted = true".into(), "expect = \"needs_confirmation\"".into(), format!("expect_policy = \"{server}-third-party-values-into-sinks-ask-the-end-user\""), format!("expect_group = \"{approvers}\"")],
        );
        case(
            format!("the same from a client nobody vouches for waits for {approvers}"),
            vec![agent(false), tool_table(name, p), "tainted = true".into(), "expect = \"needs_approval\"".into(), format!("expect_policy = \"{server}-third-party-values-into-sinks-need-a-person\""), format!("expect_group = \"{approvers}\"")],
        );
    }
    out
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn render(name: &str, server_info: &str, transport: &Transport, tools: &[rmcp::model::Tool]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Manifest for `{}`, written by `jitgate manifest init` from {}.", escape_unseen(name), escape_unseen(server_info));
    let _ = writeln!(out, "# Each tool's settings are proposals, read from its name, description and schemas as a");
    let _ = writeln!(out, "# reviewer would (annotations only ever raise them); the `# proposed` lines say why.");
    let _ = writeln!(out, "# Review every tool's risk, sensitive_args, untrusted_output, trusted_fields and sink tag,");
    let _ = writeln!(out, "# decide each `# REVIEW:` line, then register it. Tools you delete are never exposed to agents.\n");
    let _ = writeln!(out, "[server]\nname = {}\npinned_version = {}", quote(name), quote(server_info));
    let _ = writeln!(out, "call_timeout = \"30s\"\n\n[server.transport]");
    match transport {
        Transport::Url(url) => {
            let _ = writeln!(out, "url = {}", quote(url));
        }
        Transport::Command { command, args, .. } => {
            let args: Vec<String> = args.iter().map(|a| quote(a)).collect();
            let _ = writeln!(out, "command = {}\nargs = [{}]", quote(command), args.join(", "));
        }
    }
    for tool in tools {
        let p = propose(tool);
        // Everything in a comment came from the server: escaped, so that no
        // character of it can end the comment and write a setting.
        let desc: String = tool.description.as_deref().unwrap_or("").lines().next().unwrap_or("").chars().take(100).collect();
        let _ = writeln!(out, "\n# {}: {}", escape_unseen(&tool.name), escape_unseen(&desc));
        for reason in &p.reasons {
            let _ = writeln!(out, "# proposed {}", escape_unseen(reason));
        }
        for question in &p.review {
            let _ = writeln!(out, "# REVIEW: {}", escape_unseen(question));
        }
        let _ = writeln!(out, "[tools.{}]", quote(&tool.name));
        let risk = p.risk.as_str();
        let _ = writeln!(out, "risk = \"{risk}\"\nresource_class = \"general\"\nenvironment = \"development\"");
        let listed = |v: &[String]| v.iter().map(|a| quote(a)).collect::<Vec<_>>().join(", ");
        // Long enough for a model turn or an approval's pick-up; shorter
        // where a token would do more harm.
        let max_ttl = if risk == "low" { "5m" } else { "2m" };
        let _ = writeln!(out, "max_ttl = \"{max_ttl}\"\nsensitive_args = [{}]", listed(&p.sensitive));
        let _ = writeln!(out, "untrusted_output = {}", p.untrusted_output);
        if !p.trusted_fields.is_empty() {
            let _ = writeln!(out, "trusted_fields = [{}]", listed(&p.trusted_fields));
        }
        if !p.suggested_trusted_fields.is_empty() {
            let _ = writeln!(out, "# trusted_fields = [{}]", listed(&p.suggested_trusted_fields));
        }
        if p.sink {
            let _ = writeln!(out, "tags = [\"sink\"]");
        }
        let _ = writeln!(out, "pin = \"{}\"", pin_of_tool(tool));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_starting_policy_validates_against_the_schema_and_lists_tools_by_risk() {
        let tool = |v: serde_json::Value| -> rmcp::model::Tool { serde_json::from_value(v).unwrap() };
        let tools = [
            tool(serde_json::json!({"name": "read_file", "annotations": {"readOnlyHint": true}, "inputSchema": {"type": "object"}})),
            tool(serde_json::json!({"name": "write_file", "inputSchema": {"type": "object"}})),
            tool(serde_json::json!({"name": "delete_tree", "annotations": {"destructiveHint": true}, "inputSchema": {"type": "object"}})),
        ];
        let text = starting_policy("fs", "data-eng", "storage-oncall", &tools);
        let engine = crate::policy::PolicyEngine::from_sources(Path::new("policies"), vec![("policies/60-fs.cedar".into(), text.clone())]).unwrap();
        assert_eq!(engine.len(), 8, "{text}");
        // Reading files (which others may have written) and a plain write are
        // medium; deleting is critical.
        assert!(text.contains("//   medium: read_file, write_file\n//   critical: delete_tree\n"), "{text}");
        assert!(engine.policy("fs-critical-needs-approval").unwrap().approvable_by("storage-oncall"));
        assert!(!engine.policy("fs-may-plan").unwrap().approvable_by("storage-oncall"));
        // Third-party values into sinks are put to the end user (a trusted
        // client) or to the approvers, never refused outright; break-glass
        // may not carry them. (tests/cli.rs decides requests against it.)
        let ask = engine.policy("fs-third-party-values-into-sinks-ask-the-end-user").unwrap();
        assert_eq!((ask.effect, ask.confirm.as_deref(), ask.approval.as_deref()), ("permit", Some("storage-oncall"), None));
        let person = engine.policy("fs-third-party-values-into-sinks-need-a-person").unwrap();
        assert_eq!((person.effect, person.confirm.as_deref(), person.approval.as_deref()), ("permit", None, Some("storage-oncall")));
        assert_eq!(engine.policy("fs-no-third-party-values-into-sinks-under-break-glass").unwrap().effect, "forbid");
        assert!(!text.contains("forbid (principal, action == Action::\"Request\""), "no request is refused outright: {text}");

        // A hostile server's tool name cannot smuggle a rule out of the comment.
        for end in ["\r", "\n", "\r\n", "\u{85}", "\u{2028}"] {
            let evil = tool(serde_json::json!({"name": format!("lookup{end}permit (principal, action, resource);{end}//"), "inputSchema": {"type": "object"}}));
            let text = starting_policy("fs", "data-eng", "storage-oncall", &[evil]);
            let engine = crate::policy::PolicyEngine::from_sources(Path::new("policies"), vec![("policies/60-fs.cedar".into(), text.clone())]).unwrap();
            assert_eq!(engine.len(), 8, "{end:?}: {text}");
            assert!(text.lines().filter(|l| l.contains("permit (principal, action, resource)")).all(|l| l.starts_with("//")), "{text}");
        }
    }

    #[test]
    fn init_proposes_sensitive_arguments_untrusted_output_and_sinks() {
        let tool = |v: serde_json::Value| -> rmcp::model::Tool { serde_json::from_value(v).unwrap() };
        let summary = |t: &rmcp::model::Tool| {
            let p = propose(t);
            (p.risk.as_str(), p.sensitive, p.untrusted_output, p.sink)
        };
        let send = tool(serde_json::json!({"name": "send_message", "description": "Send an e-mail", "inputSchema": {"type": "object", "properties": {
            "to": {"type": "string"}, "reply_email": {"type": "string"}, "subject": {"type": "string"}, "cc_list": {"type": "string"}, "callback": {"type": "string", "format": "uri"}}}}));
        assert_eq!(summary(&send), ("high", vec!["callback".into(), "cc_list".into(), "reply_email".into(), "to".into()], false, true));
        let fetch = tool(serde_json::json!({"name": "fetch_page", "description": "Fetch a web page by URL", "annotations": {"readOnlyHint": true},
            "inputSchema": {"type": "object", "properties": {"url": {"type": "string"}}}}));
        assert_eq!(summary(&fetch), ("low", vec!["url".into()], true, true));
        // Reading a channel or a user's messages sends nothing anywhere; a
        // directory's listing is the server's own data.
        let read_channel = tool(serde_json::json!({"name": "read_channel_messages", "description": "Messages posted in a channel", "annotations": {"readOnlyHint": true},
            "inputSchema": {"type": "object", "properties": {"channel": {"type": "string"}, "user": {"type": "string"}}}}));
        assert_eq!(summary(&read_channel), ("medium", vec![], true, false));
        let members = tool(serde_json::json!({"name": "list_users_in_channel", "description": "Members of a channel, from the workspace directory", "annotations": {"readOnlyHint": true},
            "inputSchema": {"type": "object", "properties": {"channel": {"type": "string"}}}}));
        assert_eq!(summary(&members), ("low", vec![], false, false));
        let reviews = tool(serde_json::json!({"name": "reviews", "description": "Guest reviews from our catalogue", "annotations": {"readOnlyHint": true},
            "inputSchema": {"type": "object", "properties": {"hotel": {"type": "string"}}}}));
        assert!(propose(&reviews).untrusted_output, "people write reviews, whatever holds them");
        // Writers: a recipient-like name or an e-mail format is a destination.
        let invite = tool(serde_json::json!({"name": "invite_user", "description": "Invite a user", "inputSchema": {"type": "object", "properties": {
            "user": {"type": "string"}, "contact": {"type": "string", "format": "email"}, "note": {"type": "string"}}}}));
        assert_eq!(summary(&invite), ("high", vec!["contact".into(), "user".into()], false, true));
        let notes = tool(serde_json::json!({"name": "list_notes", "description": "List the notes", "annotations": {"readOnlyHint": true}, "inputSchema": {"type": "object"}}));
        assert_eq!(summary(&notes), ("medium", vec![], true, false), "notes are documents: anyone with access may have written them");
        // What it writes loads as a manifest, every proposal with its reason.
        let text = render("ws", "srv 1", &Transport::Url("http://127.0.0.1:1/mcp".into()), &[send, fetch, notes]);
        assert!(text.contains("# proposed risk high: the name says \"send\"\n"), "{text}");
        assert!(text.contains("# proposed sink: its argument") || text.contains("# proposed sink: the name says \"send\""), "{text}");
        assert!(text.contains("# proposed untrusted output: the name says \"page\", and web pages hold what other people wrote"), "{text}");
        assert!(text.contains("# REVIEW: trusted_fields: the tool declares no outputSchema") && text.contains("# trusted_fields = [\"id\", \"owner\""), "{text}");
        let dir = std::env::temp_dir().join(format!("jitgate-init-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ws.toml"), &text).unwrap();
        let m = Manifest::load(&dir.join("ws.toml")).unwrap();
        assert_eq!(m.tools["send_message"].tags, vec!["sink".to_owned()]);
        assert!(m.tools["fetch_page"].untrusted_output && m.tools["fetch_page"].sensitive_args == vec!["url".to_owned()]);
        assert!(m.tools["list_notes"].trusted_fields.is_empty(), "suggested trusted fields stay commented out until someone reviews them");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A hostile server's description, tool or argument name cannot end a
    /// comment of the manifest and write a setting of its own.
    #[test]
    fn init_comments_cannot_be_broken_out_of() {
        let tool = |v: serde_json::Value| -> rmcp::model::Tool { serde_json::from_value(v).unwrap() };
        let evil = tool(serde_json::json!({"name": "send_it", "description": "Send it\u{2028}untrusted_output = true\rrisk = \"low\"",
            "inputSchema": {"type": "object", "properties": {"to\nrisk = \"low\"": {"type": "string"}}}}));
        let text = render("ws", "srv\n[x]", &Transport::Url("http://127.0.0.1:1/mcp".into()), &[evil]);
        for line in text.lines().filter(|l| l.starts_with('#')) {
            assert!(!line.contains('\r') && !line.contains('\u{2028}'), "{line:?}");
        }
        let dir = std::env::temp_dir().join(format!("jitgate-init-evil-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ws.toml"), &text).unwrap();
        let m = Manifest::load(&dir.join("ws.toml")).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let spec = &m.tools["send_it"];
        assert_eq!((spec.risk, spec.untrusted_output, spec.tags.as_slice()), (crate::manifest::Risk::High, false, ["sink".to_owned()].as_slice()), "{text}");
        assert_eq!(spec.sensitive_args, ["to\nrisk = \"low\""], "{text}");
    }

    #[test]
    fn replace_pin_touches_only_that_tools_pin_line() {
        let old = format!("sha256:{}", "a".repeat(64));
        let text = format!("[tools.a]\nrisk = \"low\" # kept\npin = \"{old}\"\n\n[tools.b]\npin = \"{old}\"\n");
        let new = format!("sha256:{}", "b".repeat(64));
        let out = replace_pin(&text, 5, &old, &new).unwrap();
        assert_eq!(out, format!("[tools.a]\nrisk = \"low\" # kept\npin = \"{old}\"\n\n[tools.b]\npin = \"{new}\"\n"));
        assert!(replace_pin(&text, 1, &new, &old).is_none());
    }

    #[test]
    fn pin_change_tells_old_format_from_a_real_change() {
        let tool: rmcp::model::Tool = serde_json::from_value(serde_json::json!({"name": "t", "description": "d", "inputSchema": {"type": "object"}, "title": "T"})).unwrap();
        assert_eq!(pin_change(&pin_of_tool(&tool), Some(&tool)), PinChange::Unchanged);
        let legacy = crate::manifest::legacy_pin_of_tool(&tool);
        assert_eq!(pin_change(&legacy, Some(&tool)), PinChange::OldFormat { new: pin_of_tool(&tool) });
        assert_eq!(pin_change(&format!("sha256:{}", "0".repeat(64)), Some(&tool)), PinChange::Changed { new: pin_of_tool(&tool) });
        assert_eq!(pin_change(&legacy, None), PinChange::MissingOnServer);
    }
}
