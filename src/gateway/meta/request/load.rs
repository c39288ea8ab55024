//! Stage 2: one trip to the store for everything the request is judged on.

#[allow(unused_imports)]
use super::*;

/// What the store knows that the request is judged on.
pub(in crate::gateway::meta) struct Loaded {
    pub(in crate::gateway::meta) task: Option<Task>,
    pub(in crate::gateway::meta) quarantined: Option<crate::store::Quarantine>,
    pub(in crate::gateway::meta) parent: Option<TokenRecord>,
    pub(in crate::gateway::meta) existing: Option<Approval>,
    pub(in crate::gateway::meta) last_call: Option<crate::store::Call>,
    pub(in crate::gateway::meta) ledger: crate::taint::TaintLedger,
    pub(in crate::gateway::meta) rate: u32,
}

/// Stage 2: one trip to the store ([`Store::read_request`], one snapshot)
/// for the task, the quarantine flag, the named parent call, the approval
/// state of exactly this request, the agent's last call, the taint entries
/// this request can match and its request rate.
pub(in crate::gateway::meta) async fn load_request_state(store: &Arc<dyn Store>, agent: &str, asked: &Asked) -> Result<Loaded, CallToolResult> {
    let read = crate::store::RequestRead {
        agent: agent.to_owned(),
        task: asked.task.clone(),
        follows: asked.follows.clone(),
        digest: asked.digest.clone().filter(|_| asked.break_glass.is_none()),
        probe: asked.probe.clone(),
        now: asked.now,
    };
    let state = crate::store::units::read_request(store, read).await.map_err(store_refusal)?;
    Ok(Loaded {
        task: state.task,
        quarantined: state.quarantined,
        parent: state.parent,
        existing: state.approval,
        last_call: state.last_call,
        ledger: state.ledger,
        rate: state.rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::meta::request::fixture::{AGENT, NOW, SEND, asked, task};
    use crate::taint::{Source, TaintEntry};

    fn store() -> Arc<dyn Store> {
        Arc::new(crate::store::SqliteStore::in_memory().unwrap_or_else(|e| panic!("{e}")))
    }

    /// A send request whose probe looks up its `sensitive` arguments, as parsing builds it.
    fn probing(sensitive: &[String], arguments: Value) -> (Asked, ArgConstraints) {
        let mut request = asked(SEND, arguments);
        let constraints = request.constraints.clone().unwrap_or_default();
        request.probe = TaintProbe::of(sensitive, &constraints);
        (request, constraints)
    }

    #[tokio::test]
    async fn a_fresh_store_has_no_task_and_counts_this_request() {
        let loaded = load_request_state(&store(), AGENT, &asked(SEND, json!({"to": "a@example.test"}))).await.unwrap_or_else(|e| panic!("{e:?}"));
        assert!(loaded.task.is_none() && loaded.quarantined.is_none() && loaded.last_call.is_none() && loaded.existing.is_none());
        assert_eq!(loaded.rate, 1, "the request being judged is counted in its own rate");
        assert!(loaded.ledger.is_empty());
    }

    #[tokio::test]
    async fn reads_the_task_quarantine_rate_and_the_ledger_entries_the_request_matches() {
        let store = store();
        store.create_task(&task(1)).unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..2 {
            store.count_request(AGENT, NOW).unwrap_or_else(|e| panic!("{e}"));
        }
        let read = Source { call: "jti_read".into(), tool: "ws__read_inbox".into(), ..Source::default() };
        let entries = TaintEntry::plain(vec!["mallory@attacker.test".into(), "unrelated words of a page".into()]);
        store.record_taint(AGENT, &entries, &read, NOW - 30, 100).unwrap_or_else(|e| panic!("{e}"));
        let quarantine = crate::audit::Event::new("quarantine", None, Some(AGENT), json!({}));
        store.quarantine(AGENT, "drift", &quarantine, NOW - 1).unwrap_or_else(|e| panic!("{e}"));

        let to = ["to".to_owned()];
        let (request, constraints) = probing(&to, json!({"to": "mallory@attacker.test"}));
        let loaded = load_request_state(&store, AGENT, &request).await.unwrap_or_else(|e| panic!("{e:?}"));
        // The quarantine revoked the task; what the stage reads is what is on record.
        assert_eq!(loaded.task.map(|t| t.id), Some("task_1".into()));
        assert_eq!(loaded.quarantined.map(|q| q.reason), Some("drift".into()));
        assert_eq!(loaded.rate, 3);
        assert!(loaded.ledger.check(&to, &[], &constraints).tainted, "the value read from the inbox is found");
        // A request for another address finds nothing to match, though the
        // ledger still says the agent read untrusted output.
        let (honest, c) = probing(&to, json!({"to": "alice@example.test"}));
        let loaded = load_request_state(&store, AGENT, &honest).await.unwrap_or_else(|e| panic!("{e:?}"));
        assert!(!loaded.ledger.check(&to, &[], &c).tainted);
        assert_eq!(loaded.ledger.untrusted_tools(), vec!["ws__read_inbox".to_owned()]);

        // Another agent's read sees none of it.
        let other = load_request_state(&store, "spiffe://example.test/agent/other", &request).await.unwrap_or_else(|e| panic!("{e:?}"));
        assert!(other.quarantined.is_none() && other.ledger.is_empty());
        assert_eq!(other.rate, 1);
    }
}
