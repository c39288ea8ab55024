//! Capability token costs in process: mint, verify (signature + claims),
//! verify + atomic consume against SQLite (WAL file), and the authorization
//! decision. `cargo bench --bench tokens`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use jitgate::agent::{Agent, ToolPattern};
use jitgate::keys::KeyPair;
use jitgate::policy;
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
    }
}

fn ctx() -> CallContext<'static> {
    CallContext { gateway_id: "jitgate://bench", sid: "sess_bench", agent_id: AGENT, tool: "workspace__send_message", server: "workspace" }
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
    };
    let t = task();
    c.bench_function("authorization decision (request)", |b| {
        b.iter(|| policy::decide_request(black_box(&agent), black_box(&t), black_box("workspace__send_message")))
    });
}

criterion_group!(name = group; config = Criterion::default().sample_size(60).measurement_time(std::time::Duration::from_secs(4)); targets = benches);
criterion_main!(group);
