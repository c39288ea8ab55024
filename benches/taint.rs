//! What a request pays to judge taint, with a full ledger and with an empty
//! one (issue 23: the whole ledger, up to 4,096 passages of 16 KB, was read
//! for every request). `cargo bench --bench taint`.
//!
//! - `lookup/empty`, `lookup/full`: the index lookup a `jit_request` makes
//!   for a send to one address, then the verdict (SQLite file, WAL).
//! - `whole_ledger/full`: reading and judging the whole ledger, as before.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use jitgate::baseline::taint::{MAX_VALUES_PER_AGENT, Source, TaintProbe, output_entries};
use jitgate::store::{SqliteStore, Store};
use jitgate::token::{ArgConstraints, Constraint};
use serde_json::json;

#[path = "../examples/support/pages.rs"]
mod pages;
use pages::page;

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("jitgate.sqlite")).unwrap();
    // Fill the full agent's ledger to just under its cap.
    // Each page is two passages and two values: 1,000 pages fill the
    // ledger to its cap of 4,096 entries, about 16 MB of text.
    let pages = 1000;
    for n in 0..pages {
        let source = Source { call: format!("j{n}"), tool: "web__get".into(), ..Source::default() };
        store.record_taint("full", &output_entries(&page(n), &[]), &source, 10, MAX_VALUES_PER_AGENT).unwrap();
    }
    store.record_taint("empty-reader", &output_entries(&page(9999), &[]), &Source { call: "j".into(), tool: "web__get".into(), ..Source::default() }, 10, MAX_VALUES_PER_AGENT).unwrap();
    eprintln!("full ledger: {pages} pages, {} passages", store.taint_ledger("full").unwrap().passages_held());
    let to = vec!["to".to_owned()];
    let request = ArgConstraints::from([("to".to_owned(), Constraint::Eq(json!("alice@example.org")))]);
    let probe = TaintProbe::of(&to, &request);
    let mut g = c.benchmark_group("taint");
    for agent in ["empty-reader", "full"] {
        g.bench_function(format!("lookup/{agent}"), |b| {
            b.iter(|| black_box(store.taint_lookup(agent, &probe).unwrap().check(&to, &[], &request)));
        });
    }
    g.bench_function("whole_ledger/full", |b| {
        b.iter(|| black_box(store.taint_ledger("full").unwrap().check(&to, &[], &request)));
    });
    g.finish();
}

criterion_group!(name = group; config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3)); targets = benches);
criterion_main!(group);
