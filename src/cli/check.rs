//! `jitgate check`: validate everything a config names (including the Cedar
//! policies, against jitgate's schema, with file and line), and compare pins
//! with the live servers, so that a changed tool is caught before it is
//! withheld in production.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use serde_json::json;
use tokio::sync::Notify;

use super::{CliError, Deployment};
use crate::downstream::{WithheldReason, connect, expose};
use crate::manifest::Manifest;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The gateway config file.
    #[arg(long, env = "JITGATE_CONFIG")]
    pub config: PathBuf,
    /// Only validate files; do not start or connect to downstream servers.
    #[arg(long)]
    pub offline: bool,
    /// Print a JSON report on stdout.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: CheckArgs) -> Result<(), CliError> {
    let deployment = match Deployment::load(&args.config) {
        Ok(d) => d,
        Err(errors) => {
            if args.json {
                let list: Vec<_> = errors.0.iter().map(|e| json!({"file": e.file, "line": e.line, "column": e.column, "message": e.message})).collect();
                outln!("{}", json!({"ok": false, "errors": list, "servers": []}));
            }
            return Err(CliError::Config(errors));
        }
    };
    let mut problems: Vec<String> = Vec::new();
    let mut warnings = issuer_bindings(&deployment, &mut problems);
    for (manifest, _) in &deployment.manifests {
        warnings.extend(idle_trusted_fields(manifest));
    }
    warnings.extend(sinks_without_untrusted_reads(&deployment.manifests));
    warnings.extend(super::policy::unusable_tools(&deployment));
    let mut servers = Vec::new();
    if !args.offline {
        for (manifest, enabled) in &deployment.manifests {
            if !enabled {
                servers.push(json!({"name": manifest.name, "status": "disabled"}));
                continue;
            }
            servers.push(check_live(manifest, deployment.config.limits.startup_timeout, &mut problems, &mut warnings).await);
        }
    }
    if args.json {
        outln!("{}", json!({"ok": problems.is_empty(), "errors": problems, "warnings": warnings, "servers": servers, "policies": deployment.policy.len()}));
    } else {
        // The report is the result (stdout); warnings are diagnostics
        // (stderr), and the problems are the error that ends the command.
        outln!(
            "config {}: {} agent(s), {} server(s) registered",
            deployment.config.path.display(),
            deployment.agents.iter().count(),
            deployment.manifests.len()
        );
        outln!("  policies: {} valid against the Cedar schema, in {}", deployment.policy.len(), deployment.policy.dir.display());
        for s in &servers {
            outln!("  server {}: {}", s["name"].as_str().unwrap_or("?"), s["summary"].as_str().unwrap_or(s["status"].as_str().unwrap_or("")));
        }
        for w in &warnings {
            eprintln!("warning: {w}");
        }
    }
    if problems.is_empty() {
        if !args.json {
            outln!("ok");
        }
        Ok(())
    } else {
        Err(CliError::CheckFailed(format!("check found {} problem(s):\n{}", problems.len(), problems.join("\n"))))
    }
}

/// Which issuers may speak for which agents: an agent file naming an issuer
/// that does not exist is a problem; an issuer without a trust domain, which
/// speaks only for the agents that name it, is worth a warning.
fn issuer_bindings(deployment: &Deployment, problems: &mut Vec<String>) -> Vec<String> {
    let issuers = &deployment.config.identity.issuers;
    for agent in deployment.agents.iter() {
        for name in &agent.issuers {
            if !issuers.iter().any(|i| &i.name == name) {
                problems.push(format!("agent `{}` lists issuer `{name}` in `issuers`, but no [[identity.issuers]] has that name", agent.name));
            }
        }
    }
    issuers
        .iter()
        .filter(|i| i.trust_domain.is_none())
        .map(|i| {
            let named: Vec<&str> = deployment.agents.iter().filter(|a| a.issuers.contains(&i.name)).map(|a| a.name.as_str()).collect();
            format!(
                "issuer `{}` has no trust_domain: it may speak only for agents whose file lists it in `issuers` ({})",
                i.name,
                if named.is_empty() { "none does".to_owned() } else { named.join(", ") }
            )
        })
        .collect()
}

/// `trusted_fields` on a tool whose output is trusted anyway do nothing.
fn idle_trusted_fields(manifest: &Manifest) -> Vec<String> {
    manifest
        .tools
        .iter()
        .filter(|(_, t)| !t.trusted_fields.is_empty() && !t.untrusted_output)
        .map(|(name, t)| {
            format!(
                "{}:{}: tool `{name}` lists trusted_fields but its output is not marked untrusted (untrusted_output = false), so they change nothing; remove them, or set untrusted_output = true",
                manifest.path.display(),
                t.line
            )
        })
        .collect()
}

/// Taint needs both ends: a tool whose output is marked untrusted, where an
/// injected instruction can come from, and a sink it could steer. A server
/// with sinks but no untrusted output (what `manifest init` used to propose
/// for tools without annotations) leaves its sinks unguarded unless another
/// server's reads taint the task; with no untrusted output anywhere, taint
/// never fires at all. Either way the operator should hear it before serving.
fn sinks_without_untrusted_reads(manifests: &[(Manifest, bool)]) -> Vec<String> {
    let untrusted_tools = |m: &Manifest| m.tools.values().filter(|t| t.untrusted_output).count();
    let mut out = Vec::new();
    for (manifest, _) in manifests {
        let sinks: Vec<&str> = manifest.tools.iter().filter(|(_, t)| t.tags.iter().any(|tag| tag == "sink")).map(|(n, _)| n.as_str()).collect();
        if sinks.is_empty() || untrusted_tools(manifest) > 0 {
            continue;
        }
        let elsewhere: usize = manifests.iter().filter(|(m, enabled)| *enabled && m.name != manifest.name).map(|(m, _)| untrusted_tools(m)).sum();
        let at = format!("{}: server `{}` has sink tools ({}) but no tool with untrusted_output = true", manifest.path.display(), manifest.name, sinks.join(", "));
        let fix = "mark every tool that returns what other people wrote (mail, messages, web pages, files, reviews, transactions) untrusted_output = true";
        out.push(if elsewhere == 0 {
            format!("TAINT CAN NEVER FIRE: {at}, and no other registered server has one either, so a value an injected instruction planted reaches these sinks unchecked; {fix}")
        } else {
            format!("{at}: only what agents read from other servers' {elsewhere} untrusted tool(s) can taint a call to them; if any of its own tools returns third-party content, {fix}")
        });
    }
    out
}

/// Every property name anywhere in a JSON schema.
fn schema_properties(schema: &serde_json::Value, out: &mut Vec<String>) {
    match schema {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(props)) = map.get("properties") {
                out.extend(props.keys().cloned());
            }
            map.values().for_each(|v| schema_properties(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| schema_properties(v, out)),
        _ => {}
    }
}

/// `trusted_fields` work only for JSON results. A tool that declares an
/// outputSchema can be checked against it; one that declares none may
/// return text or YAML, where nothing is trusted (the gateway then logs a
/// warning per result). Either way the operator should hear it now.
fn trusted_fields_against_live(manifest: &Manifest, exposed: &[crate::downstream::ExposedTool]) -> Vec<String> {
    let mut out = Vec::new();
    for t in exposed.iter().filter(|t| !t.spec.trusted_fields.is_empty() && t.spec.untrusted_output) {
        let line = manifest.tools.get(&t.downstream_name).map(|s| s.line).unwrap_or(1);
        let at = format!("{}:{line}: tool `{}`", manifest.path.display(), t.downstream_name);
        match &t.definition.output_schema {
            None => out.push(format!(
                "{at}: trusted_fields ({}) apply only to JSON results, and the tool declares no outputSchema; if it returns text or YAML, every value counts as third-party (replies to a sender are then tainted) and the gateway logs a warning for each such result",
                t.spec.trusted_fields.join(", ")
            )),
            Some(schema) => {
                let mut props = Vec::new();
                schema_properties(&serde_json::Value::Object((**schema).clone()), &mut props);
                for f in t.spec.trusted_fields.iter().filter(|f| !props.contains(f)) {
                    out.push(format!("{at}: trusted field `{f}` is not a property of its outputSchema, so it will match nothing; check the spelling"));
                }
            }
        }
    }
    out
}

async fn check_live(manifest: &Manifest, timeout: std::time::Duration, problems: &mut Vec<String>, warnings: &mut Vec<String>) -> serde_json::Value {
    let name = &manifest.name;
    let connected = tokio::time::timeout(timeout, connect(manifest, Arc::new(Notify::new()))).await;
    let running = match connected {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            problems.push(format!("{}: server `{name}` unreachable: {e}", manifest.path.display()));
            return json!({"name": name, "status": "unreachable", "summary": format!("unreachable: {e}")});
        }
        Err(_) => {
            problems.push(format!("{}: server `{name}` did not start within {} s", manifest.path.display(), timeout.as_secs()));
            return json!({"name": name, "status": "unreachable", "summary": "start-up timed out"});
        }
    };
    let live = match running.peer().list_all_tools().await {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!("{}: server `{name}`: tools/list failed: {e}", manifest.path.display()));
            let _ = running.cancel().await;
            return json!({"name": name, "status": "error"});
        }
    };
    let unlisted: Vec<String> = live.iter().filter(|t| !manifest.tools.contains_key(t.name.as_ref())).map(|t| t.name.to_string()).collect();
    let (exposed, withheld) = expose(manifest, live);
    warnings.extend(trusted_fields_against_live(manifest, &exposed));
    for w in &withheld {
        let line = manifest.tools.get(&w.tool).map(|t| t.line).unwrap_or(1);
        let what = match &w.reason {
            WithheldReason::PinMismatch { .. } => "PIN MISMATCH, tool withheld",
            WithheldReason::PinOutdated { .. } => "PIN IN OLD FORMAT, tool withheld",
            WithheldReason::MissingOnServer => "missing on server",
            WithheldReason::InvalidSchema(_) => "invalid schema, tool withheld",
        };
        problems.push(format!("{}:{line}: tool `{}` of server `{name}`: {what}: {}", manifest.path.display(), w.tool, w.reason));
    }
    let _ = running.cancel().await;
    json!({
        "name": name,
        "status": "reachable",
        "exposed": exposed.iter().map(|t| t.exposed_name.clone()).collect::<Vec<_>>(),
        "withheld": withheld.iter().map(|w| json!({"tool": w.tool, "reason": w.reason.to_string()})).collect::<Vec<_>>(),
        "unlisted": unlisted,
        "summary": format!("{} exposed, {} withheld, {} offered but not in the manifest (never exposed)", exposed.len(), withheld.len(), unlisted.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(name: &str, tools: &str) -> Manifest {
        let dir = std::env::temp_dir().join(format!("jitgate-check-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, format!("[server]\nname = \"{name}\"\n[server.transport]\nurl = \"http://127.0.0.1:1/mcp\"\n{tools}")).unwrap();
        let m = Manifest::load(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        m
    }

    #[test]
    fn sinks_with_no_untrusted_read_anywhere_are_reported_loudly() {
        let pin = format!("sha256:{}", "0".repeat(64));
        let send = format!("[tools.send]\nrisk = \"high\"\nsensitive_args = [\"to\"]\ntags = [\"sink\"]\npin = \"{pin}\"\n");
        let read = |untrusted: bool| format!("[tools.read]\nrisk = \"low\"\nuntrusted_output = {untrusted}\npin = \"{pin}\"\n");
        let mail = manifest("mail", &format!("{send}{}", read(false)));
        let warnings = sinks_without_untrusted_reads(&[(mail.clone(), true)]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("TAINT CAN NEVER FIRE: ") && warnings[0].contains("server `mail` has sink tools (send)"), "{warnings:?}");
        // Another server's untrusted reads can taint its sinks: still said, less loudly.
        let web = manifest("web", &read(true));
        let warnings = sinks_without_untrusted_reads(&[(mail.clone(), true), (web.clone(), true)]);
        assert!(warnings.len() == 1 && !warnings[0].contains("NEVER") && warnings[0].contains("other servers' 1 untrusted tool(s)"), "{warnings:?}");
        // ... unless that server is disabled.
        assert!(sinks_without_untrusted_reads(&[(mail, true), (web, false)])[0].starts_with("TAINT CAN NEVER FIRE"));
        // A server with both ends, or with no sink, is fine.
        assert!(sinks_without_untrusted_reads(&[(manifest("ok", &format!("{send}{}", read(true))), true), (manifest("ro", &read(false)), true)]).is_empty());
    }
}
