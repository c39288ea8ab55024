use super::*;
use serde_json::json;

fn tool(v: Value) -> Tool {
    serde_json::from_value(v).unwrap()
}

/// Issue 24 item 5: a directory listing's ids and names are the
/// directory's own entries, even where anyone may name them; a listing
/// with an outputSchema gets its id and name keys, not its free text.
#[test]
fn a_directory_listing_proposes_its_ids_and_names_as_trusted() {
    let channels = propose(&tool(json!({"name": "list_channels", "description": "The workspace's channels. Anyone in the workspace may create a channel and name it.", "inputSchema": {"type": "object"}})));
    assert!(channels.untrusted_output, "{channels:?}");
    assert_eq!(channels.trusted_fields, ["id", "name"]);
    assert!(channels.reasons.iter().any(|r| r.starts_with("trusted_fields: it lists channels: their ids and names are the directory's own entries")), "{:?}", channels.reasons);
    let rooms = propose(&tool(json!({
        "name": "list_rooms", "description": "The chat rooms, with the topic anyone in them set.", "inputSchema": {"type": "object"},
        "outputSchema": {"type": "object", "properties": {"rooms": {"type": "array", "items": {"type": "object", "properties": {"room_id": {}, "display_name": {}, "topic": {}}}}}}
    })));
    assert_eq!(rooms.trusted_fields, ["room_id", "display_name"], "{rooms:?}");
    // Not a listing: a channel's messages keep only their senders.
    let messages = propose(&tool(json!({"name": "read_channel_messages", "description": "Messages posted in a channel.", "inputSchema": {"type": "object"}})));
    assert!(messages.trusted_fields.is_empty() && messages.suggested_trusted_fields.contains(&"sender".to_owned()), "{messages:?}");
}

/// A 37-tool assistant suite in the style of public agent-security
/// benchmarks (mail, calendar, drive, web, chat, bank, travel), written
/// for this test: names, descriptions and input schemas, no annotations.
/// Each row is what a careful reviewer would write.
#[test]
fn proposals_for_an_unannotated_assistant_suite_are_what_a_reviewer_would_write() {
    let tools: Vec<Tool> = serde_json::from_str(include_str!("../fixtures/assistant_suite.json")).unwrap();
    #[rustfmt::skip]
    let expected: &[(&str, Risk, bool, bool, &[&str])] = &[
        // name                           risk            sink   untrusted sensitive
        ("send_email",                    Risk::High,     true,  false, &["cc", "recipients"]),
        ("get_unread_emails",             Risk::Medium,   false, true,  &[]),
        ("search_emails",                 Risk::Medium,   false, true,  &[]),
        ("delete_email",                  Risk::Critical, false, false, &[]),
        ("get_day_calendar_events",       Risk::Medium,   false, true,  &[]),
        ("create_calendar_event",         Risk::Medium,   true,  false, &["participants"]),
        ("cancel_calendar_event",         Risk::High,     false, false, &[]),
        ("reschedule_calendar_event",     Risk::Medium,   false, false, &[]),
        ("list_files",                    Risk::Medium,   false, true,  &[]),
        ("search_files",                  Risk::Medium,   false, true,  &[]),
        ("create_file",                   Risk::Medium,   false, false, &["filename"]),
        ("append_to_file",                Risk::Medium,   false, false, &["file_id"]),
        ("share_file",                    Risk::High,     true,  false, &["email"]),
        ("delete_file",                   Risk::Critical, false, false, &["file_id"]),
        ("get_webpage",                   Risk::Low,      true,  true,  &["url"]),
        ("post_webpage",                  Risk::High,     true,  false, &["url"]),
        ("search_web",                    Risk::Low,      false, true,  &[]),
        ("get_channels",                  Risk::Low,      false, false, &[]),
        ("read_channel_messages",         Risk::Medium,   false, true,  &[]),
        ("read_inbox",                    Risk::Medium,   false, true,  &[]),
        ("send_direct_message",           Risk::High,     true,  false, &["recipient"]),
        ("send_channel_message",          Risk::High,     true,  false, &["channel"]),
        ("add_user_to_channel",           Risk::Medium,   false, false, &["channel", "user"]),
        ("invite_user_to_slack",          Risk::High,     true,  false, &["user", "user_email"]),
        ("remove_user_from_slack",        Risk::Critical, false, false, &["user"]),
        ("get_iban",                      Risk::Low,      false, false, &[]),
        ("get_balance",                   Risk::Low,      false, false, &[]),
        ("list_transactions",             Risk::Medium,   false, true,  &[]),
        ("send_money",                    Risk::High,     true,  false, &["amount", "recipient"]),
        ("schedule_transaction",          Risk::High,     true,  false, &["amount", "recipient"]),
        ("update_password",               Risk::Critical, false, false, &[]),
        ("update_user_info",              Risk::Medium,   false, false, &[]),
        ("search_hotels",                 Risk::Low,      false, false, &[]),
        ("get_rating_reviews_for_hotels", Risk::Low,      false, true,  &[]),
        ("get_flight_information",        Risk::Low,      false, false, &[]),
        ("reserve_hotel",                 Risk::High,     true,  false, &["hotel"]),
        ("reserve_car",                   Risk::High,     true,  false, &["company"]),
    ];
    assert_eq!(tools.len(), expected.len());
    let mut wrong = Vec::new();
    for (t, (name, risk, sink, untrusted, sensitive)) in tools.iter().zip(expected) {
        assert_eq!(t.name, *name, "the table follows the fixture's order");
        let p = propose(t);
        let want = (*risk, *sink, *untrusted, sensitive.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        let got = (p.risk, p.sink, p.untrusted_output, p.sensitive.clone());
        if got != want {
            wrong.push(format!("{name}: proposed {got:?}, a reviewer writes {want:?}\n  because: {:?}\n  review: {:?}", p.reasons, p.review));
        }
        // Every proposal says why; a sink, an untrusted output and the risk each have their line.
        assert!(p.reasons.first().is_some_and(|r| r.starts_with(&format!("risk {}: ", p.risk.as_str()))), "{name}: {:?}", p.reasons);
        assert_eq!(p.sink, p.reasons.iter().any(|r| r.starts_with("sink: ")), "{name}: {:?}", p.reasons);
        assert_eq!(p.untrusted_output, p.reasons.iter().any(|r| r.starts_with("untrusted output: ")), "{name}: {:?}", p.reasons);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // Trusted fields: from the outputSchema when there is one (the
    // transaction's subject is the other party's text; the rest the bank
    // records), typical keys to review when there is none.
    let by_name = |n: &str| propose(tools.iter().find(|t| t.name == n).unwrap());
    let transactions = by_name("list_transactions");
    assert_eq!(transactions.trusted_fields, ["id", "sender", "recipient", "amount", "date"]);
    assert!(transactions.suggested_trusted_fields.is_empty());
    let unread = by_name("get_unread_emails");
    assert!(unread.trusted_fields.is_empty() && unread.suggested_trusted_fields.contains(&"sender".to_owned()), "{unread:?}");
    assert!(unread.review.iter().any(|r| r.contains("no outputSchema")), "{unread:?}");
    assert!(by_name("get_webpage").suggested_trusted_fields.is_empty(), "a page's text is all third-party");
    assert!(by_name("reserve_car").review.iter().any(|r| r.contains("`company`")), "a guessed destination is marked for review");
    assert!(by_name("get_channels").review.iter().any(|r| r.starts_with("untrusted_output = false only because")));
    assert!(by_name("get_iban").review.is_empty(), "{:?}", by_name("get_iban"));

    // The figures for the record (`cargo test --lib manifest -- --nocapture`).
    let proposals: Vec<Proposal> = tools.iter().map(propose).collect();
    for risk in [Risk::Low, Risk::Medium, Risk::High, Risk::Critical] {
        println!("{:>8}: {}", risk.as_str(), proposals.iter().filter(|p| p.risk == risk).count());
    }
    println!("untrusted: {}, sinks: {}, with trusted fields: {}", proposals.iter().filter(|p| p.untrusted_output).count(), proposals.iter().filter(|p| p.sink).count(), proposals.iter().filter(|p| !p.trusted_fields.is_empty() || !p.suggested_trusted_fields.is_empty()).count());
}

/// Annotations are hints: a wrong one cannot lower what the name says,
/// a destructive one raises a plain write, and one that contradicts the
/// name is pointed out.
#[test]
fn annotations_raise_proposals_but_never_lower_them() {
    let lying = tool(serde_json::json!({"name": "send_money", "description": "Pay someone.", "annotations": {"readOnlyHint": true, "destructiveHint": false},
        "inputSchema": {"type": "object", "properties": {"recipient": {"type": "string"}, "amount": {"type": "number"}}}}));
    let p = propose(&lying);
    assert_eq!((p.risk, p.sink, p.sensitive.as_slice()), (Risk::High, true, ["amount".to_owned(), "recipient".to_owned()].as_slice()));
    assert!(p.review.iter().any(|r| r.contains("read-only")), "{p:?}");
    let overwrite = tool(serde_json::json!({"name": "write_file", "description": "Write text to a file.", "annotations": {"destructiveHint": true},
        "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}}}));
    let p = propose(&overwrite);
    assert_eq!((p.risk, p.sink, p.sensitive.as_slice()), (Risk::High, false, ["path".to_owned()].as_slice()), "{p:?}");
    // Nothing but the annotation to go on: it decides, marked for review.
    let opaque = tool(serde_json::json!({"name": "zorp", "annotations": {"readOnlyHint": true}, "inputSchema": {"type": "object"}}));
    let p = propose(&opaque);
    assert_eq!(p.risk, Risk::Low);
    assert!(p.review.iter().any(|r| r.contains("readOnlyHint")), "{p:?}");
    // Nothing at all: high until someone looks.
    let p = propose(&tool(serde_json::json!({"name": "zorp", "inputSchema": {"type": "object"}})));
    assert_eq!(p.risk, Risk::High);
    assert!(p.review.iter().any(|r| r.contains("high until someone reads")), "{p:?}");
    // A read the server calls not read-only is still a read, but flagged.
    let p = propose(&tool(serde_json::json!({"name": "get_inbox", "annotations": {"readOnlyHint": false}, "inputSchema": {"type": "object"}})));
    assert!(p.untrusted_output && p.review.iter().any(|r| r.contains("not read-only")), "{p:?}");
}

#[test]
fn nouns_that_are_verbs_count_only_where_a_verb_stands() {
    let p = propose(&tool(serde_json::json!({"name": "blog_post_list", "description": "Posts in the blog.", "inputSchema": {"type": "object"}})));
    assert!(!p.sink && p.risk == Risk::Low && p.untrusted_output, "a listing of posts, which people write: {p:?}");
    // Prose uses some nouns for other things.
    let p = propose(&tool(serde_json::json!({"name": "hang", "description": "Never answers; returns a page of results.", "annotations": {"readOnlyHint": true}, "inputSchema": {"type": "object"}})));
    assert!(!p.untrusted_output, "{p:?}");
    let p = propose(&tool(serde_json::json!({"name": "slack_post_message", "description": "Post a message to a channel.",
        "inputSchema": {"type": "object", "properties": {"channel_name": {"type": "string"}, "text": {"type": "string"}}}})));
    assert_eq!((p.risk, p.sink, p.sensitive.as_slice()), (Risk::High, true, ["channel_name".to_owned()].as_slice()), "{p:?}");
    let p = propose(&tool(serde_json::json!({"name": "create_and_send_invoice", "inputSchema": {"type": "object", "properties": {"customer_email": {"type": "string"}}}})));
    assert!(p.sink && p.risk == Risk::High, "{p:?}");
    // `email_id` names a message; `recipient_id` still a person.
    let p = propose(&tool(serde_json::json!({"name": "forward_email", "inputSchema": {"type": "object", "properties": {"email_id": {"type": "string"}, "recipient_id": {"type": "string"}}}})));
    assert_eq!(p.sensitive, ["recipient_id"]);
}

#[test]
fn words_split_names_and_text() {
    assert_eq!(words("read_channel-messages"), ["read", "channel", "messages"]);
    assert_eq!(words("sendMoney"), ["send", "money"]);
    assert_eq!(words("getURLContent"), ["get", "url", "content"]);
    assert_eq!(words("Sends an e-mail."), ["sends", "an", "e", "mail"]);
    assert!(is_noun("replies", "reply") && is_noun("emails", "email") && is_noun("addresses", "address") && !is_noun("email", "emails"));
}
