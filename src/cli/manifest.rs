//! `jitgate manifest init`: write a starting manifest, with pins, from a live server.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use tokio::sync::Notify;

use super::CliError;
use crate::downstream::connect;
use crate::manifest::{Manifest, Transport, pin_of_tool};

#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Connect to a live MCP server and write a manifest listing its tools with pins.
    ///
    /// Example: jitgate manifest init fs --out tool-manifests/fs.toml -- npx @modelcontextprotocol/server-filesystem /data
    Init(InitArgs),
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
    /// The command (and its arguments) that starts the server over stdio, after `--`.
    #[arg(last = true)]
    pub command: Vec<String>,
}

pub async fn run(cmd: ManifestCommand) -> Result<(), CliError> {
    let ManifestCommand::Init(a) = cmd;
    if let Some(out) = &a.out {
        if out.exists() && !a.force {
            return Err(CliError::Other(format!("{} exists; pass --force to overwrite it", out.display())));
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
        (None, None) => return Err(CliError::Other("give the server command after `--`, or --url URL".into())),
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
        tools: BTreeMap::new(),
    };
    let running = tokio::time::timeout(a.timeout, connect(&probe, Arc::new(Notify::new())))
        .await
        .map_err(|_| CliError::Downstream(format!("server did not start within {}", humantime::format_duration(a.timeout))))?
        .map_err(|e| CliError::Downstream(e.to_string()))?;
    let server_info = running.peer().peer_info().and_then(|i| i.server_info.clone()).map(|s| format!("{} {}", s.name, s.version)).unwrap_or_default();
    let tools = running.peer().list_all_tools().await.map_err(|e| CliError::Downstream(format!("tools/list failed: {e}")))?;
    let _ = running.cancel().await;
    let text = render(&a.name, &server_info, &transport, &tools);
    // Validate what we wrote with the real loader before handing it out.
    if let Some(out) = &a.out {
        std::fs::write(out, &text).map_err(|e| CliError::Other(format!("cannot write {}: {e}", out.display())))?;
        Manifest::load(out)?;
        eprintln!("wrote {} with {} tool(s) from {server_info}; review risk classes before registering it", out.display(), tools.len());
    } else {
        print!("{text}");
    }
    Ok(())
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn render(name: &str, server_info: &str, transport: &Transport, tools: &[rmcp::model::Tool]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Manifest for `{name}`, written by `jitgate manifest init` from {server_info}.");
    let _ = writeln!(out, "# Review every tool's risk class, sensitive arguments and untrusted_output before registering it.");
    let _ = writeln!(out, "# Tools you delete from this file are never exposed to agents.\n");
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
        let ann = tool.annotations.as_ref();
        // Annotations are hints from the server; they only choose a starting
        // value for a person to review, and never lower it below medium
        // unless the server says read-only.
        let risk = match (ann.and_then(|a| a.read_only_hint), ann.and_then(|a| a.destructive_hint)) {
            (Some(true), _) => "low",
            (_, Some(true)) => "critical",
            _ => "high",
        };
        let desc: String = tool.description.as_deref().unwrap_or("").lines().next().unwrap_or("").chars().take(100).collect();
        let _ = writeln!(out, "\n# {desc}");
        let _ = writeln!(out, "[tools.{}]", quote(&tool.name));
        let _ = writeln!(out, "risk = \"{risk}\"\nresource_class = \"general\"\nenvironment = \"development\"");
        let _ = writeln!(out, "max_ttl = \"60s\"\nsensitive_args = []\nuntrusted_output = false\npin = \"{}\"", pin_of_tool(tool));
    }
    out
}
