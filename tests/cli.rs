//! The command line: `check`, `serve` with broken config, `keys`,
//! `identity mint`, `manifest init`, `--help`.

mod common;


use common::*;


#[test]
fn check_accepts_the_shipped_quick_start_and_manifests() {
    let cfg = repo_root().join("examples/quickstart/gateway.toml");
    let (code, _, err) = jitgate(&["check", "--offline", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    for m in ["workspace", "filesystem", "everything", "bank", "chat", "travel"] {
        jitgate::manifest::Manifest::load(&repo_root().join(format!("tool-manifests/{m}.toml"))).unwrap();
    }
}

#[test]
fn check_and_serve_report_a_broken_manifest_with_file_and_line() {
    let dep = Deployment::new(&Setup { workspace: false, ..Setup::default() });
    std::fs::write(
        dep.path("broken.toml"),
        "[server]\nname = \"broken\"\n[server.transport]\ncommand = \"x\"\n\n[tools.a]\nrisk = \"scary\"\npin = \"sha256:00\"\n",
    )
    .unwrap();
    dep.append_config("\n[[servers]]\nmanifest = \"broken.toml\"\n");
    let cfg = dep.config.to_str().unwrap();
    let (code, _, err) = jitgate(&["check", "--config", cfg]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("broken.toml:7:8: unknown variant `scary`"), "{err}");

    let (code, out, _) = jitgate(&["check", "--json", "--config", cfg]);
    assert_eq!(code, Some(2));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"][0]["line"], 7);

    // serve refuses to start rather than run with a registration it cannot read.
    let (code, _, err) = jitgate(&["serve", "--config", cfg, "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("broken.toml:7:8"), "{err}");
}

#[test]
fn check_refuses_a_per_caller_credential_with_nowhere_to_exchange_it_or_no_way_to_send_it() {
    let dep = Deployment::new(&Setup::default());
    let check = || jitgate(&["check", "--offline", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(check().0, Some(0), "{}", check().2);
    // The shipped workspace manifest with its static credential made per caller.
    dep.edit_workspace_manifest(|m| {
        m.lines()
            .filter(|l| !l.starts_with("from_file = "))
            .map(|l| if l == "env = \"WORKSPACE_API_TOKEN\"" { "header = \"Authorization\"\nexchange = { audience = \"https://ws.example.org\" }" } else { l })
            .collect::<Vec<_>>()
            .join("\n")
    });
    let (code, _, err) = check();
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no [token_exchange] section"), "{err}");
    dep.append_config("\n[token_exchange]\ntoken_endpoint = \"https://idp.example.org/token\"\nclient_id = \"jitgate\"\nclient_secret_env = \"TE\"\nissuers = [\"dev\"]\n");
    let (code, _, err) = check();
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("only a URL server can receive per request"), "{err}");
}

#[test]
fn check_reports_broken_config_and_agent_files() {
    let dep = Deployment::new(&Setup::default());
    // An agent naming a tool the manifest does not have, and a config typo.
    dep.add_agent("typo.toml", "name = \"typo\"\nid = \"spiffe://jitgate.local/agent/typo\"\nallowed_tools = [\"workspace__reed_note\"]\n");
    let (code, _, err) = jitgate(&["check", "--offline", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("workspace__reed_note") && err.contains("not in the manifest"), "{err}");
    std::fs::remove_file(dep.path("agents/typo.toml")).unwrap();

    dep.append_config("\n[limits2]\nx = 1\n");
    let (code, _, err) = jitgate(&["check", "--offline", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("gateway.toml:") && err.contains("unknown field `limits2`"), "{err}");

    let (code, _, err) = jitgate(&["check", "--config", "/nonexistent/gateway.toml"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot read file"), "{err}");
}

#[tokio::test]
async fn check_live_compares_pins_and_lists_unlisted_tools() {
    let dep = Deployment::new(&Setup { workspace_faults: true, ..Setup::default() });
    let (code, out, err) = jitgate(&["check", "--json", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ws = &v["servers"][0];
    assert_eq!(ws["exposed"].as_array().unwrap().len(), 9, "{ws}");
    let unlisted: Vec<&str> = ws["unlisted"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
    assert_eq!(unlisted, ["fault_crash", "fault_hang", "fault_rugpull"]);
    // read_inbox trusts `id` and `from`, which work only for JSON results;
    // the server declares no outputSchema, so check says so up front.
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("tool `read_inbox`: trusted_fields (id, from) apply only to JSON results"), "{warnings}");
    assert!(!warnings.contains("tool `fetch_page`"), "{warnings}");
}

/// `trusted_fields` on a tool whose output is trusted anyway change nothing,
/// and check says so; a manifest that uses them as meant gets no warning.
#[test]
fn check_warns_about_trusted_fields_that_do_nothing() {
    let dep = Deployment::new(&Setup::default());
    let cfg = dep.config.to_str().unwrap();
    let (code, out, err) = jitgate(&["check", "--offline", "--json", "--config", cfg]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains("trusted_fields"), "{out}");
    let manifest = std::fs::read_to_string(repo_root().join("tool-manifests/workspace.toml")).unwrap();
    let idle = manifest.replace("[tools.list_notes]\n", "[tools.list_notes]\ntrusted_fields = [\"name\"]\n");
    assert_ne!(idle, manifest);
    let path = dep.dir.path().join("workspace-idle.toml");
    std::fs::write(&path, idle).unwrap();
    let config = std::fs::read_to_string(&dep.config).unwrap().replace(&repo_root().join("tool-manifests/workspace.toml").display().to_string(), &path.display().to_string());
    std::fs::write(&dep.config, config).unwrap();
    let (code, out, err) = jitgate(&["check", "--offline", "--json", "--config", cfg]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("tool `list_notes` lists trusted_fields but its output is not marked untrusted"), "{out}");
}

#[test]
fn keys_generate_writes_a_private_key_once_and_prints_jwks() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.jwk");
    let (code, out, err) = jitgate(&["keys", "generate", "--out", key.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let jwks: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    assert!(jwks["keys"][0].get("d").is_none(), "the private part must never be printed");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let (code, _, err) = jitgate(&["keys", "generate", "--out", key.to_str().unwrap()]);
    assert_eq!(code, Some(4));
    assert!(err.contains("refusing to overwrite"), "{err}");
}

#[test]
fn identity_mint_names_known_agents_when_the_name_is_wrong() {
    let dep = Deployment::new(&Setup::default());
    let cfg = dep.config.to_str().unwrap();
    // The same mistake gets the same answer and exit code from every command.
    for args in [
        vec!["identity", "mint", "--config", cfg, "--agent", "nobody"],
        vec!["revoke", "--config", cfg, "--agent", "nobody", "--reason", "test"],
        vec!["agents", "quarantine", "nobody", "--reason", "test", "--config", cfg],
        vec!["trace", "--agent", "nobody", "--config", cfg],
        vec!["baseline", "learn", "--agent", "nobody", "--config", cfg],
        vec!["policy", "explain", "--agent", "nobody", "--tool", "workspace__read_note", "--config", cfg],
    ] {
        let (code, _, err) = jitgate(&args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains("no agent named `nobody`") && err.contains("known agents: janitor, triage"), "{args:?}: {err}");
    }
    // An agent whose id (an OAuth subject) is another agent's name: commands
    // that take ids refuse to guess, commands that take names use the name.
    dep.add_agent("helper.toml", "name = \"helper\"\nid = \"janitor\"\nissuers = [\"dev\"]\nteam = \"support\"\nallowed_tools = []\n");
    let (code, _, err) = jitgate(&["revoke", "--config", cfg, "--agent", "janitor", "--reason", "test"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is the name of agent spiffe://jitgate.local/agent/janitor and the id of agent `helper`"), "{err}");
    let (code, out, err) = jitgate(&["identity", "mint", "--config", cfg, "--agent", "janitor"]);
    assert_eq!(code, Some(0), "{err}");
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(out.trim().split('.').nth(1).unwrap()).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(claims["sub"], "spiffe://jitgate.local/agent/janitor", "the agent named janitor, not the one whose id is `janitor`");
}

/// A token longer-lived than its issuer's max_lifetime would be refused by
/// the gateway on every request: minting one is refused instead, saying
/// the longest it may be.
#[test]
fn identity_mint_refuses_a_ttl_the_gateway_would_refuse() {
    let dep = Deployment::new(&Setup::default());
    let cfg = dep.config.to_str().unwrap();
    let out_file = dep.path("long.jwt");
    for args in [
        vec!["identity", "mint", "--config", cfg, "--agent", "triage", "--ttl", "48h"],
        vec!["identity", "mint", "--config", cfg, "--agent", "triage", "--ttl", "48h", "--out", out_file.to_str().unwrap()],
        vec!["identity", "mint", "--config", cfg, "--approver", "alice@example.org", "--groups", "platform-oncall", "--ttl", "48h"],
    ] {
        let (code, out, err) = jitgate(&args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: no token: {out}");
        assert!(err.contains("--ttl 2days is longer than issuer") && err.contains("max_lifetime of 1day") && err.contains("identity_lifetime_too_long"), "{args:?}: {err}");
    }
    assert!(!out_file.exists());
    let (code, out, err) = jitgate(&["identity", "mint", "--config", cfg, "--agent", "triage", "--ttl", "24h"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim().split('.').count(), 3, "{out}");
}

/// The subcommands a `-h` screen lists.
fn subcommands(help: &str) -> Vec<String> {
    help.split("Commands:\n")
        .nth(1)
        .map(|rest| rest.lines().take_while(|l| l.starts_with("  ")).filter_map(|l| l.split_whitespace().next()).filter(|c| *c != "help").map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Every command and subcommand has help, and every option in it says what
/// it is for (a bare `--config <CONFIG>` with no words helps nobody).
#[test]
fn every_command_has_help_and_every_option_a_description() {
    let mut pending = vec![Vec::<String>::new()];
    let mut seen = 0;
    while let Some(path) = pending.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("-h");
        let (code, out, err) = jitgate(&args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert!(out.contains("Usage:"), "{args:?}: {out}");
        seen += 1;
        let options: Vec<&str> = out.split("Options:\n").nth(1).unwrap_or("").lines().collect();
        let is_option = |l: &str| l.trim_start().starts_with('-');
        for (i, line) in options.iter().enumerate().filter(|(_, l)| is_option(l)) {
            // `  -x, --name <VALUE>  what it is for`, or (clap's wide layout)
            // the description on the next, further indented line.
            let inline = line.trim_start().split("  ").filter(|part| !part.trim().is_empty()).count() > 1;
            let indent = |l: &str| l.len() - l.trim_start().len();
            let below = options.get(i + 1).is_some_and(|next| !is_option(next) && !next.trim().is_empty() && indent(next) > indent(line));
            assert!(inline || below, "{args:?}: option without a description: {line:?}");
        }
        for sub in subcommands(&out) {
            let mut next = path.clone();
            next.push(sub);
            pending.push(next);
        }
    }
    assert!(seen > 25, "walked only {seen} help screens");
    let (code, _, err) = jitgate(&["serve"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--config"), "{err}");
}

/// `JITGATE_CONFIG` stands in for `--config` in every command.
#[test]
fn the_config_can_come_from_the_environment() {
    let dep = Deployment::new(&Setup::default());
    let out = std::process::Command::new(jitgate_bin()).args(["check", "--offline"]).env("JITGATE_CONFIG", &dep.config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = std::process::Command::new(jitgate_bin()).args(["identity", "mint", "--agent", "triage"]).env("JITGATE_CONFIG", &dep.config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim().split('.').count(), 3, "a JWT");
    // --config still wins over the environment.
    let out = std::process::Command::new(jitgate_bin())
        .args(["check", "--offline", "--config"])
        .arg(&dep.config)
        .env("JITGATE_CONFIG", "/nonexistent/gateway.toml")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn check_and_serve_report_policy_errors_with_file_and_line() {
    let dep = Deployment::new(&Setup {
        policies: vec![
            ("good.cedar".into(), "permit (principal, action, resource);\n".into()),
            ("syntax.cedar".into(), "// a comment\npermit (principal, action resource);\n".into()),
            ("schema.cedar".into(), "permit (principal, action == Action::\"Request\", resource)\nwhen { principal.clearance > 3 };\n".into()),
        ],
        ..Setup::default()
    });
    let cfg = dep.config.to_str().unwrap();
    let (code, _, err) = jitgate(&["check", "--offline", "--config", cfg]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("syntax.cedar:2:"), "{err}");
    assert!(err.contains("schema.cedar:2:") && err.contains("clearance"), "{err}");
    // The gateway does not start on a policy set that does not validate.
    let (code, _, err) = jitgate(&["serve", "--config", cfg, "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("syntax.cedar:2:"), "{err}");
    // Fixed: check passes and reports the policies.
    std::fs::remove_file(dep.path("policies/syntax.cedar")).unwrap();
    std::fs::remove_file(dep.path("policies/schema.cedar")).unwrap();
    let (code, out, err) = jitgate(&["check", "--offline", "--config", cfg]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("policies: 1 valid") && out.ends_with("ok\n"), "the report is the result, on stdout: {out}");
    // The schema is printable for policy authors.
    let (code, out, _) = jitgate(&["policy", "schema"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("action BreakGlass"));
}

/// The state directory and the store are created private to their owner.
#[cfg(unix)]
#[tokio::test]
async fn the_state_directory_and_store_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let mode = |p: &str| std::fs::metadata(dep.path(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("state"), 0o700);
    assert_eq!(mode("state/jitgate.sqlite"), 0o600);
    assert_eq!(mode("state/keys"), 0o700);
}

/// `check` says which issuers may speak for which agents: an agent file
/// naming an unknown issuer fails, an issuer without a trust domain is a
/// warning naming the agents it speaks for.
#[test]
fn check_reports_issuer_bindings() {
    let dep = Deployment::new(&Setup::default());
    dep.append_config("\n[[identity.issuers]]\nname = \"loose\"\niss = \"https://loose.test\"\npublic_keys = [\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"]\n");
    dep.add_agent("svc.toml", "name = \"svc\"\nid = \"spiffe://other.test/agent/svc\"\nallowed_tools = []\nissuers = [\"loose\"]\n");
    let (code, out, err) = jitgate(&["check", "--offline", "--json", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("issuer `loose` has no trust_domain") && warnings.contains("svc"), "{warnings}");
    dep.add_agent("typo.toml", "name = \"typo\"\nid = \"spiffe://other.test/agent/typo\"\nallowed_tools = []\nissuers = [\"lose\"]\n");
    let (code, _, err) = jitgate(&["check", "--offline", "--config", dep.config.to_str().unwrap()]);
    assert_ne!(code, Some(0));
    assert!(err.contains("agent `typo` lists issuer `lose`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_revoked_while_no_gateway_runs_reads_as_revoked_everywhere() {
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let triage = gw.connect_modern(&dep.mint("triage")).await;
    let task = begin(&triage, serde_json::json!([{"name": "read", "tools": ["workspace__read_note"]}])).await.unwrap();
    drop(triage);
    gw.stop();
    let cfg = dep.config.to_str().unwrap();
    let outcome = |args: &[&str]| {
        let (code, out, err) = jitgate(args);
        assert_eq!(code, Some(0), "{err}");
        out
    };
    assert!(outcome(&["trace", &task, "--json", "--config", cfg]).contains("\"outcome\": \"open\""));
    let (code, _, err) = jitgate(&["revoke", "--task", &task, "--reason", "incident 9", "--config", cfg]);
    assert_eq!(code, Some(0), "{err}");
    let tree: serde_json::Value = serde_json::from_str(&outcome(&["trace", &task, "--json", "--config", cfg])).unwrap();
    assert!(tree["outcome"].as_str().unwrap().starts_with("revoked") && tree["outcome"].as_str().unwrap().contains("incident 9"), "{tree}");
    let list: serde_json::Value = serde_json::from_str(&outcome(&["trace", "--agent", "triage", "--json", "--config", cfg])).unwrap();
    assert!(list[0]["outcome"].as_str().unwrap().starts_with("revoked"), "{list}");
    assert!(outcome(&["trace", &task, "--config", cfg]).contains("revoked"));
}

#[test]
fn output_into_a_pipe_whose_reader_left_ends_quietly() {
    let dep = Deployment::new(&Setup::default());
    // Enough audit records that the export outgrows the pipe's buffer.
    std::fs::create_dir_all(dep.path("state")).unwrap();
    let store = jitgate::store::SqliteStore::open(&dep.path("state/jitgate.sqlite")).unwrap();
    for i in 0..2000 {
        let event = jitgate::audit::Event::new("test.filler", None, None, serde_json::json!({"i": i, "pad": "x".repeat(100)}));
        jitgate::store::Store::append_audit(&store, &event, 1_800_000_000).unwrap();
    }
    drop(store);
    let mut child = std::process::Command::new(jitgate_bin())
        .args(["audit", "export", "--config", dep.config.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, as `| head -1` would, then go away.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert!(first.contains("test.filler"), "{first}");
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

#[test]
fn logs_are_json_lines_when_asked_and_a_bad_filter_is_said_not_ignored() {
    let dep = Deployment::new(&Setup::default());
    let mut child = std::process::Command::new(jitgate_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--config", dep.config.to_str().unwrap()])
        .env("JITGATE_LOG_FORMAT", "json")
        .env("JITGATE_LOG", "info,verbose")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut lines = Vec::new();
    for line in std::io::BufRead::lines(stderr).map_while(Result::ok) {
        let listening = line.contains("listening on");
        lines.push(line);
        if listening || lines.len() > 200 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    // The refusal of the filter comes first, as plain text (before logging starts).
    assert!(lines[0].contains("`verbose` ignored"), "{lines:?}");
    // Then log records, one JSON object per line, until the address line
    // people and scripts read (plain text, on purpose).
    let (address, logged) = lines[1..].split_last().unwrap();
    assert!(address.starts_with("jitgate listening on http://127.0.0.1:"), "{address}");
    let records: Vec<serde_json::Value> = logged.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert!(!records.is_empty() && records.iter().all(|r| r["level"].is_string() && r["fields"]["message"].is_string()), "{records:?}");
    assert!(records.iter().any(|r| r["fields"]["message"] == "gateway starting"), "{records:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_looked_up_by_its_id_as_the_trail_names_it() {
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let triage = gw.connect_modern(&dep.mint("triage")).await;
    let task = begin(&triage, serde_json::json!([{"name": "read", "tools": ["workspace__read_note"]}])).await.unwrap();
    let granted = grant(&triage, serde_json::json!({"task": task, "tool": "workspace__read_note", "arguments": {"name": "welcome.md"}, "purpose": "test"})).await.unwrap();
    let (token, jti) = (granted["token"].as_str().unwrap().to_owned(), granted["jti"].as_str().unwrap().to_owned());
    let r = call_with_token(&triage, "workspace__read_note", serde_json::json!({"name": "welcome.md"}), &token).await.unwrap();
    assert_eq!(refusal_code(&r), None, "{}", text_of(&r));
    let cfg = dep.config.to_str().unwrap();
    // By id, as `trace`, the audit trail and `revoke --token` name it.
    let (code, out, err) = jitgate(&["token", "inspect", &jti, "--json", "--config", cfg]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["jti"].as_str(), v["state"].as_str(), v["tool"].as_str()), (Some(jti.as_str()), Some("consumed"), Some("workspace__read_note")), "{v}");
    let (code, out, _) = jitgate(&["token", "inspect", &jti, "--config", cfg]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with(&format!("token {jti}")) && out.contains("consumed"), "{out}");
    // The token itself shows its id first too, and never the token.
    let (code, out, _) = jitgate(&["token", "inspect", &token, "--config", cfg]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with(&format!("token {jti} ")) && !out.contains(&token), "{out}");
    // An unknown id and garbage say what they are.
    let (code, _, err) = jitgate(&["token", "inspect", "nope123", "--config", cfg]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no token `nope123`"), "{err}");
    let (code, _, err) = jitgate(&["token", "inspect", "not a token!", "--config", cfg]);
    assert_eq!(code, Some(2));
    assert!(err.contains("token id"), "{err}");
}

#[test]
fn a_server_that_does_not_start_is_explained_by_its_own_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.toml");
    // What npx prints (then gives up) when it cannot ask whether to install.
    let script = "echo 'Need to install the following packages: @example/server' >&2; echo 'Ok to proceed? (y)' >&2; exit 1";
    let (code, _, err) = jitgate(&["manifest", "init", "x", "--out", out.to_str().unwrap(), "--", "sh", "-c", script]);
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains("last words on stderr") && err.contains("Need to install the following packages"), "{err}");
    assert!(!out.exists());
}

#[test]
fn check_names_a_registered_tool_that_no_policy_lets_anyone_use() {
    let dep = Deployment::new(&Setup { policies: quickstart_policies(), ..Setup::default() });
    // A new server, listed in an agent file, but no policy mentions it yet.
    let manifest = std::fs::read_to_string(repo_root().join("tool-manifests/workspace.toml")).unwrap();
    let notes = dep.path("notes.toml");
    std::fs::write(&notes, manifest.replacen("name = \"workspace\"", "name = \"notes\"", 1)).unwrap();
    dep.append_config(&format!("\n[[servers]]\nmanifest = {:?}\ncommand = {:?}\n", notes.display().to_string(), workspace_server_bin().display().to_string()));
    dep.add_agent("reader.toml", "name = \"reader\"\nid = \"spiffe://jitgate.local/agent/reader\"\nteam = \"support\"\nallowed_tools = [\"notes__read_note\"]\n");
    let cfg = dep.config.to_str().unwrap();
    let (code, _, err) = jitgate(&["check", "--offline", "--config", cfg]);
    assert_eq!(code, Some(0), "warnings do not fail the check: {err}");
    assert!(err.contains("tool `notes__read_note` is allowed to reader but no policy permits action begin-task"), "{err}");
    assert!(!err.contains("`workspace__read_note` is allowed"), "the shipped server's tools are usable: {err}");
    // Once a policy lets the team use it, the warning goes.
    std::fs::write(dep.path("policies/70-notes.cedar"), "permit (principal in Team::\"support\", action, resource in Server::\"notes\");\n").unwrap();
    let (code, _, err) = jitgate(&["check", "--offline", "--config", cfg]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("notes__read_note"), "{err}");
}

/// Issue 16, item 1: registration is complete with `manifest init`'s starting
/// policy. Without it the new server's tools are allowed to the agent but no
/// policy lets anyone use them (`check` says so); with it, `check` is clean,
/// a low-risk call runs and a critical one waits for a person, as in the
/// quick start's own policies.
#[tokio::test]
async fn manifest_init_writes_a_starting_policy_that_makes_a_new_server_usable() {
    let dep = Deployment::new(&Setup { policies: quickstart_policies(), ..Setup::default() });
    let ws = workspace_server_bin().display().to_string();
    let state = dep.path("notes-state").display().to_string();
    let manifest = dep.path("notes.toml");
    let policy = dep.path("policies/60-notes.cedar");
    let init = |extra: &[&str]| {
        let mut args = vec!["manifest", "init", "notes", "--out", manifest.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", ws.as_str(), "--state", state.as_str()]);
        jitgate(&args)
    };
    // The policy must say whose it is, and an odd team name is refused.
    let (code, _, err) = init(&["--policy", policy.to_str().unwrap()]);
    assert_eq!(code, Some(2), "clap refuses --policy without --team: {err}");
    assert!(err.contains("--team"), "{err}");
    let (code, _, err) = init(&["--policy", policy.to_str().unwrap(), "--team", "support\") when {true"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--team") && err.contains("letters, digits"), "{err}");
    assert!(!manifest.exists() && !policy.exists(), "nothing is written when the arguments are refused");

    dep.append_config(&format!("\n[[servers]]\nmanifest = {:?}\n", manifest.display().to_string()));
    dep.add_agent("reader.toml", "name = \"reader\"\nid = \"spiffe://jitgate.local/agent/reader\"\nteam = \"support\"\nallowed_tools = [\"notes__read_note\", \"notes__delete_note\"]\n");
    let cfg = dep.config.to_str().unwrap();
    let (code, _, err) = init(&[]);
    assert_eq!(code, Some(0), "{err}");
    let (_, _, err) = jitgate(&["check", "--offline", "--config", cfg]);
    assert!(err.contains("tool `notes__read_note` is allowed to reader but no policy permits"), "without a policy the server is unusable: {err}");

    let (code, out, err) = init(&["--force", "--policy", policy.to_str().unwrap(), "--team", "support"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("60-notes.cedar") && out.contains("jitgate check"), "{out}");
    let (code, _, err) = jitgate(&["check", "--offline", "--config", cfg]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("notes__"), "every tool of the new server is usable now: {err}");
    // Written once, not overwritten by accident.
    let (code, _, err) = init(&["--policy", policy.to_str().unwrap(), "--team", "support"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("exists; pass --force"), "{err}");

    let gw = Gateway::start(&dep);
    gw.wait_server("notes", "ready").await;
    let reader = gw.connect_modern(&dep.mint("reader")).await;
    let task = begin(&reader, serde_json::json!([{"name": "tidy", "tools": ["notes__read_note", "notes__delete_note"]}])).await.unwrap();
    let token = request(&reader, &task, "notes__read_note", serde_json::json!({"name": "welcome.md"})).await.unwrap();
    let r = call_with_token(&reader, "notes__read_note", serde_json::json!({"name": "welcome.md"}), &token).await.unwrap();
    assert_eq!(r.is_error, Some(false), "{}", text_of(&r));
    let held = grant(&reader, serde_json::json!({"task": task, "tool": "notes__delete_note", "arguments": {"name": "welcome.md"}, "purpose": "tidy"})).await.unwrap();
    assert_eq!(held["decision"], "pending_approval", "a critical tool waits for a person: {held}");
}

/// An agent file that allows tools of a server nobody registered is reported
/// at the file, line and column of the entry, like every other config error.
#[test]
fn an_agent_file_error_names_its_file_and_line() {
    let dep = Deployment::new(&Setup::default());
    dep.add_agent("stray.toml", "name = \"stray\"\nid = \"spiffe://jitgate.local/agent/stray\"\nallowed_tools = [\n  \"workspace__read_note\",\n  \"nosuch__read\",\n]\n");
    let (code, _, err) = jitgate(&["check", "--offline", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    let at = format!("{}:5:3: agent `stray`: allowed tool pattern for server `nosuch`", dep.path("agents/stray.toml").display());
    assert!(err.contains(&at), "expected {at:?} in:\n{err}");
}

/// Issue 24, item 7: `check` says so when a server has sinks but nothing
/// marked untrusted_output, so taint could never fire for it: loudly when no
/// registered server has an untrusted read at all. A warning, not a failure.
#[test]
fn check_warns_when_sinks_have_no_untrusted_reads_to_be_tainted_by() {
    let dep = Deployment::new(&Setup::default());
    let cfg = dep.config.to_str().unwrap();
    let shipped = repo_root().join("tool-manifests/workspace.toml").display().to_string();
    let original = std::fs::read_to_string(&dep.config).unwrap();
    let (code, _, err) = jitgate(&["check", "--offline", "--config", cfg]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("no tool with untrusted_output"), "the shipped manifest marks its untrusted reads: {err}");

    // The workspace manifest as a team would have it after accepting weak
    // proposals: every output trusted.
    let manifest = std::fs::read_to_string(&shipped).unwrap();
    let trusting: String = manifest.replace("untrusted_output = true", "untrusted_output = false").lines().filter(|l| !l.starts_with("trusted_fields")).map(|l| format!("{l}\n")).collect();
    let path = dep.path("workspace-trusting.toml");
    std::fs::write(&path, &trusting).unwrap();
    std::fs::write(&dep.config, original.replace(&shipped, &path.display().to_string())).unwrap();
    let (code, _, err) = jitgate(&["check", "--offline", "--config", cfg]);
    assert_eq!(code, Some(0), "a warning does not fail the check: {err}");
    assert!(
        err.contains("warning: TAINT CAN NEVER FIRE: ") && err.contains("server `workspace` has sink tools (fetch_page, send_message, share_note) but no tool with untrusted_output = true"),
        "{err}"
    );

    // With the shipped server back and the trusting copy beside it under
    // another name, the copy's sinks can still be tainted by the other's reads.
    let notify = dep.path("notify.toml");
    std::fs::write(&notify, trusting.replacen("name = \"workspace\"", "name = \"notify\"", 1)).unwrap();
    std::fs::write(&dep.config, format!("{original}\n[[servers]]\nmanifest = {:?}\ncommand = {:?}\n", notify.display().to_string(), workspace_server_bin().display().to_string())).unwrap();
    let (code, out, err) = jitgate(&["check", "--offline", "--json", "--config", cfg]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("server `notify` has sink tools") && warnings.contains("other servers' 2 untrusted tool(s)"), "{warnings}");
    assert!(!warnings.contains("NEVER") && !warnings.contains("server `workspace` has sink"), "{warnings}");
}

/// Issue 24, item 7: `manifest init` on servers nobody here wrote proposes
/// what a reviewer would: on the official filesystem server, reading a file
/// returns what others wrote (untrusted), a listing does not, an overwrite or
/// a move is high risk and the paths a write takes are sensitive; every
/// proposal says why, and what the file sets loads and passes `check`.
#[test]
fn manifest_init_proposes_taint_for_the_npm_filesystem_server() {
    let dep = Deployment::new(&Setup::default());
    let files = dep.path("agent-files");
    std::fs::create_dir_all(&files).unwrap();
    let out = dep.path("fs.toml");
    let server = node_bin_dir().join("mcp-server-filesystem").display().to_string();
    let (code, said, err) = jitgate(&["manifest", "init", "fs", "--out", out.to_str().unwrap(), "--", &server, files.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    // What it did is the command's result: on stdout.
    assert!(said.contains("marked `# REVIEW:`"), "{said}");
    let m = jitgate::manifest::Manifest::load(&out).unwrap();
    let t = |name: &str| m.tools.get(name).unwrap_or_else(|| panic!("{name} missing"));
    use jitgate::manifest::Risk::*;
    for read in ["read_text_file", "read_media_file", "read_multiple_files"] {
        assert!(t(read).untrusted_output && t(read).risk == Medium && t(read).sensitive_args.is_empty() && t(read).tags.is_empty(), "{read}: {:?}", t(read));
    }
    for listing in ["list_directory", "directory_tree", "get_file_info", "list_allowed_directories"] {
        assert!(!t(listing).untrusted_output && t(listing).risk == Low, "{listing}: {:?}", t(listing));
    }
    assert_eq!((t("write_file").risk, t("write_file").sensitive_args.as_slice()), (High, ["path".to_owned()].as_slice()));
    assert_eq!((t("move_file").risk, t("move_file").sensitive_args.as_slice()), (High, ["destination".to_owned(), "source".to_owned()].as_slice()));
    assert_eq!(t("create_directory").risk, Medium);
    assert!(m.tools.values().all(|t| t.tags.is_empty()), "nothing here sends data anywhere");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("# proposed risk high: the name says \"write\"; the description says \"overwrite\""), "{text}");
    assert!(text.contains("# proposed untrusted output: the name says \"file\", and files and documents hold what other people wrote"), "{text}");

    dep.append_config(&format!("\n[[servers]]\nmanifest = {:?}\n", out.display().to_string()));
    let (code, _, err) = jitgate(&["check", "--config", dep.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "the proposals pass check against the live server: {err}");
    assert!(!err.contains("fs.toml") || !err.contains("trusted_fields"), "no idle or unmatched trusted_fields: {err}");
}

/// Register the example server as `notes` with `manifest init`'s manifest
/// and starting policy for team support (approvers `notes-oncall`), plus
/// agent files: (name, extra TOML). Returns the config path.
fn notes_with_starting_policy(dep: &Deployment, agents: &[(&str, &str)]) -> String {
    let (manifest, policy) = (dep.path("notes.toml"), dep.path("policies/60-notes.cedar"));
    let state = dep.path("notes-state").display().to_string();
    let ws = workspace_server_bin().display().to_string();
    let (code, _, err) = jitgate(&[
        "manifest", "init", "notes", "--out", manifest.to_str().unwrap(), "--policy", policy.to_str().unwrap(), "--team", "support",
        "--approvers", "notes-oncall", "--", &ws, "--state", &state,
    ]);
    assert_eq!(code, Some(0), "{err}");
    let m = jitgate::manifest::Manifest::load(&manifest).unwrap();
    let send = &m.tools["send_message"];
    assert!(send.tags.contains(&"sink".to_owned()) && send.sensitive_args.contains(&"to".to_owned()), "{send:?}");
    assert_eq!(m.tools["delete_note"].risk, jitgate::manifest::Risk::Critical);
    dep.append_config(&format!("\n[[servers]]\nmanifest = {:?}\n", manifest.display().to_string()));
    for (name, extra) in agents {
        dep.add_agent(
            &format!("{name}.toml"),
            &format!("name = \"{name}\"\nid = \"spiffe://jitgate.local/agent/{name}\"\nteam = \"support\"\nallowed_tools = [\"notes__*\"]\n{extra}"),
        );
    }
    let cfg = dep.config.display().to_string();
    let (code, _, err) = jitgate(&["check", "--offline", "--config", &cfg]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("no policy permits"), "{err}");
    cfg
}

/// `jitgate policy explain --json` for one request: (decision, approval
/// group, ids of the deciding policies).
fn explain(cfg: &str, agent: &str, tool: &str, extra: &[&str]) -> (String, String, Vec<String>) {
    let mut args = vec!["policy", "explain", "--json", "--config", cfg, "--agent", agent, "--tool", tool];
    args.extend_from_slice(extra);
    let (code, out, err) = jitgate(&args);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let ids = v["policies"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect();
    (v["decision"].as_str().unwrap().to_owned(), v["approval_group"].as_str().unwrap_or_default().to_owned(), ids)
}

/// Issue 24, item 6: the starting policy `manifest init --policy` writes
/// neither runs nor refuses a sink call that carries a third-party value: it
/// asks the end user where the agent file vouches for the client, and sends
/// it to the approvers' group otherwise (an unattended client's own "yes"
/// counts for nothing). The same call with the user's own values runs.
#[test]
fn the_starting_policy_asks_the_end_user_about_third_party_values_in_sinks() {
    let dep = Deployment::new(&Setup { policies: quickstart_policies(), ..Setup::default() });
    let cfg = notes_with_starting_policy(&dep, &[("helper", "[end_user]\nclient_trusted = true\n"), ("robot", "")]);
    let send = |agent: &str, extra: &[&str]| explain(&cfg, agent, "notes__send_message", extra);
    let ask = "notes-third-party-values-into-sinks-ask-the-end-user".to_owned();
    let person = "notes-third-party-values-into-sinks-need-a-person".to_owned();

    assert_eq!(send("helper", &["--tainted"]), ("needs_confirmation".into(), "notes-oncall".into(), vec![ask.clone()]));
    assert_eq!(send("helper", &["--tainted", "--confirmed-by-end-user"]).0, "allow");
    // A client nobody vouches for: a person decides, whatever the client answered.
    assert_eq!(send("robot", &["--tainted"]), ("needs_approval".into(), "notes-oncall".into(), vec![person.clone()]));
    assert_eq!(send("robot", &["--tainted", "--confirmed-by-end-user"]).0, "needs_approval");
    assert_eq!(send("robot", &["--tainted", "--approved-by-group", "notes-oncall"]).0, "allow");
    assert_eq!(send("helper", &["--tainted", "--end-user-client-trusted", "false"]).2, vec![person]);
    // Issue 24 item 4: a write whose other arguments carry text a third
    // party wrote is put to the same people; a note (a medium-risk write
    // that sends nothing) with such text is not.
    assert_eq!(send("helper", &["--text-from-third-party"]), ("needs_confirmation".into(), "notes-oncall".into(), vec![ask.clone()]));
    assert_eq!(send("robot", &["--text-from-third-party"]).0, "needs_approval");
    assert_eq!(explain(&cfg, "helper", "notes__write_note", &["--text-from-third-party"]).0, "allow");
    // The user's own values go out directly, for either agent.
    assert_eq!(send("helper", &[]).0, "allow");
    assert_eq!(send("robot", &[]).0, "allow");
    // The end user does not lift what goes to a person anyway: an unusual
    // chain into a high-risk tool, a critical tool.
    assert_eq!(send("helper", &["--tainted", "--unknown-transition"]), ("needs_approval".into(), "notes-oncall".into(), vec!["notes-unusual-high-risk-needs-approval".to_owned()]));
    assert_eq!(explain(&cfg, "helper", "notes__delete_note", &["--tainted"]).0, "needs_approval");
    // Far outside the baseline, nothing goes (no rule of the starting policy).
    assert_eq!(send("helper", &["--tainted", "--baseline-score", "95"]).0, "deny");
    // Break-glass never carries the value: a team's break-glass permit for
    // the server is overruled.
    std::fs::write(dep.path("policies/70-bg.cedar"), "permit (principal in Team::\"support\", action == Action::\"BreakGlass\", resource in Server::\"notes\");\n").unwrap();
    let bg = |extra: &[&str]| explain(&cfg, "helper", "notes__send_message", &[&["--action", "break-glass", "--justification", "INC-1"], extra].concat());
    assert_eq!(bg(&[]).0, "allow");
    assert_eq!(bg(&["--tainted"]).0, "deny");
    assert!(bg(&["--tainted"]).2.contains(&"notes-no-third-party-values-into-sinks-under-break-glass".to_owned()));
}

/// Issue 24, item 6: the policy guide's personal-assistant recipe
/// (`examples/policies/personal-assistant.cedar`), added to a starting
/// policy: a critical request from an agent marked as a personal assistant,
/// whose client the agent file vouches for, is put to its end user; every
/// other agent's still waits for the approvers, and so does a marked
/// agent's critical call that carries a third-party value.
#[test]
fn the_personal_assistant_recipe_lets_the_end_user_confirm_critical_calls() {
    let recipe = std::fs::read_to_string(repo_root().join("examples/policies/personal-assistant.cedar")).unwrap();
    // The policy guide shows the same rule, without its comments.
    let readme = std::fs::read_to_string(repo_root().join("docs/platform.md")).unwrap();
    let shown = readme.split("```cedar\n").find(|b| b.starts_with("@id(\"personal-assistant-")).and_then(|b| b.split("```").next()).expect("the recipe in the policy guide");
    let rule: String = recipe.lines().map(|l| l.split("//").next().unwrap_or_default().trim_end()).filter(|l| !l.is_empty()).map(|l| format!("{l}\n")).collect();
    assert_eq!(shown, rule);
    let mut policies = quickstart_policies();
    policies.push(("70-personal-assistant.cedar".into(), recipe));
    let dep = Deployment::new(&Setup { policies, ..Setup::default() });
    let marker = "[attributes]\ndeployment = \"personal-assistant\"\n";
    let trusted = "[end_user]\nclient_trusted = true\n";
    let cfg = notes_with_starting_policy(
        &dep,
        &[("assistant", &format!("{marker}{trusted}")), ("helper", trusted), ("unattended", marker)],
    );
    let delete = |agent: &str, extra: &[&str]| explain(&cfg, agent, "notes__delete_note", extra);
    let by_user = "personal-assistant-critical-asks-the-end-user".to_owned();
    let (decision, fallback, ids) = delete("assistant", &[]);
    assert_eq!((decision.as_str(), fallback.as_str()), ("needs_confirmation", "platform-oncall"));
    assert!(ids.contains(&by_user), "{ids:?}");
    assert_eq!(delete("assistant", &["--confirmed-by-end-user"]).0, "allow");

    // Without the marker, or with nobody vouching for the client: the approvers.
    assert_eq!(delete("helper", &[]), ("needs_approval".into(), "notes-oncall".into(), vec!["notes-critical-needs-approval".to_owned()]));
    assert_eq!(delete("helper", &["--confirmed-by-end-user"]).0, "needs_approval");
    assert_eq!(delete("unattended", &[]).0, "needs_approval");
    assert_eq!(delete("assistant", &["--end-user-client-trusted", "false"]).0, "needs_approval");
    // A third-party value in the call, or a request far outside the baseline:
    // still the approvers.
    assert_eq!(delete("assistant", &["--tainted"]).0, "needs_approval");
    assert_eq!(delete("assistant", &["--baseline-score", "95"]).0, "needs_approval");
    // Forbids still win: a production change outside working hours.
    let night = explain(&cfg, "assistant", "workspace__rotate_api_key", &["--at", "2026-11-28T22:00:00Z"]);
    assert_eq!((night.0.as_str(), night.2.as_slice()), ("deny", ["production-changes-in-window".to_owned()].as_slice()));
}

/// One convention for every command: its result on stdout, diagnostics and
/// errors on stderr; exit 0 done, 1 failed or refused, 2 usage (the command
/// line names something that is not there, or says it wrong).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_go_to_stdout_errors_to_stderr_and_exit_codes_follow_one_convention() {
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    gw.stop();
    let cfg = dep.config.to_str().unwrap();
    // A pending approval, as the gateway would have opened it.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let store = jitgate::store::SqliteStore::open(&dep.path("state/jitgate.sqlite")).unwrap();
    use jitgate::store::Store as _;
    store
        .create_approval(&jitgate::store::Approval {
            id: "apr_cli".into(),
            digest: "d".into(),
            agent: "spiffe://jitgate.local/agent/janitor".into(),
            task: "task_cli".into(),
            tool: "workspace__delete_note".into(),
            constraints: "{}".into(),
            purpose: "p".into(),
            group: "platform-oncall".into(),
            policies: vec![],
            state: jitgate::store::ApprovalState::Pending,
            created_at: now,
            expires_at: now + 600,
            decided_at: None,
            decided_by: None,
            note: None,
            used_jti: None,
        })
        .unwrap();
    drop(store);
    let alice = dep.path("alice.jwt");
    std::fs::write(&alice, dep.mint_approver("alice@example.org", "platform-oncall")).unwrap();
    let cred = alice.to_str().unwrap();

    // Done: what the command did, on stdout; nothing on stderr.
    for (args, said) in [
        (vec!["revoke", "--task", "task_other", "--reason", "test", "--config", cfg], "revoked task task_other"),
        (vec!["approvals", "approve", "apr_cli", "--config", cfg, "--credential", cred], "approved apr_cli"),
        (vec!["approvals", "list", "--config", cfg, "--credential", cred], "apr_cli"),
        (vec!["review", "list", "--config", cfg, "--credential", cred], "no break-glass grants awaiting review"),
        (vec!["audit", "verify", "--config", cfg], "ok: the chain is intact"),
        (vec!["check", "--offline", "--config", cfg], "ok"),
        (vec!["agents", "quarantine", "triage", "--reason", "test", "--config", cfg], "agent spiffe://jitgate.local/agent/triage quarantined"),
        (vec!["agents", "release", "triage", "--note", "checked", "--config", cfg, "--credential", cred], "released by alice@example.org"),
    ] {
        let (code, out, err) = jitgate(&args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert!(out.contains(said), "{args:?}: the result belongs on stdout: {out:?} (stderr: {err:?})");
        assert!(err.is_empty(), "{args:?}: nothing to say on stderr: {err}");
    }
    // Refused: exit 1, the reason on stderr, nothing on stdout.
    for args in [
        vec!["approvals", "approve", "apr_cli", "--config", cfg, "--credential", cred],
        vec!["agents", "release", "triage", "--note", "again", "--config", cfg, "--credential", cred],
    ] {
        let (code, out, err) = jitgate(&args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(out.is_empty() && err.starts_with("error: "), "{args:?}: {out:?} {err:?}");
    }
    // Usage: exit 2 from every command, whether clap or the command finds it.
    for args in [
        vec!["revoke", "--config", cfg],
        vec!["identity", "mint", "--config", cfg],
        vec!["approvals", "show", "apr_nope", "--config", cfg, "--credential", cred],
        vec!["approvals", "approve", "apr_nope", "--config", cfg, "--credential", cred],
        vec!["review", "ack", "bg_x", "--note", " ", "--config", cfg, "--credential", cred],
        vec!["agents", "quarantine", "triage", "--reason", " ", "--config", cfg],
        vec!["trace", "task_nope", "--config", cfg],
        vec!["token", "inspect", "jti_nope", "--config", cfg],
        vec!["policy", "explain", "--agent", "triage", "--tool", "workspace__nope", "--config", cfg],
        vec!["store", "copy", "--from", "nowhere", "--to", "postgres://u@127.0.0.1/db"],
    ] {
        let (code, out, err) = jitgate(&args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(out.is_empty() && !err.is_empty(), "{args:?}: {out:?} {err:?}");
    }
    let (_, help, _) = jitgate(&["--help"]);
    assert!(help.contains("Exit codes") && help.contains("2  usage"), "{help}");
}

/// A token id is random base64url and may begin with `-`: `revoke --token`
/// takes it as the value (a test that revoked by jti failed when one did).
#[test]
fn revoke_takes_a_token_id_that_begins_with_a_dash() {
    let dep = Deployment::new(&Setup::default());
    let (_, out, err) = jitgate(&["revoke", "--config", dep.config.to_str().unwrap(), "--token", "-nAbCdEfGhIjKlMnOpQrStU"]);
    assert!(!err.contains("unexpected argument"), "{err}");
    // Parsed: the command went on to open the store (none here yet).
    assert!(out.is_empty() && err.contains("no store at"), "{out}{err}");
    // And so does `token inspect` with such an id.
    let (_, _, err) = jitgate(&["token", "inspect", "-bAbCdEfGhIjKlMnOpQrStU", "--config", dep.config.to_str().unwrap()]);
    assert!(!err.contains("unexpected argument"), "{err}");
}

/// Issue 28, part 4: `jitgate policy test` runs the quick start's shipped
/// cases through the gateway's own decision, as CI would (exit 0); a policy
/// change that breaks one fails the run (exit 3) and shows what was
/// expected, what decided instead and which policies decided.
#[test]
fn policy_test_runs_the_shipped_cases_and_fails_ci_on_a_broken_policy() {
    let root = repo_root();
    let quickstart = root.join("examples/quickstart");
    let cfg = quickstart.join("gateway.toml").display().to_string();
    let cases = quickstart.join("policies").display().to_string();
    let (code, out, err) = jitgate(&["policy", "test", "--config", &cfg, &cases]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("13 case(s): 13 passed, 0 failed"), "{out}");
    // The policy guide's recipe, as written there (run from the repository root).
    let guide = std::fs::read_to_string(root.join("docs/platform.md")).unwrap();
    let section = guide.split("### Policy tests in CI").nth(1).expect("the policy guide's section");
    let recipe = section.split("```sh\n").nth(1).and_then(|b| b.split("```").next()).expect("its command").trim();
    let args: Vec<&str> = recipe.split_whitespace().collect();
    assert_eq!(args[0], "jitgate", "{recipe}");
    let ran = std::process::Command::new(jitgate_bin()).args(&args[1..]).current_dir(&root).output().unwrap();
    let said = String::from_utf8_lossy(&ran.stdout);
    assert_eq!(ran.status.code(), Some(0), "{said}");
    assert!(said.contains("13 passed, 0 failed"), "{said}");

    // The same cases against a copy of the policies where destructive
    // tools no longer wait for a person.
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(quickstart.join("policies")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replace("@approval(\"platform-oncall\")\npermit (principal in Team::\"platform\", action == Action::\"Request\", resource in Server::\"workspace\")\nwhen { resource.risk == \"critical\" };", "permit (principal in Team::\"platform\", action == Action::\"Request\", resource in Server::\"workspace\")\nwhen { resource.risk == \"critical\" };");
        std::fs::write(dir.path().join(path.file_name().unwrap()), text).unwrap();
    }
    let changed = dir.path().display().to_string();
    let (code, out, err) = jitgate(&["policy", "test", "--config", &cfg, "--policy", &changed, &cases]);
    assert_eq!(code, Some(3), "a failing case fails the run: {out}\n{err}");
    assert!(out.contains("FAIL  deleting a note waits for on-call"), "{out}");
    assert!(out.contains("expected: needs_approval by destructive-needs-approval (group platform-oncall)"), "{out}");
    assert!(out.contains("actual:   allow by destructive-needs-approval"), "{out}");
    assert!(out.contains("policy:   permit destructive-needs-approval (") && out.contains("20-approvals.cedar:"), "{out}");
    assert!(out.contains("13 case(s): 12 passed, 1 failed") && err.contains("1 of 13 policy test case(s) failed"), "{out}\n{err}");

    // --json: one object per case, for scripts.
    let (code, out, _) = jitgate(&["policy", "test", "--json", "--config", &cfg, "--policy", &changed, &cases]);
    assert_eq!(code, Some(3));
    let failed: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).filter(|v: &serde_json::Value| v["passed"] == false).collect();
    assert_eq!(failed.len(), 1, "{out}");
    assert_eq!(failed[0]["decision"], "allow");

    // A case file it cannot read is a usage error, not a pass.
    let typo = dir.path().join("typo.cases.toml");
    std::fs::write(&typo, "[[case]]\nname = \"t\"\nagent = \"triage\"\ntool = \"workspace__read_inbox\"\nexpect = \"allow\"\ntainted_args = true\n").unwrap();
    let (code, _, err) = jitgate(&["policy", "test", "--config", &cfg, typo.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("typo.cases.toml") && err.contains("tainted_args"), "{err}");
}

/// Issue 28, part 4: `manifest init --policy` writes a case file beside the
/// starting policy; its cases pass against the deployment as written, and
/// fail once the policy stops asking the end user about third-party values.
#[test]
fn manifest_init_writes_starting_cases_that_pass_against_its_policy() {
    let dep = Deployment::new(&Setup { policies: quickstart_policies(), ..Setup::default() });
    let cfg = notes_with_starting_policy(&dep, &[]);
    let cases = dep.path("policies/60-notes.cases.toml");
    let text = std::fs::read_to_string(&cases).unwrap_or_else(|e| panic!("manifest init wrote no case file beside the policy: {e}"));
    for expected in ["notes-may-plan", "notes-critical-needs-approval", "notes-third-party-values-into-sinks-ask-the-end-user", "notes-third-party-values-into-sinks-need-a-person", "notes-unusual-high-risk-needs-approval"] {
        assert!(text.contains(expected), "no case for {expected}:\n{text}");
    }
    let (code, out, err) = jitgate(&["policy", "test", "--config", &cfg, cases.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains(" 0 failed"), "{out}");

    let policy = dep.path("policies/60-notes.cedar");
    let written = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, written.replace("@confirm(\"notes-oncall\")\n", "")).unwrap();
    let (code, out, _) = jitgate(&["policy", "test", "--config", &cfg, cases.to_str().unwrap()]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("FAIL") && out.contains("asks the end user") && out.contains("expected: needs_confirmation"), "{out}");
}
