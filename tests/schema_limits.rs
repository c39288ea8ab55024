//! Issue 23: an agent's `schema` constraint stalled every agent. Through
//! the real binary: the schema from the issue, and one backtracking pattern
//! alone, are refused when the token is requested, saying what the limit is;
//! a schema with an ordinary pattern still grants a token that admits a
//! matching value and refuses another.

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn costly_schemas_are_refused_at_request_time_and_ordinary_patterns_work() {
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let janitor = gw.connect_modern(&dep.mint("janitor")).await;
    let task = begin(&janitor, json!([{"name": "read", "tools": ["workspace__read_note"]}])).await.unwrap();
    let ask = |schema: Value| json!({"task": task, "tool": "workspace__read_note", "purpose": "read notes", "constraints": {"name": {"schema": schema}}});

    let backtracking: Vec<Value> = (0..300).map(|_| json!({"pattern": "^(?:(a|a)*\\1b|a)"})).collect();
    let refused = request_with(&janitor, ask(json!({"type": "string", "allOf": backtracking}))).await.unwrap_err();
    assert_eq!(refusal_code(&refused).as_deref(), Some("invalid_arguments"), "{}", text_of(&refused));
    assert!(text_of(&refused).contains("at most 4096 bytes"), "{}", text_of(&refused));
    let refused = request_with(&janitor, ask(json!({"type": "string", "pattern": "^(?:(a|a)*\\1b|a)"}))).await.unwrap_err();
    assert_eq!(refusal_code(&refused).as_deref(), Some("invalid_arguments"), "{}", text_of(&refused));
    assert!(text_of(&refused).contains("backreference"), "{}", text_of(&refused));

    let ordinary = json!({"type": "string", "pattern": "^[a-z0-9-]+\\.md$"});
    let token = request_with(&janitor, ask(ordinary.clone())).await.unwrap();
    let r = call_with_token(&janitor, "workspace__read_note", json!({"name": "secret.txt"}), &token).await.unwrap();
    assert_eq!(refusal_code(&r).as_deref(), Some("arguments_not_authorized"), "{}", text_of(&r));
    let token = request_with(&janitor, ask(ordinary)).await.unwrap();
    let r = call_with_token(&janitor, "workspace__read_note", json!({"name": "q3-plan.md"}), &token).await.unwrap();
    assert!(text_of(&r).contains("Ship the billing export"), "{}", text_of(&r));
}
