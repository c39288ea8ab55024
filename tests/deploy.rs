//! The deployment files in `deploy/`, run as written: the PostgreSQL role
//! and database script, and the systemd unit's command line. (The nginx
//! configuration runs in `tests/replicas.rs`.)

mod common;

use std::process::Command;

use common::pg::Postgres;
use common::*;

/// `deploy/postgres.sql`, run by a superuser as its header says, makes a
/// role that is no superuser and can run jitgate: `store migrate` creates
/// the schema (tables, indexes, trigger function) and a second run finds it
/// current; the role cannot reach another database.
#[test]
fn the_shipped_postgres_script_makes_a_role_jitgate_runs_with() {
    let pg = Postgres::start();
    let port = pg.url("postgres").rsplit(':').next().unwrap().split('/').next().unwrap().to_owned();
    let script = repo_root().join("deploy/postgres.sql");
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port, "-U", "jitgate", "-d", "postgres", "-v", "ON_ERROR_STOP=1"])
        .args(["-v", "role=gateway_owner", "-v", "db=gateway_db", "-v", "password=not-in-a-file"])
        .arg("-f")
        .arg(&script)
        .output()
        .unwrap();
    assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
    let role_is = |sql: &str| {
        let out = Command::new("psql").args(["-h", "127.0.0.1", "-p", &port, "-U", "jitgate", "-d", "postgres", "-Atc", sql]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(role_is("SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = 'gateway_owner'"), "f|f|f");

    let dep = Deployment::new(&Setup {
        extra_config: format!("\n[store]\nurl = \"postgres://gateway_owner@127.0.0.1:{port}/gateway_db\"\npassword_env = \"GATEWAY_DB_PASSWORD\"\n"),
        ..Setup::default()
    });
    let migrate = || {
        Command::new(jitgate_bin())
            .args(["store", "migrate", "--config"])
            .arg(&dep.config)
            .env("GATEWAY_DB_PASSWORD", "not-in-a-file")
            .output()
            .unwrap()
    };
    let first = migrate();
    assert!(first.status.success(), "{}{}", String::from_utf8_lossy(&first.stdout), String::from_utf8_lossy(&first.stderr));
    let again = migrate();
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(role_is("SELECT count(*) > 5 FROM pg_tables WHERE tableowner = 'gateway_owner'"), "f", "tables live in gateway_db, not postgres");
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port, "-U", "gateway_owner", "-d", "gateway_db", "-Atc", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = 'gateway_owner'"])
        .output()
        .unwrap();
    let tables: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    assert!(tables >= 10, "jitgate's tables, owned by its role: {tables} ({})", String::from_utf8_lossy(&out.stderr));
}

/// `deploy/jitgate@.service`: the hardening a security service should have,
/// and its ExecStart, with the instance name, the address and the binary
/// filled in as systemd would, starts a replica that names its sessions.
#[test]
fn the_systemd_unit_is_hardened_and_its_command_line_starts_a_named_replica() {
    let unit = std::fs::read_to_string(repo_root().join("deploy/jitgate@.service")).unwrap();
    for line in [
        "User=jitgate",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "ReadOnlyPaths=/etc/jitgate",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "StateDirectory=jitgate",
        "UMask=0077",
    ] {
        assert!(unit.lines().any(|l| l.trim() == line), "deploy/jitgate@.service lacks `{line}`");
    }
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("an ExecStart line");
    let dep = Deployment::new(&Setup::default());
    let args: Vec<String> = exec.replace("%i", "r7").replace("${JITGATE_LISTEN}", "127.0.0.1:0").split_whitespace().map(str::to_owned).collect();
    assert_eq!(args[0], "/usr/local/bin/jitgate");
    let mut cmd = Command::new(jitgate_bin());
    cmd.args(&args[1..]).env("JITGATE_CONFIG", &dep.config).env("JITGATE_LOG", "info");
    let gateway = Gateway::from_command(cmd);
    let url = gateway.url.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sid = rt.block_on(async {
        let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "probe", "version": "0"}}});
        let resp = reqwest::Client::new()
            .post(&url)
            .header("Authorization", format!("Bearer {}", dep.mint("triage")))
            .header("Accept", "application/json, text/event-stream")
            .json(&init)
            .send()
            .await
            .unwrap();
        resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    });
    drop(gateway);
    assert!(sid.starts_with("r7."), "a session of replica r7: {sid:?}");
}

/// `deploy/gateway.toml`, the production configuration the README's runbook
/// copies to `/etc/jitgate`: a real identity provider (no development
/// issuer), PostgreSQL, `[oauth]`, `[ui.oidc]` and a witness. With only its
/// absolute paths moved into a scratch directory, `jitgate check --offline`
/// loads it, its policies and its manifest.
#[test]
fn the_shipped_production_config_loads_as_written() {
    let shipped = std::fs::read_to_string(repo_root().join("deploy/gateway.toml")).unwrap();
    for section in ["[store]", "[oauth]", "[ui.oidc]", "[[identity.issuers]]", "[[approvals.issuers]]", "witness ="] {
        assert!(shipped.contains(section), "deploy/gateway.toml lacks {section}");
    }
    assert!(shipped.contains("url = \"postgres://"), "replicas need PostgreSQL");
    assert!(!shipped.lines().any(|l| l.trim_start().starts_with("development")), "no development issuer in production");
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    for sub in ["agents", "policies", "tool-manifests"] {
        std::fs::create_dir_all(etc.join(sub)).unwrap();
    }
    std::fs::copy(repo_root().join("tool-manifests/filesystem.toml"), etc.join("tool-manifests/filesystem.toml")).unwrap();
    std::fs::write(etc.join("policies/00-deny.cedar"), "forbid (principal, action, resource) when { resource.risk_level == 4 };\n").unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("db"), "pw\n").unwrap();
    std::fs::write(secrets.join("ui"), "secret\n").unwrap();
    let state = dir.path().join("state");
    let moved = shipped
        .replace("/var/lib/jitgate", state.to_str().unwrap())
        .replace("/run/secrets/jitgate-db", secrets.join("db").to_str().unwrap())
        .replace("/run/secrets/jitgate-ui-client-secret", secrets.join("ui").to_str().unwrap());
    assert!(!moved.contains("/var/") && !moved.contains("/run/"), "every absolute path was moved");
    let config = etc.join("gateway.toml");
    std::fs::write(&config, moved).unwrap();
    let (code, out, err) = jitgate(&["check", "--offline", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("1 server(s) registered"), "{out}");
}
