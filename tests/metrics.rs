//! Issue 28, part 1: Prometheus metrics, scraped by a real Prometheus (the
//! distribution's package) from the gateway's own metrics address, and
//! queried through Prometheus's HTTP API.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The operators' guide's blocks of a kind, in order.
fn guide_blocks(kind: &str) -> Vec<String> {
    let guide = std::fs::read_to_string(repo_root().join("docs/operations.md")).unwrap();
    let section = guide.split("## Metrics and alerts").nth(1).expect("the guide's metrics section");
    let section = section.split("\n## ").next().unwrap_or_default();
    section.split(&format!("```{kind}\n")).skip(1).map(|b| b.split("```").next().unwrap_or_default().to_owned()).collect()
}

/// Prometheus on `port` with the guide's scrape configuration (its target
/// and interval replaced) and alert rules, its data in `dir`.
fn start_prometheus(dir: &std::path::Path, port: u16, target: &str) -> Prometheus {
    let yaml = guide_blocks("yaml");
    let (scrape, rules) = (&yaml[0], &yaml[1]);
    std::fs::write(dir.join("rules.yml"), rules).unwrap();
    let check = Command::new("promtool").arg("check").arg("rules").arg(dir.join("rules.yml")).output().unwrap();
    assert!(check.status.success(), "the guide's alert rules do not pass promtool: {}", String::from_utf8_lossy(&check.stdout));
    assert!(scrape.contains("'127.0.0.1:9464'") && scrape.contains("scrape_interval: 15s"), "{scrape}");
    let scrape = scrape.replace("'127.0.0.1:9464'", &format!("'{target}'")).replace("scrape_interval: 15s", "scrape_interval: 1s");
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, format!("global:\n  evaluation_interval: 1s\nrule_files: ['rules.yml']\n{scrape}")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("prometheus could not start ({e}): run scripts/setup-test-deps.sh (Debian package prometheus)"));
    Prometheus(child)
}

fn percent_encode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// The value of an instant query's first sample, once Prometheus has one
/// at least `min` (within a minute).
async fn query_until(prom_port: u16, query: &str, min: f64) -> f64 {
    let url = format!("http://127.0.0.1:{prom_port}/api/v1/query");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{url}?query={}", percent_encode(query))).send().await {
            last = r.text().await.unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&last).unwrap_or_default();
            let value = v["data"]["result"][0]["value"][1].as_str().and_then(|s| s.parse::<f64>().ok());
            if let Some(x) = value.filter(|x| *x >= min) {
                return x;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("Prometheus never saw {query} >= {min}; last answer: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_decisions_calls_refusals_and_server_health() {
    let metrics_port = free_port();
    let dep = Deployment::new(&Setup {
        policies: quickstart_policies(),
        extra_config: format!("\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"),
        ..Setup::default()
    });
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let triage = gw.connect(&dep.mint("triage")).await;

    // An allowed call, forwarded; a replay refused.
    let task = begin(&triage, json!([{"name": "read", "tools": ["workspace__read_note"]}])).await.unwrap();
    let token = request(&triage, &task, "workspace__read_note", json!({"name": "q3-plan.md"})).await.unwrap();
    let r = call_with_token(&triage, "workspace__read_note", json!({"name": "q3-plan.md"}), &token).await.unwrap();
    assert_eq!(r.is_error, Some(false), "{}", text_of(&r));
    let r = call_with_token(&triage, "workspace__read_note", json!({"name": "q3-plan.md"}), &token).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("token_replayed"));

    // A request that waits for a person.
    let janitor = gw.connect(&dep.mint("janitor")).await;
    let cleanup = begin(&janitor, json!([{"name": "tidy", "tools": ["workspace__delete_note"]}])).await.unwrap();
    let held = grant(&janitor, json!({"task": cleanup, "tool": "workspace__delete_note", "arguments": {"name": "old.md"}, "purpose": "tidy"})).await.unwrap();
    assert_eq!(held["decision"], "pending_approval", "{held}");

    // What the endpoint serves: conventions, and nothing an agent wrote.
    let text = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics")).await.unwrap().text().await.unwrap();
    for line in [
        "jitgate_decisions_total{outcome=\"allow\",policy=\"support-tool-set\"} 1",
        "jitgate_refusals_total{code=\"token_replayed\"} 1",
        "jitgate_downstream_server_state{server=\"workspace\",state=\"ready\"} 1",
        "jitgate_call_duration_seconds_count{server=\"workspace\",part=\"downstream\"} 1",
        "jitgate_call_duration_seconds_count{server=\"workspace\",part=\"gateway\"} 1",
        "jitgate_decisions_total{outcome=\"pending_approval\",policy=\"destructive-needs-approval\"} 1",
        "jitgate_pending_approvals 1",
        "jitgate_active_tasks 2",
        "# TYPE jitgate_store_operation_duration_seconds histogram",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    for secret in [task.as_str(), cleanup.as_str(), token.as_str(), "q3-plan.md", "old.md", "spiffe://"] {
        assert!(!text.contains(secret), "the metrics carry `{secret}`");
    }
    // Only /metrics is served there: the agents' endpoint is not.
    let other = reqwest::get(format!("http://127.0.0.1:{metrics_port}/mcp")).await.unwrap();
    assert_eq!(other.status().as_u16(), 404);

    // A real Prometheus scrapes it and counts the decision.
    let prom_dir = tempfile::tempdir().unwrap();
    let prom_port = free_port();
    let _prom = start_prometheus(prom_dir.path(), prom_port, &format!("127.0.0.1:{metrics_port}"));
    let allowed = query_until(prom_port, "sum(jitgate_decisions_total{outcome=\"allow\"})", 1.0).await;
    assert_eq!(allowed, 1.0);
    assert_eq!(query_until(prom_port, "jitgate_refusals_total{code=\"token_replayed\"}", 1.0).await, 1.0);
    assert_eq!(query_until(prom_port, "up{job=\"jitgate\"}", 1.0).await, 1.0);

    // A second decision shows in the next scrapes.
    let token = request(&triage, &task, "workspace__read_note", json!({"name": "q3-plan.md"})).await.unwrap();
    assert!(!token.is_empty());
    assert_eq!(query_until(prom_port, "sum(jitgate_decisions_total{outcome=\"allow\"})", 2.0).await, 2.0);

    // The guide's alert rules loaded and evaluate without errors.
    let rules = reqwest::get(format!("http://127.0.0.1:{prom_port}/api/v1/rules")).await.unwrap().text().await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&rules).unwrap();
    let loaded: Vec<&serde_json::Value> = v["data"]["groups"].as_array().into_iter().flatten().flat_map(|g| g["rules"].as_array().into_iter().flatten()).collect();
    assert_eq!(loaded.len(), 5, "{rules}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rules = reqwest::get(format!("http://127.0.0.1:{prom_port}/api/v1/rules")).await.unwrap().text().await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&rules).unwrap();
        let health: Vec<String> = v["data"]["groups"].as_array().into_iter().flatten().flat_map(|g| g["rules"].as_array().into_iter().flatten()).map(|r| r["health"].as_str().unwrap_or_default().to_owned()).collect();
        if health.iter().all(|h| h == "ok") {
            break;
        }
        assert!(Instant::now() < deadline && !health.iter().any(|h| h == "err"), "alert rules in error: {rules}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
