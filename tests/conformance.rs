//! The official MCP conformance suite (@modelcontextprotocol/conformance 0.2,
//! needs Node 22, installed by scripts/setup-test-deps.sh) against jitgate's
//! streamable HTTP endpoint. The runner cannot send an Authorization header,
//! so a small loopback proxy adds a valid agent identity. It runs twice: the
//! default active set (handshake era) and exactly what revision 2026-07-28
//! requires (`--requirements 2026-07-28`). Scenarios that need
//! the reference server's fixtures are listed in the committed baseline; the
//! runner fails on any other failure and on a baseline entry that now passes.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use common::*;

struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn conformance_suite_passes_with_committed_baseline() {
    let node_dir = repo_root().join("tests/support/node");
    let node22 = node22();
    let dep = Deployment::new(&Setup::default());
    // The proxy passes its own Host (127.0.0.1:ITS_PORT) through; allow the
    // loopback name on any port, as a deployment behind a proxy would.
    dep.append_config("\n[http]\nallowed_hosts = [\"127.0.0.1\", \"localhost\"]\n");
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;

    let mut proxy = Command::new(&node22)
        .arg(repo_root().join("tests/support/conformance/bearer-proxy.mjs"))
        .args([&gw.url, &dep.mint("janitor")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(proxy.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _proxy = Killed(proxy);
    let port = line.trim().strip_prefix("listening ").expect("proxy port").to_owned();

    let url = format!("http://127.0.0.1:{port}/mcp");

    // The handshake era (the suite's default active set).
    let stdout = run_suite(&node22, &node_dir, &dep.path("out-handshake"), &url, &[], "baseline.yml");
    for applicable in ["server-initialize", "server-session-lifecycle", "ping", "tools-list", "server-sse-multiple-streams", "dns-rebinding-protection"] {
        assert!(stdout.lines().any(|l| l.contains(applicable) && l.contains("✓")), "{applicable} must pass:\n{stdout}");
    }

    // Exactly what revision 2026-07-28 requires of a server.
    let stdout = run_suite(&node22, &node_dir, &dep.path("out-2026"), &url, &["--requirements", "2026-07-28"], "baseline-2026-07-28.yml");
    for applicable in ["tools-list", "http-header-validation", "dns-rebinding-protection", "server-sse-multiple-streams"] {
        assert!(stdout.lines().any(|l| l.contains(applicable) && l.contains("✓")), "{applicable} must pass on 2026-07-28:\n{stdout}");
    }
}

/// Run the suite; the runner itself fails on an unexpected failure and on a
/// baseline entry that passes now.
fn run_suite(node22: &std::path::Path, node_dir: &std::path::Path, out_dir: &std::path::Path, url: &str, extra: &[&str], baseline: &str) -> String {
    let out = Command::new(node22)
        .current_dir(node_dir)
        .arg("node_modules/@modelcontextprotocol/conformance/dist/index.js")
        .args(["server", "--url", url])
        .args(extra)
        .arg("--expected-failures")
        .arg(repo_root().join("tests/support/conformance").join(baseline))
        .arg("-o")
        .arg(out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "conformance failed ({extra:?}):\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}
