//! Prometheus metrics: what an operator graphs and alerts on, in the
//! Prometheus text format (the `prometheus-client` crate), served on the
//! listen address of `[metrics]`, apart from the agents' endpoint.
//!
//! Label values come from bounded sets only: outcomes, the ids of the loaded
//! policies, refusal codes, store operations, server names and states. Never
//! a task id, token id, argument, purpose or other text an agent wrote.

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// allow, deny, pending_approval, end_user_question, quarantine.
    pub outcome: String,
    /// The deciding policy's id (`none`: nothing decided, a default deny).
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    server: String,
    /// `downstream`: the server's own time; `gateway`: everything else.
    part: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    server: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeySetLabels {
    issuer: String,
    state: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 100 µs to about 6.5 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    observed: Family<DecisionLabels, Counter>,
    refusals: Family<CodeLabels, Counter>,
    calls: Histograms<CallLabels>,
    store_seconds: Histograms<StoreLabels>,
    store_errors: Family<StoreLabels, Counter>,
    sessions: Gauge,
    pending_approvals: Gauge,
    oldest_pending_approval: Gauge<f64, AtomicU64>,
    servers: Family<ServerLabels, Gauge>,
    key_sets: Family<KeySetLabels, Gauge>,
    active_tasks: Gauge,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("jitgate");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register("decisions", "Intent requests decided, by outcome and deciding policy", decisions.clone());
        let observed = Family::<DecisionLabels, Counter>::default();
        registry.register("observed_calls", "Calls of agents in observe mode, passed through, by the decision enforcement would have made and its policy", observed.clone());
        let refusals = Family::<CodeLabels, Counter>::default();
        registry.register("refusals", "Refusals answered to agents, by reason code", refusals.clone());
        let calls: Histograms<CallLabels> = Family::new_with_constructor(latency as fn() -> Histogram);
        registry.register_with_unit("call_duration", "Authorized calls: the downstream server's time and the gateway's own share", Unit::Seconds, calls.clone());
        let store_seconds: Histograms<StoreLabels> = Family::new_with_constructor(latency as fn() -> Histogram);
        registry.register_with_unit("store_operation_duration", "Store units of work on the request and call path", Unit::Seconds, store_seconds.clone());
        let store_errors = Family::<StoreLabels, Counter>::default();
        registry.register("store_errors", "Store units of work that failed", store_errors.clone());
        let sessions = Gauge::default();
        registry.register("sessions", "MCP server handlers alive in this process: handshake-era sessions, and sessionless requests being served", sessions.clone());
        let pending_approvals = Gauge::default();
        registry.register("pending_approvals", "Approvals waiting for a person", pending_approvals.clone());
        let oldest_pending_approval = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit("oldest_pending_approval_age", "How long the oldest pending approval has waited", Unit::Seconds, oldest_pending_approval.clone());
        let servers = Family::<ServerLabels, Gauge>::default();
        registry.register("downstream_server_state", "1 for each downstream server's current state (ready, starting, disabled)", servers.clone());
        let key_sets = Family::<KeySetLabels, Gauge>::default();
        registry.register("issuer_key_set_state", "1 for each remote issuer key set's current state (ok, degraded, stale, unavailable)", key_sets.clone());
        let active_tasks = Gauge::default();
        registry.register("active_tasks", "Tasks active now, of every registered agent (read at scrape)", active_tasks.clone());
        Self { registry, decisions, observed, refusals, calls, store_seconds, store_errors, sessions, pending_approvals, oldest_pending_approval, servers, key_sets, active_tasks }
    }

    /// One decision of an intent request.
    pub fn decided(&self, outcome: &str, policy: Option<&str>) {
        self.decisions.get_or_create(&DecisionLabels { outcome: outcome.to_owned(), policy: policy.unwrap_or("none").to_owned() }).inc();
    }

    /// One call of an agent in observe mode, and what enforcement would have decided.
    pub fn observed(&self, would: &str, policy: Option<&str>) {
        self.observed.get_or_create(&DecisionLabels { outcome: would.to_owned(), policy: policy.unwrap_or("none").to_owned() }).inc();
    }

    pub fn refused(&self, code: &str) {
        self.refusals.get_or_create(&CodeLabels { code: code.to_owned() }).inc();
    }

    /// One forwarded call: `total` from the agent's request to the answer,
    /// `downstream` the server's part of it.
    pub fn call(&self, server: &str, total: std::time::Duration, downstream: std::time::Duration) {
        let observe = |part: &str, d: std::time::Duration| self.calls.get_or_create(&CallLabels { server: server.to_owned(), part: part.to_owned() }).observe(d.as_secs_f64());
        observe("downstream", downstream);
        observe("gateway", total.saturating_sub(downstream));
    }

    pub fn store_operation(&self, operation: &'static str, took: std::time::Duration, failed: bool) {
        let labels = StoreLabels { operation: operation.to_owned() };
        self.store_seconds.get_or_create(&labels).observe(took.as_secs_f64());
        if failed {
            self.store_errors.get_or_create(&labels).inc();
        }
    }

    pub fn session_opened(&self) {
        self.sessions.inc();
    }

    pub fn session_closed(&self) {
        self.sessions.dec();
    }

    /// The approvals waiting now and the age of the oldest (read at scrape).
    pub fn set_pending(&self, count: usize, oldest_age_secs: i64) {
        self.pending_approvals.set(i64::try_from(count).unwrap_or(i64::MAX));
        #[allow(clippy::cast_precision_loss)]
        self.oldest_pending_approval.set(oldest_age_secs.max(0) as f64);
    }

    /// A server's state now: 1 for its state, 0 for the others.
    pub fn set_server_state(&self, server: &str, state: &str) {
        for s in ["ready", "starting", "disabled"] {
            self.servers.get_or_create(&ServerLabels { server: server.to_owned(), state: s.to_owned() }).set(i64::from(s == state));
        }
    }

    /// A remote key set's state now: 1 for its state, 0 for the others.
    pub fn set_key_set_state(&self, issuer: &str, state: &str) {
        for s in ["ok", "degraded", "stale", "unavailable"] {
            self.key_sets.get_or_create(&KeySetLabels { issuer: issuer.to_owned(), state: s.to_owned() }).set(i64::from(s == state));
        }
    }

    pub fn set_active_tasks(&self, count: usize) {
        self.active_tasks.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The text exposition format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// This process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions_and_labels_stay_bounded() {
        let m = Metrics::new();
        m.decided("deny", Some("no-tainted-sinks"));
        m.decided("allow", None);
        m.refused("token_replayed");
        m.call("workspace", std::time::Duration::from_millis(5), std::time::Duration::from_millis(3));
        m.store_operation("grant", std::time::Duration::from_micros(300), true);
        m.set_pending(2, 90);
        m.set_server_state("workspace", "ready");
        m.set_key_set_state("corp-idp", "stale");
        let text = m.encode().unwrap_or_else(|e| panic!("{e}"));
        for line in [
            "jitgate_decisions_total{outcome=\"deny\",policy=\"no-tainted-sinks\"} 1",
            "jitgate_decisions_total{outcome=\"allow\",policy=\"none\"} 1",
            "jitgate_refusals_total{code=\"token_replayed\"} 1",
            "jitgate_store_errors_total{operation=\"grant\"} 1",
            "jitgate_pending_approvals 2",
            "jitgate_oldest_pending_approval_age_seconds 90.0",
            "jitgate_downstream_server_state{server=\"workspace\",state=\"ready\"} 1",
            "jitgate_downstream_server_state{server=\"workspace\",state=\"starting\"} 0",
            "jitgate_issuer_key_set_state{issuer=\"corp-idp\",state=\"stale\"} 1",
            "jitgate_issuer_key_set_state{issuer=\"corp-idp\",state=\"ok\"} 0",
            "# TYPE jitgate_call_duration_seconds histogram",
            "jitgate_call_duration_seconds_count{server=\"workspace\",part=\"gateway\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }
}
