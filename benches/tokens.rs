//! Capability token costs in process: mint, verify (signature + claims),
//! verify + atomic consume against SQLite (WAL file), and the authorization
//! decision: the plan invariants and Cedar with 10, 100 and 1,000 policies.
//! `cargo bench --bench tokens`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use jitgate::agent::{Agent, ToolPattern};
use jitgate::keys::KeyPair;
use jitgate::manifest::{Risk, ToolSpec};
use jitgate::policy::{self, Action, AgentFacts, DecisionInput, Outcome, PolicyEngine, RequestFacts, TaskFacts, TimeFacts, ToolFacts};
use jitgate::store::{Phase, SqliteStore, Store, Task, TaskState, TokenRecord, TokenState};
use jitgate::token::{self, CallContext, CapabilityClaims, Keyring, UnverifiedToken};
use serde_json::json;

const NOW: i64 = 1_800_000_000;
const AGENT: &str = "spiffe://jitgate.local/agent/triage";

fn claims(jti: String) -> CapabilityClaims {
    CapabilityClaims {
        iss: "jitgate://bench".into(),
        sub: AGENT.into(),
        aud: "workspace".into(),
        jti,
        iat: NOW,
        nbf: NOW,
        exp: NOW + 60,
        sid: "sess_bench".into(),
        task: "task_bench".into(),
        phase: "reply".into(),
        tool: "workspace__send_message".into(),
        args: token::constraints::exact(json!({"to": "alice@example.org", "subject": "Q3", "body": "summary"}).as_object().unwrap()),
        purpose: token::purpose_digest("reply to alice"),
        parent: None,
        uses: 1,
        cnf: None,
    }
}

fn ctx() -> CallContext<'static> {
    CallContext { gateway_id: "jitgate://bench", sid: "sess_bench", dpop_jkt: None, agent_id: AGENT, tool: "workspace__send_message", server: "workspace" }
}

fn task() -> Task {
    Task {
        id: "task_bench".into(),
        agent: AGENT.into(),
        sid: "sess_bench".into(),
        objective: "bench".into(),
        phases: vec![Phase { name: "reply".into(), tools: vec!["workspace__send_message".into()] }],
        current_phase: 0,
        state: TaskState::Active,
        created_at: NOW,
        expires_at: NOW + 3600,
        end_reason: None,
    }
}

fn record(c: &CapabilityClaims) -> TokenRecord {
    TokenRecord {
        jti: c.jti.clone(),
        task: c.task.clone(),
        agent: c.sub.clone(),
        sid: c.sid.clone(),
        tool: c.tool.clone(),
        phase: 0,
        state: TokenState::Issued,
        issued_at: c.iat,
        expires_at: c.exp,
        changed_at: None,
        reason: None,
    }
}

fn benches(c: &mut Criterion) {
    let keyring = Keyring::single(KeyPair::from_seed(&[1; 32]));
    let sample = claims("fixed-jti".into());
    let signed = token::mint(&keyring, &sample).unwrap();

    c.bench_function("mint", |b| b.iter(|| token::mint(&keyring, black_box(&sample)).unwrap()));

    c.bench_function("verify (parse + signature + claims)", |b| {
        b.iter(|| UnverifiedToken::parse(black_box(&signed)).unwrap().verify(&keyring, &ctx(), NOW).unwrap())
    });

    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("bench.sqlite")).unwrap();
    store.create_task(&task()).unwrap();
    let mut n = 0u64;
    c.bench_function("verify + consume (SQLite WAL file)", |b| {
        b.iter_batched(
            || {
                n += 1;
                let c = claims(format!("jti-{n}"));
                store.record_token(&record(&c)).unwrap();
                token::mint(&keyring, &c).unwrap()
            },
            |t| {
                let cap = UnverifiedToken::parse(&t).unwrap().verify(&keyring, &ctx(), NOW).unwrap().consume(&store, NOW).unwrap();
                cap.check_arguments(json!({"to": "alice@example.org", "subject": "Q3", "body": "summary"}).as_object().unwrap()).unwrap();
            },
            BatchSize::SmallInput,
        )
    });

    let agent = Agent {
        name: "triage".into(),
        id: AGENT.into(),
        team: "support".into(),
        environment: "dev".into(),
        description: String::new(),
        allowed_tools: vec![ToolPattern::Server("workspace".into())],
        attributes: Default::default(),
        baseline: Default::default(),
        issuers: vec![],
        source: Default::default(),
    };
    let t = task();
    c.bench_function("plan invariants (request)", |b| {
        b.iter(|| policy::invariants::decide_request(black_box(&agent), black_box(&t), black_box("workspace__send_message")))
    });

    // Cedar decisions with policy sets of growing size: the quick start's
    // rules plus N-6 team permits of the same shape as the shipped ones.
    let facts = AgentFacts { agent: agent.clone(), issuer: "dev".into(), claims: Default::default(), quarantined: false };
    let spec = ToolSpec {
        name: "send_message".into(),
        risk: Risk::High,
        resource_class: "mail".into(),
        environment: "development".into(),
        max_ttl: None,
        sensitive_args: vec!["to".into()],
        open_sensitive_args: vec![],
        untrusted_output: false,
        trusted_fields: Vec::new(),
        tags: vec!["sink".into()],
        args_schema: None,
        pin: String::new(),
        line: 1,
    };
    let tool = ToolFacts::new("workspace", &spec);
    let task_facts = TaskFacts {
        id: "task_bench".into(),
        objective: "bench".into(),
        phase: "reply".into(),
        phase_index: 0,
        phase_count: 1,
        in_phase_plan: true,
        plan: vec!["workspace__send_message".into()],
        after_untrusted_read: false,
        new_tools: vec![],
    };
    let request = RequestFacts {
        purpose: "reply to alice".into(),
        constraints: token::constraints::exact(json!({"to": "alice@example.org", "subject": "Q3", "body": "summary"}).as_object().unwrap()),
        ..Default::default()
    };
    // "scoped": the extra permits name other teams in their scope, so the
    // decision evaluates only the slice that can apply; "unscoped": every
    // extra permit's scope admits the request and its condition is evaluated.
    for scoped in [true, false] {
        for n in [10usize, 100, 1000] {
            let engine = policy_set(n, scoped);
            assert_eq!(engine.len(), n);
            let input = DecisionInput { action: Action::Request, agent: &facts, tool: &tool, time: TimeFacts::at(NOW), task: &task_facts, request: Some(&request), delegation: None };
            assert_eq!(engine.decide(&input).outcome, Outcome::Allow);
            let kind = if scoped { "scoped" } else { "unscoped" };
            c.bench_function(&format!("cedar decision, {n} policies ({kind})"), |b| b.iter(|| engine.decide(black_box(&input))));
        }
    }
}

fn policy_set(n: usize, scoped: bool) -> PolicyEngine {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart/policies");
    let mut sources = policy::read_dir_sources(&dir).unwrap();
    let shipped = PolicyEngine::from_sources(&dir, sources.clone()).unwrap().len();
    let mut extra = String::new();
    for i in 0..n.saturating_sub(shipped) {
        extra.push_str(&format!(
            "@id(\"team-{i}\")\npermit ({}, action == Action::\"Request\", resource in Server::\"workspace\")\nwhen {{ principal.team == \"team-{i}\" && [\"notes\", \"mail\"].contains(resource.resource_class) && resource.risk_level <= {} && context.time.hour >= {} }};\n",
            if scoped { format!("principal in Team::\"team-{i}\"") } else { "principal".to_owned() },
            1 + i % 4,
            i % 24
        ));
    }
    sources.push((dir.join("generated.cedar"), extra));
    PolicyEngine::from_sources(&dir, sources).unwrap()
}

criterion_group!(name = group; config = Criterion::default().sample_size(60).measurement_time(std::time::Duration::from_secs(4)); targets = benches);
criterion_main!(group);
