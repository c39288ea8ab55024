//! Per-task traces rebuilt from the audit log: task → phases → requests
//! (with their decisions) → calls, with follow-on links (`follows` and taint
//! sources), approvals and revocations. Used by `jitgate trace` and the
//! reviewer pages.

use serde::Serialize;
use serde_json::Value;

use crate::audit::Record;
use crate::clock::rfc3339;

/// One task, as the audit log tells it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TaskTrace {
    pub id: String,
    pub agent: String,
    pub agent_name: String,
    pub objective: String,
    pub begun: i64,
    pub ended: Option<i64>,
    pub outcome: String,
    pub phases: Vec<PhaseTrace>,
    pub revocations: Vec<Value>,
    pub approvals: Vec<Value>,
    pub events: Vec<Value>,
    /// The delegation this task was begun under: `{delegation, parent_task}`.
    pub delegated_by: Option<Value>,
    /// What this task delegated, in order: `{at, delegation, child_name,
    /// tools, depth, constrained, expires_at, child_task}` (`child_task`
    /// once the child began it, from the store).
    pub delegations: Vec<Value>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PhaseTrace {
    pub name: String,
    pub started: i64,
    pub requests: Vec<RequestTrace>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestTrace {
    pub seq: i64,
    pub at: i64,
    pub tool: String,
    pub action: String,
    pub decision: String,
    pub policies: Vec<String>,
    pub reason: Option<String>,
    pub purpose: String,
    pub jti: Option<String>,
    pub follows: Option<String>,
    pub taint_sources: Vec<String>,
    pub baseline_score: i64,
    pub baseline: String,
    pub approval: Value,
    pub call: Option<CallTrace>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CallTrace {
    pub forwarded_at: i64,
    pub status: String,
    pub duration_ms: f64,
    pub result_bytes: u64,
    pub error: Option<String>,
}

/// A line in a task list.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TaskSummary {
    pub id: String,
    pub agent: String,
    pub agent_name: String,
    pub objective: String,
    pub begun: i64,
    pub outcome: String,
    pub requests: usize,
    pub denied: usize,
    pub calls: usize,
    pub break_glass: bool,
}

fn s(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// What an observation task is for (observe mode: its calls were judged,
/// not enforced).
pub const OBSERVED_OBJECTIVE: &str = "observe mode: the agent's calls passed through, judged and not enforced";

/// Build a task's trace from its records (in seq order).
pub fn build(task: &str, records: &[Record]) -> TaskTrace {
    let mut t = TaskTrace { id: task.to_owned(), outcome: "open".into(), ..Default::default() };
    for r in records {
        let d = &r.data;
        match r.kind.as_str() {
            "delegation.granted" => {
                let mut d = d.clone();
                d["at"] = serde_json::json!(r.at);
                t.delegations.push(d);
            }
            "task.begin" => {
                if d.get("delegation").is_some_and(|x| !x.is_null()) {
                    t.delegated_by = Some(serde_json::json!({"delegation": d["delegation"], "parent_task": d["parent_task"]}));
                }
                t.agent = r.agent.clone().unwrap_or_default();
                t.agent_name = s(d, "agent_name");
                t.objective = s(d, "objective");
                t.begun = r.at;
                let first = d.get("phases").and_then(|p| p.get(0)).map(|p| s(p, "name")).unwrap_or_default();
                t.phases.push(PhaseTrace { name: first, started: r.at, requests: Vec::new() });
            }
            "task.phase" => t.phases.push(PhaseTrace { name: s(d, "to"), started: r.at, requests: Vec::new() }),
            "task.end" => {
                t.ended = Some(r.at);
                t.outcome = format!("ended: {}", s(d, "outcome"));
            }
            "intent" | "call.observed" => {
                let observed = r.kind == "call.observed";
                // An observation task has no `task.begin`: its first call stands for it.
                if observed && t.phases.is_empty() {
                    t.agent = r.agent.clone().unwrap_or_default();
                    t.agent_name = s(d, "agent_name");
                    t.objective = OBSERVED_OBJECTIVE.into();
                    t.begun = r.at;
                    t.outcome = "observed".into();
                    t.phases.push(PhaseTrace { name: "observed".into(), started: r.at, requests: Vec::new() });
                }
                let req = RequestTrace {
                    seq: r.seq,
                    at: r.at,
                    tool: s(d, "tool"),
                    action: if observed { "observed".to_owned() } else { s(d, "action") },
                    // An observed call was not decided: say what enforcement would have done.
                    decision: if observed { format!("observed (not enforced): would {}", s(d, "would")) } else { s(d, "decision") },
                    policies: d.get("policies").and_then(Value::as_array).map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()).unwrap_or_default(),
                    reason: d.get("reason").and_then(Value::as_str).map(str::to_owned),
                    purpose: s(d, "purpose"),
                    jti: d.get("jti").and_then(Value::as_str).map(str::to_owned),
                    follows: d.get("follows").and_then(Value::as_str).map(str::to_owned),
                    taint_sources: d
                        .pointer("/taint/sources")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().map(|x| s(x, "call")).collect())
                        .unwrap_or_default(),
                    baseline_score: d.pointer("/baseline/score").and_then(Value::as_i64).unwrap_or(0),
                    baseline: d.pointer("/baseline/explanation").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    approval: d.get("approval").cloned().unwrap_or(Value::Null),
                    call: observed.then(|| CallTrace { forwarded_at: r.at, ..CallTrace::default() }),
                };
                if t.phases.is_empty() {
                    t.phases.push(PhaseTrace::default());
                }
                if let Some(p) = t.phases.last_mut() {
                    p.requests.push(req);
                }
            }
            "call.forwarded" | "call.result" => {
                let jti = s(d, "jti");
                if let Some(req) = t.phases.iter_mut().flat_map(|p| p.requests.iter_mut()).find(|q| q.jti.as_deref() == Some(jti.as_str())) {
                    let call = req.call.get_or_insert_with(CallTrace::default);
                    if r.kind == "call.forwarded" {
                        call.forwarded_at = r.at;
                        call.status = "forwarded".into();
                    } else {
                        call.status = s(d, "status");
                        call.duration_ms = d.get("duration_ms").and_then(Value::as_f64).unwrap_or(0.0);
                        call.result_bytes = d.get("result_bytes").and_then(Value::as_u64).unwrap_or(0);
                        call.error = d.get("error").and_then(Value::as_str).map(str::to_owned);
                    }
                }
            }
            // One record per revocation (the store's); the calls it cut off
            // are recorded by each process that had some in flight.
            "revocation" => t.revocations.push(serde_json::json!({"at": r.at, "scope": d["scope"], "reason": d["reason"], "tokens": d["tokens"], "cancelled_calls": d.get("cancelled_calls").and_then(Value::as_u64).unwrap_or(0), "revocation_seq": d["revocation_seq"]})),
            "revocation.cancelled" => {
                let cut = d.get("cancelled_calls").and_then(Value::as_u64).unwrap_or(0);
                match t.revocations.iter_mut().find(|v| v["revocation_seq"] == d["revocation_seq"]) {
                    Some(v) => v["cancelled_calls"] = Value::from(v["cancelled_calls"].as_u64().unwrap_or(0).saturating_add(cut)),
                    None => t.events.push(serde_json::json!({"at": r.at, "kind": r.kind, "data": d})),
                }
            }
            "approval.decided" => t.approvals.push(serde_json::json!({"at": r.at, "approval": d["approval"], "decision": d["decision"], "by": d["by"], "note": d["note"]})),
            _ => t.events.push(serde_json::json!({"at": r.at, "kind": r.kind, "data": d})),
        }
    }
    t
}

/// A task's trace from the store: its records, with the outcome the store
/// has (a revocation by the operator or of the whole agent ends the task in
/// the store even when no gateway was running to record it). `None` when
/// the task has no records.
pub fn from_store(store: &dyn crate::store::Store, task: &str, now: i64) -> Result<Option<TaskTrace>, crate::store::StoreError> {
    let records = store.audit_of_task(task)?;
    if records.is_empty() {
        return Ok(None);
    }
    let mut trace = build(task, &records);
    if let Some(outcome) = stored_outcome(store, task, now)? {
        trace.outcome = outcome;
    }
    // Each delegation's child task, so the tree can be followed down.
    for d in &mut trace.delegations {
        let id = d["delegation"].as_str().unwrap_or_default().to_owned();
        if let Some(found) = store.delegation(&id)? {
            d["child_task"] = serde_json::json!(found.child_task);
        }
    }
    Ok(Some(trace))
}

/// A task's outcome as the store has it, `None` for a task it does not know.
pub fn stored_outcome(store: &dyn crate::store::Store, task: &str, now: i64) -> Result<Option<String>, crate::store::StoreError> {
    Ok(store.task(task)?.map(|t| outcome_of(&t, now)))
}

/// Tasks of an agent begun since `since`, newest first.
pub fn tasks_of(records: &[Record], agent: &str, since: i64) -> Vec<TaskSummary> {
    summaries(records).into_iter().filter(|t| t.agent == agent && t.begun >= since).collect()
}

/// A task's outcome as the store has it: open, expired, ended or revoked,
/// with the reason.
pub fn outcome_of(t: &crate::store::Task, now: i64) -> String {
    use crate::store::TaskState;
    let reason = t.end_reason.clone().unwrap_or_default();
    match t.state {
        TaskState::Active if t.expires_at <= now => "expired: TTL reached".into(),
        TaskState::Active => "open".into(),
        TaskState::Ended => format!("ended: {}", reason.trim_start_matches("task ended: ")),
        TaskState::Revoked => format!("revoked: {reason}"),
        TaskState::Expired => format!("expired: {reason}"),
    }
}

/// Every task in the records, newest first.
pub fn summaries(records: &[Record]) -> Vec<TaskSummary> {
    let mut by_task: std::collections::BTreeMap<String, TaskSummary> = std::collections::BTreeMap::new();
    for r in records {
        let Some(task) = &r.task else { continue };
        let d = &r.data;
        match r.kind.as_str() {
            "task.begin" => {
                by_task.insert(
                    task.clone(),
                    TaskSummary {
                        id: task.clone(),
                        agent: r.agent.clone().unwrap_or_default(),
                        agent_name: s(d, "agent_name"),
                        objective: s(d, "objective"),
                        begun: r.at,
                        outcome: "open".into(),
                        ..Default::default()
                    },
                );
            }
            "call.observed" => {
                let t = by_task.entry(task.clone()).or_insert_with(|| TaskSummary {
                    id: task.clone(),
                    agent: r.agent.clone().unwrap_or_default(),
                    agent_name: s(d, "agent_name"),
                    objective: OBSERVED_OBJECTIVE.into(),
                    begun: r.at,
                    outcome: "observed".into(),
                    ..Default::default()
                });
                t.requests += 1;
                t.calls += 1;
            }
            kind => {
                let Some(t) = by_task.get_mut(task) else { continue };
                match kind {
                    "task.end" => t.outcome = s(d, "outcome"),
                    "intent" => {
                        t.requests += 1;
                        let decision = s(d, "decision");
                        if decision == "deny" {
                            t.denied += 1;
                        }
                        if decision == "allow_break_glass" {
                            t.break_glass = true;
                        }
                    }
                    "call.forwarded" => t.calls += 1,
                    "revocation" if t.outcome == "open" && s(d, "scope") == "task" => t.outcome = format!("revoked: {}", s(d, "reason")),
                    _ => {}
                }
            }
        }
    }
    let mut v: Vec<TaskSummary> = by_task.into_values().collect();
    v.sort_by(|a, b| b.begun.cmp(&a.begun));
    v
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// The tree as text.
pub fn render_text(t: &TaskTrace) -> String {
    let mut out = format!(
        "task {}  agent {} ({})\n  objective: {}\n  begun {}  {}\n",
        t.id,
        t.agent_name,
        t.agent,
        t.objective,
        rfc3339(t.begun),
        match t.ended {
            Some(e) => format!("{} at {}", t.outcome, rfc3339(e)),
            None => t.outcome.clone(),
        }
    );
    if let Some(by) = &t.delegated_by {
        out.push_str(&format!("  delegated by task {} (delegation {})\n", by["parent_task"].as_str().unwrap_or("?"), by["delegation"].as_str().unwrap_or("?")));
    }
    for d in &t.delegations {
        out.push_str(&format!(
            "  delegated {} to {} at {}: {} (depth {}){}\n",
            d["delegation"].as_str().unwrap_or("?"),
            d["child_name"].as_str().unwrap_or("?"),
            rfc3339(d["at"].as_i64().unwrap_or(0)),
            d["tools"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default(),
            d["depth"],
            d["child_task"].as_str().map(|c| format!(" → task {c}")).unwrap_or_default(),
        ));
    }
    let tool_of = |jti: &str| -> String {
        t.phases.iter().flat_map(|p| &p.requests).find(|r| r.jti.as_deref() == Some(jti)).map(|r| r.tool.clone()).unwrap_or_else(|| "?".into())
    };
    for p in &t.phases {
        out.push_str(&format!("├─ phase {} (from {})\n", p.name, rfc3339(p.started)));
        for r in &p.requests {
            let policies = if r.policies.is_empty() { "default".to_owned() } else { r.policies.join(", ") };
            out.push_str(&format!("│  ├─ {} {} → {} [{}]", rfc3339(r.at), r.tool, r.decision, policies));
            if let Some(j) = &r.jti {
                out.push_str(&format!(" token {}", short(j)));
            }
            out.push('\n');
            if let Some(reason) = &r.reason {
                out.push_str(&format!("│  │    reason: {reason}\n"));
            }
            if r.baseline_score > 0 {
                out.push_str(&format!("│  │    baseline {}: {}\n", r.baseline_score, r.baseline));
            }
            if let Some(f) = &r.follows {
                out.push_str(&format!("│  │    follows {} ({})\n", short(f), tool_of(f)));
            }
            for src in &r.taint_sources {
                out.push_str(&format!("│  │    tainted by output of {} ({})\n", short(src), tool_of(src)));
            }
            if let Some(id) = r.approval.get("id").and_then(Value::as_str).or_else(|| r.approval.as_str()) {
                out.push_str(&format!("│  │    approval {id}\n"));
            }
            if let Some(c) = &r.call {
                out.push_str(&format!("│  │    └─ call {}: {} in {:.1} ms, {} bytes", rfc3339(c.forwarded_at), c.status, c.duration_ms, c.result_bytes));
                if let Some(e) = &c.error {
                    out.push_str(&format!(" ({e})"));
                }
                out.push('\n');
            }
        }
    }
    for a in &t.approvals {
        out.push_str(&format!("├─ approval {} {} by {}: {}\n", a["approval"].as_str().unwrap_or(""), a["decision"].as_str().unwrap_or(""), a["by"].as_str().unwrap_or(""), a["note"].as_str().unwrap_or("")));
    }
    for e in &t.events {
        out.push_str(&format!("├─ {} {}\n", e["kind"].as_str().unwrap_or(""), e["data"]));
    }
    for r in &t.revocations {
        out.push_str(&format!("└─ revoked ({}): {} — {} token(s), {} call(s) cancelled\n", r["scope"].as_str().unwrap_or(""), r["reason"].as_str().unwrap_or(""), r["tokens"], r["cancelled_calls"]));
    }
    out
}
