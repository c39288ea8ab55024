//! What `jitgate manifest init` proposes for a tool it has never seen: a risk
//! class, the arguments that choose where data or money goes, whether its
//! output is written by other people, the keys of that output the server
//! vouches for, and whether it is a sink. Each proposal carries the reason a
//! reviewer reads above the tool, and what cannot be judged is marked
//! `# REVIEW:`.
//!
//! It reads a tool as a careful reviewer would, from the tool's name, its
//! description and its schemas. The MCP annotations are hints the server may
//! leave out or get wrong: they are one more signal that can raise a
//! proposal (or decide one nothing else decides), never lower what the name
//! or the description implies. A server's words choose a starting point for a
//! person, not a decision: everything here ends up in a file someone reviews.
//!
//! The threat this guards against is a team that accepts the proposals as
//! they are: if no tool is proposed `untrusted_output`, taint never fires,
//! and if a sending tool is proposed low risk, no one is asked before it runs.

use crate::manifest::Risk;
use rmcp::model::Tool;
use serde_json::Value;

mod lexicon;
#[allow(unused_imports)]
use self::lexicon::*;

/// What `manifest init` proposes for one tool, with the reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::cli) struct Proposal {
    pub risk: Risk,
    /// Arguments that choose a destination, an amount or what a write
    /// changes; values that came from untrusted content there are tainted.
    pub sensitive: Vec<String>,
    pub untrusted_output: bool,
    /// Tagged `sink`: it sends data or money where its arguments say.
    pub sink: bool,
    /// Keys of an untrusted output that the system, not the writer, fills
    /// (ids, dates, amounts, the sender it recorded), read from the tool's
    /// outputSchema.
    pub trusted_fields: Vec<String>,
    /// The keys such outputs usually have, when the tool declares no
    /// outputSchema to read them from: written commented out, to review.
    pub suggested_trusted_fields: Vec<String>,
    /// Why each proposal was made, one line each, written above the tool.
    pub reasons: Vec<String>,
    /// What a person has to decide, written as `# REVIEW:` lines.
    pub review: Vec<String>,
}

/// What a tool does, from reading to destroying, as its verb says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    /// Reads and returns something.
    Read,
    /// Changes the user's own data.
    Write,
    /// Does something hard to take back, but sends nothing out.
    Irreversible,
    /// Data or money leaves for a destination: sends, shares, pays, books.
    Send,
    /// Destroys data or changes who may do what.
    Destroy,
}

impl Action {
    fn risk(self) -> Risk {
        match self {
            Action::Read => Risk::Low,
            Action::Write => Risk::Medium,
            Action::Irreversible | Action::Send => Risk::High,
            Action::Destroy => Risk::Critical,
        }
    }
}

/// The action a verb names, and whether the word is as often a noun (`post`,
/// `email`, `order`): such words send or destroy only where a verb stands,
/// first in a name or a sentence, so `blog_post_list` is not a sender.
fn verb(word: &str) -> Option<(Action, bool)> {
    use Action::*;
    let found = match word {
        "read" | "get" | "search" | "find" | "fetch" | "show" | "lookup" | "look" | "retrieve" | "describe" | "inspect" | "browse" | "download" | "return"
        | "echo" | "calculate" | "compute" | "convert" | "summarize" | "summarise" | "translate" | "validate" | "preview" | "explain" | "display" | "peek"
        | "scan" | "load" => (Read, false),
        "list" | "view" | "query" | "count" | "check" => (Read, true),
        "create" | "update" | "add" | "edit" | "write" | "schedule" | "reschedule" | "set" | "modify" | "change" | "rename" | "move" | "copy" | "save"
        | "append" | "insert" | "toggle" | "enable" | "disable" | "mark" | "label" | "archive" | "star" | "rate" | "store" | "put" | "patch" | "configure"
        | "assign" | "import" | "start" | "stop" | "make" | "replace" | "upsert" | "register" | "subscribe" | "unsubscribe" | "join" | "leave" | "like"
        | "follow" | "unfollow" | "close" | "reopen" | "restore" | "compress" | "draft" | "pin" | "unpin" | "react" | "tag" | "new" => (Write, false),
        "cancel" | "run" | "execute" | "exec" | "eval" | "deploy" | "install" | "merge" | "approve" | "overwrite" | "restart" | "launch" => (Irreversible, false),
        "send" | "invite" | "pay" | "reserve" | "publish" | "upload" | "forward" | "respond" | "notify" | "submit" | "purchase" | "buy" | "donate" | "withdraw"
        | "push" | "broadcast" | "announce" | "rent" | "checkout" | "refund" => (Send, false),
        "share" | "post" | "transfer" | "book" | "reply" | "email" | "mail" | "message" | "tweet" | "order" | "dm" | "comment" | "tip" | "wire" => (Send, true),
        "delete" | "remove" | "revoke" | "rotate" | "destroy" | "purge" | "wipe" | "erase" | "truncate" | "reset" | "kill" | "terminate" | "shutdown"
        | "uninstall" | "kick" | "deactivate" | "clear" => (Destroy, false),
        "drop" | "grant" | "ban" => (Destroy, true),
        _ => return None,
    };
    Some(found)
}

/// What an argument chooses, as its name or format says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArgKind {
    Network,
    Destination,
    Place,
    Amount,
    Path,
    /// What a send books or goes to, when no argument is named like a destination.
    Object,
}

impl ArgKind {
    fn describe(self) -> &'static str {
        match self {
            ArgKind::Network => "a network address, which carries data out",
            ArgKind::Destination => "a recipient or destination",
            ArgKind::Place => "the person or channel it acts on",
            ArgKind::Amount => "an amount of money",
            ArgKind::Path => "the file or path it changes",
            ArgKind::Object => "what the call books or goes to",
        }
    }
}

/// The lower-case words of a name or a text: split at anything not a letter
/// or digit and at camelCase humps (`sendMoney`, `getURLContent`).
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let prev = i.checked_sub(1).and_then(|p| chars.get(p)).copied();
        let next = chars.get(i + 1).copied();
        let hump = c.is_uppercase()
            && prev.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit() || (p.is_uppercase() && next.is_some_and(|n| n.is_lowercase())));
        if hump && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `word` is `noun` or one of its plurals.
fn is_noun(word: &str, noun: &str) -> bool {
    word == noun
        || word.strip_suffix('s') == Some(noun)
        || word.strip_suffix("es") == Some(noun)
        || word.strip_suffix("ies").is_some_and(|stem| noun.strip_suffix('y') == Some(stem))
}

fn among(word: &str, nouns: &[&str]) -> bool {
    nouns.iter().any(|n| is_noun(word, n))
}

/// The verb a description's word is a form of (`sends`, `searches`, `copies`).
fn verb_form(word: &str) -> Option<(Action, bool, String)> {
    let mut forms = vec![word.to_owned()];
    forms.extend(word.strip_suffix('s').map(str::to_owned));
    forms.extend(word.strip_suffix("es").map(str::to_owned));
    forms.extend(word.strip_suffix("ies").map(|w| format!("{w}y")));
    forms.into_iter().find_map(|f| verb(&f).map(|(a, noun)| (a, noun, f)))
}

/// The text as ` word word … ` for phrase matching on whole words.
fn phrase_text(s: &str) -> String {
    format!(" {} ", words(s).join(" "))
}

/// The first of `phrases` that `text` (from [`phrase_text`]) contains as whole words.
fn says(text: &str, phrases: &[&'static str]) -> Option<&'static str> {
    phrases.iter().copied().find(|p| text.contains(&phrase_text(p)))
}

/// The first sentence of a description (tool descriptions often go on with
/// advice that names other tools, which must not count as what this one does).
fn first_sentence(description: &str) -> &str {
    let end = description.find(". ").or_else(|| description.find(".\n")).or_else(|| description.find('\n')).unwrap_or(description.len());
    description.get(..end).unwrap_or(description)
}

/// What the name says the tool does: its first verb, then any later verb
/// that sends or destroys (`create_and_send_invoice`), each with its reason;
/// and the index of the first verb (the object follows it).
fn actions_in_name(name_words: &[String]) -> (Vec<(Action, String)>, Option<usize>) {
    let mut found = Vec::new();
    let mut first = None;
    for (i, w) in name_words.iter().enumerate() {
        let Some((a, noun_too)) = verb(w) else { continue };
        let after_and = i.checked_sub(1).and_then(|p| name_words.get(p)).is_some_and(|p| p == "and" || p == "then");
        // `blog_post_list` lists posts; `user_list` is a list either way.
        if noun_too && i > 0 && !after_and && a > Action::Read {
            continue;
        }
        if first.is_none() {
            first = Some(i);
            found.push((a, format!("the name says \"{w}\"")));
        } else if a >= Action::Send {
            found.push((a, format!("the name also says \"{w}\"")));
        }
    }
    (found, first)
}

/// The description's leading verb (`Sends an e-mail…`, `This tool deletes…`):
/// among the first four words of its first sentence. A word that is as often
/// a noun counts only as the first word and followed by an article (`Post a
/// message`, `Lists all files`, not `Messages posted in…`).
fn action_from_description(description: &str) -> Option<(Action, String)> {
    const DETERMINERS: &[&str] = &["a", "an", "the", "this", "that", "these", "those", "all", "one", "your", "my", "our", "its", "their", "it", "them"];
    let lead = words(first_sentence(description));
    let object_follows = lead.get(1).is_some_and(|w| DETERMINERS.contains(&w.as_str()));
    lead.iter().take(4).enumerate().find_map(|(i, w)| match verb_form(w) {
        Some((a, false, base)) => Some((a, base)),
        Some((a, true, base)) if i == 0 && object_follows => Some((a, base)),
        _ => None,
    })
}

/// Phrases anywhere in a description that raise the risk, whatever the verb.
fn risk_phrases(text: &str) -> Option<(Action, &'static str)> {
    const DESTROYS: &[&str] = &["permanently", "cannot be undone", "can't be undone", "irreversible", "irreversibly"];
    const OVERWRITES: &[&str] = &["overwrite", "overwrites", "overwriting"];
    says(text, DESTROYS).map(|p| (Action::Destroy, p)).or_else(|| says(text, OVERWRITES).map(|p| (Action::Irreversible, p)))
}

fn arg_kind(name: &str, schema: &Value, has_path_arg: bool) -> Option<ArgKind> {
    let format = schema.get("format").and_then(Value::as_str).unwrap_or("");
    if matches!(format, "uri" | "url" | "iri" | "uri-reference" | "hostname") {
        return Some(ArgKind::Network);
    }
    if matches!(format, "email" | "idn-email") {
        return Some(ArgKind::Destination);
    }
    let w = words(name);
    let reference = w.len() > 1 && w.last().is_some_and(|l| REFERENCE_SUFFIXES.contains(&l.as_str()));
    let named = |list: &[&str]| w.iter().any(|x| among(x, list));
    if named(NETWORK_ARGS) && !reference {
        return Some(ArgKind::Network);
    }
    // `move_file(source, destination)`: a destination among paths is a path.
    if has_path_arg && w.iter().any(|x| matches!(x.as_str(), "destination" | "dest" | "target")) {
        return Some(ArgKind::Path);
    }
    if named(DESTINATION_ARGS) && (!reference || named(PERSON_WORDS)) {
        return Some(ArgKind::Destination);
    }
    if named(PLACE_ARGS) {
        return Some(ArgKind::Place);
    }
    if named(AMOUNT_ARGS) {
        return Some(ArgKind::Amount);
    }
    if named(PATH_ARGS) {
        return Some(ArgKind::Path);
    }
    None
}

/// Every property name anywhere in a JSON schema, in order, once each.
fn schema_keys(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                for k in props.keys() {
                    if !out.contains(k) {
                        out.push(k.clone());
                    }
                }
            }
            map.values().for_each(|v| schema_keys(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| schema_keys(v, out)),
        _ => {}
    }
}

/// A key the system fills in records of this kind: an id or a timestamp of
/// any record, or one of the kind's own (a message's sender).
fn system_key(key: &str, content: Option<&Content>) -> bool {
    let lower = key.to_ascii_lowercase();
    let w = words(key);
    let id_or_time = lower == "id"
        || lower == "uuid"
        || w.last().is_some_and(|l| l == "id" || l == "at")
        || matches!(lower.as_str(), "date" | "timestamp" | "created" | "updated" | "created_at" | "updated_at");
    id_or_time || content.is_some_and(|c| c.system_keys.contains(&lower.as_str()))
}

/// Where a tool's output comes from, as its name and description say.
enum Origin {
    Others { content: Option<&'static Content>, why: String },
    Own { why: String },
    Unknown,
}

fn output_origin(object: &[String], description: &str) -> Origin {
    let text = phrase_text(description);
    let others_phrase = says(&text, OTHERS_WROTE);
    let own_phrase = says(&text, OWN_RECORDS);
    // The head noun decides: `read_channel_messages` returns messages,
    // `get_file_info` metadata, `list_users_in_channel` users.
    for w in object.iter().rev() {
        if let Some(c) = CONTENTS.iter().find(|c| among(w, c.nouns)) {
            return match (own_phrase, others_phrase) {
                (Some(own), None) if !c.by_people => Origin::Own { why: format!("the name says \"{w}\", but the description says \"{own}\": proposed as the server's own records") },
                _ => Origin::Others { content: Some(c), why: format!("the name says \"{w}\", and {} hold what other people wrote", c.what) },
            };
        }
        if among(w, OWN_NOUNS) {
            return match others_phrase {
                Some(p) => Origin::Others { content: None, why: format!("the description says \"{p}\"") },
                None => Origin::Own { why: format!("the name says \"{w}\", which the server keeps itself") },
            };
        }
    }
    if let Some(p) = others_phrase {
        return Origin::Others { content: None, why: format!("the description says \"{p}\"") };
    }
    // No noun in the name: what the first sentence says it returns, leaving
    // out nouns that prose uses for other things ("a page of results", "an
    // event loop", "if an issue occurs").
    const LOOSE_IN_PROSE: &[&str] = &["page", "site", "post", "event", "note", "thread", "feed", "file", "drive", "reply", "chat", "statement", "issue", "bug", "draft", "doc", "incident", "transfer", "receipt"];
    for w in words(first_sentence(description)).iter().filter(|w| !among(w, LOOSE_IN_PROSE)) {
        if let Some(c) = CONTENTS.iter().find(|c| among(w, c.nouns)) {
            return Origin::Others { content: Some(c), why: format!("the description says \"{w}\", and {} hold what other people wrote", c.what) };
        }
    }
    if let Some(p) = own_phrase {
        return Origin::Own { why: format!("the description says \"{p}\"") };
    }
    Origin::Unknown
}

/// What a tool does as far as its words and hints tell, with the reasons.
struct Judgement {
    /// None when no verb says what it does.
    action: Option<Action>,
    /// Why the risk is what it is, in the order the signals raised it.
    why: Vec<String>,
    /// The reason that made it a sending tool.
    sends_because: Option<String>,
}

impl Judgement {
    /// Take `a` if it is more than what is known: signals only ever raise.
    fn raise(&mut self, a: Action, why: String) {
        if self.action.is_none_or(|b| a > b) {
            if a == Action::Send {
                self.sends_because = Some(why.clone());
            }
            self.action = Some(a);
            self.why.push(why);
        }
    }
}

/// Propose a manifest entry for `tool`, as a careful reviewer would for a
/// tool without annotations: what it does, its risk, whose words it
/// returns, which arguments choose where data or money goes, and which keys
/// of its output the system fills.
pub(in crate::cli) fn propose(tool: &Tool) -> Proposal {
    let description = tool.description.as_deref().unwrap_or("");
    let name_words = words(&tool.name);
    let properties = tool.input_schema.get("properties").and_then(Value::as_object);
    let has_path_arg = properties.is_some_and(|p| p.keys().any(|k| words(k).iter().any(|w| among(w, PATH_ARGS))));
    let args: Vec<(String, ArgKind)> =
        properties.map(|p| p.iter().filter_map(|(k, s)| arg_kind(k, s, has_path_arg).map(|kind| (k.clone(), kind))).collect()).unwrap_or_default();
    let mut review = Vec::new();

    let (mut judged, verb_at) = judge_action(&name_words, description, &args);
    let read_only = read_only(tool, &judged, &mut review);
    let object = object_of(&name_words, verb_at);
    let returns_content = read_only || judged.action.is_none();
    let (untrusted_because, content) = if returns_content { judge_output(&object, description, &mut review) } else { (None, None) };
    let risk = judge_risk(tool, &name_words, &mut judged, read_only, content, &mut review);
    let (sensitive, sink_because) = judge_arguments(tool, &args, &judged, read_only, &object, &mut review);
    let listed = listing_of(&name_words, &object);
    let (trusted_fields, suggested_trusted_fields, trusted_because) =
        if untrusted_because.is_some() { judge_trusted_fields(tool, content, listed, &mut review) } else { (vec![], vec![], None) };

    let mut reasons = vec![format!("risk {}: {}", risk.as_str(), judged.why.join("; "))];
    reasons.extend(untrusted_because.iter().map(|why| format!("untrusted output: {why}")));
    if !sensitive.is_empty() {
        let listed: Vec<String> = sensitive.iter().map(|(k, kind)| format!("`{k}` ({})", kind.describe())).collect();
        reasons.push(format!("sensitive: {}", listed.join(", ")));
    }
    reasons.extend(sink_because.iter().map(|why| format!("sink: {why}")));
    reasons.extend(trusted_because.map(|why| format!("trusted_fields: {why}")));
    let mut sensitive: Vec<String> = sensitive.into_iter().map(|(k, _)| k).collect();
    sensitive.sort();
    sensitive.dedup();
    Proposal {
        risk,
        sensitive,
        untrusted_output: untrusted_because.is_some(),
        sink: sink_because.is_some(),
        trusted_fields,
        suggested_trusted_fields,
        reasons,
        review,
    }
}

/// What the name says the tool acts on: the words after its verb up to a
/// preposition (`list_users_in_channel` lists users), or, in a name that
/// puts its verb last (`calendar_event_list`), the words before it.
fn object_of(name_words: &[String], verb_at: Option<usize>) -> Vec<String> {
    let after = |from: usize| name_words.iter().skip(from).take_while(|w| !PREPOSITIONS.contains(&w.as_str())).cloned().collect::<Vec<_>>();
    match verb_at {
        None => after(0),
        Some(i) => {
            let object = after(i + 1);
            if object.is_empty() { name_words.iter().take(i).cloned().collect() } else { object }
        }
    }
}

/// What it does: the name's verbs, the description's leading verb, phrases
/// that say it overwrites or cannot be undone, and money for a write.
fn judge_action(name_words: &[String], description: &str, args: &[(String, ArgKind)]) -> (Judgement, Option<usize>) {
    let mut judged = Judgement { action: None, why: Vec::new(), sends_because: None };
    let (in_name, verb_at) = actions_in_name(name_words);
    for (a, why) in in_name {
        judged.raise(a, why);
    }
    if let Some((a, base)) = action_from_description(description) {
        judged.raise(a, format!("the description says \"{base}\""));
    }
    let text = phrase_text(description);
    if let Some((a, phrase)) = risk_phrases(&text) {
        judged.raise(a, format!("the description says \"{phrase}\""));
    }
    // A write that moves money is more than a write.
    if judged.action == Some(Action::Write) {
        if let Some((arg, _)) = args.iter().find(|(_, k)| *k == ArgKind::Amount) {
            judged.raise(Action::Irreversible, format!("it moves money (argument `{arg}`)"));
        } else if let Some(p) = says(&text, MONEY_WORDS) {
            judged.raise(Action::Irreversible, format!("it moves money (the description says \"{p}\")"));
        }
    }
    (judged, verb_at)
}

/// Whether it only reads: from its verb, or from the server's readOnlyHint
/// when no verb says. A hint that contradicts the verb is pointed out; it
/// never makes a sending or deleting tool a read.
fn read_only(tool: &Tool, judged: &Judgement, review: &mut Vec<String>) -> bool {
    let hint = tool.annotations.as_ref().and_then(|a| a.read_only_hint);
    match (judged.action, hint) {
        (None, Some(true)) => {
            review.push("no verb in its name or description says what it does; low only because the server says it is read-only (readOnlyHint)".into());
            true
        }
        (Some(a), Some(true)) if a > Action::Read => {
            let why = judged.why.first().map_or("its words say otherwise", String::as_str);
            review.push(format!("the server says it is read-only (readOnlyHint), but {why}; proposed from its words"));
            false
        }
        (Some(Action::Read), Some(false)) => {
            review.push("the server says it is not read-only (readOnlyHint = false), though its name reads; check that it changes nothing".into());
            true
        }
        (a, _) => a == Some(Action::Read),
    }
}

/// The risk: the action's, raised by a secret or admin in the name, by the
/// server's destructiveHint, and to medium for a read of private content.
fn judge_risk(tool: &Tool, name_words: &[String], judged: &mut Judgement, read_only: bool, content: Option<&Content>, review: &mut Vec<String>) -> Risk {
    let mut risk = judged.action.map(Action::risk);
    if let Some(noun) = name_words.iter().find(|w| among(w, DANGER_NOUNS))
        && risk.is_none_or(|r| r < Risk::Critical)
    {
        judged.why.push(format!("the name mentions \"{noun}\""));
        risk = Some(Risk::Critical);
    }
    if tool.annotations.as_ref().and_then(|a| a.destructive_hint) == Some(true) && risk.is_none_or(|r| r < Risk::High) {
        judged.why.push("the server's destructiveHint says it may destroy data".into());
        risk = Some(Risk::High);
    }
    let risk = match risk {
        Some(r) => r,
        None if read_only => {
            judged.why.push("the server's readOnlyHint".into());
            Risk::Low
        }
        None => {
            review.push("no verb in its name or description says what it does: high until someone reads what it does".into());
            judged.why.push("nothing says what it does".into());
            Risk::High
        }
    };
    match content {
        Some(c) if read_only && risk == Risk::Low && c.private => {
            judged.why.push(format!("what it reads is private ({})", c.what));
            Risk::Medium
        }
        _ => risk,
    }
}

/// Whose words a reading tool returns: why it is untrusted (None: not), and
/// what kind of content it is when the words say.
fn judge_output(object: &[String], description: &str, review: &mut Vec<String>) -> (Option<String>, Option<&'static Content>) {
    match output_origin(object, description) {
        Origin::Others { content, why } => (Some(why), content),
        Origin::Own { why } => {
            if why.contains(": proposed as the server's own records") {
                review.push(format!("untrusted_output = false: {why}"));
            }
            (None, None)
        }
        Origin::Unknown => {
            review.push("untrusted_output = false only because nothing in its name or description says who writes what it returns".into());
            (None, None)
        }
    }
}

/// Which arguments choose where data or money goes, and why it is a sink
/// (None: not). A read sends nothing to the channel or user it reads; only a
/// network address takes data out of a read.
fn judge_arguments(
    tool: &Tool,
    args: &[(String, ArgKind)],
    judged: &Judgement,
    read_only: bool,
    object: &[String],
    review: &mut Vec<String>,
) -> (Vec<(String, ArgKind)>, Option<String>) {
    let sends = judged.action == Some(Action::Send);
    let writes = !read_only && !sends && judged.action != Some(Action::Destroy);
    let mut sensitive: Vec<(String, ArgKind)> = args
        .iter()
        .filter(|(_, kind)| match kind {
            ArgKind::Network | ArgKind::Object => true,
            ArgKind::Destination | ArgKind::Place | ArgKind::Amount => !read_only,
            ArgKind::Path => !read_only && !sends,
        })
        .cloned()
        .collect();
    let sink_because = if let Some(why) = judged.sends_because.as_ref().filter(|_| sends) {
        Some(why.clone())
    } else if let Some((arg, _)) = sensitive.iter().find(|(_, k)| *k == ArgKind::Network) {
        Some(format!("its argument `{arg}` is a network address: the address itself carries data out"))
    } else if writes && let Some((arg, k)) = sensitive.iter().find(|(_, k)| matches!(k, ArgKind::Destination | ArgKind::Amount)) {
        Some(format!("its argument `{arg}` chooses {}", if *k == ArgKind::Amount { "an amount to pay" } else { "who receives what it writes" }))
    } else {
        None
    };
    // A send whose destination no argument is named after: what it books or
    // goes to is the argument named after the name's object, or else the
    // first required string.
    if sends && !sensitive.iter().any(|(_, k)| matches!(k, ArgKind::Destination | ArgKind::Place | ArgKind::Network)) {
        let properties = tool.input_schema.get("properties").and_then(Value::as_object);
        let named = properties.and_then(|p| p.keys().find(|k| words(k).iter().any(|w| object.iter().any(|o| is_noun(o, w) || is_noun(w, o)))));
        let required = tool.input_schema.get("required").and_then(Value::as_array);
        let first_string = required.and_then(|r| {
            r.iter().filter_map(Value::as_str).find(|k| properties.and_then(|p| p.get(*k)).and_then(|s| s.get("type")).and_then(Value::as_str) == Some("string"))
        });
        match (named, first_string) {
            (Some(k), _) => sensitive.push((k.clone(), ArgKind::Object)),
            (None, Some(k)) => {
                review.push(format!("no argument names a destination; `{k}`, its first required argument, is proposed as what the call goes to"));
                sensitive.push((k.to_owned(), ArgKind::Object));
            }
            (None, None) => review.push("it sends, but no argument names where to: check what decides the destination".into()),
        }
    }
    (sensitive, sink_because)
}

/// A tool that lists a directory's entries (`list_channels`,
/// `list_users_in_channel`): the noun it lists, if so.
fn listing_of<'a>(name_words: &[String], object: &'a [String]) -> Option<&'a str> {
    let lists = name_words.first().is_some_and(|w| matches!(w.as_str(), "list" | "ls" | "enumerate" | "browse"));
    object.last().filter(|w| lists && among(w, DIRECTORY_NOUNS)).map(String::as_str)
}

/// A key that names a directory entry.
fn name_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    matches!(lower.as_str(), "name" | "username" | "handle" | "display_name" | "title") || lower.ends_with("_name")
}

/// Which keys of an untrusted output the system fills, not the writer: from
/// the outputSchema when there is one, otherwise typical ones, to review.
/// A web page has none: all of its text is the page's. A directory listing's
/// ids and names are the directory's own entries (issue 24): proposed
/// trusted, since jitgate still counts a name that is longer than a few
/// words or holds a link as third-party text.
fn judge_trusted_fields(tool: &Tool, content: Option<&Content>, listed: Option<&str>, review: &mut Vec<String>) -> (Vec<String>, Vec<String>, Option<String>) {
    if let Some(noun) = listed {
        let listing_why = format!(
            "it lists {noun}: their ids and names are the directory's own entries, not text someone wrote to the agent (a name longer than four words, or one holding a link, still counts as third-party)"
        );
        return match &tool.output_schema {
            Some(schema) => {
                let mut keys = Vec::new();
                schema_keys(&Value::Object((**schema).clone()), &mut keys);
                let trusted: Vec<String> = keys.into_iter().filter(|k| system_key(k, content) || name_key(k)).collect();
                (trusted, vec![], Some(listing_why))
            }
            None => {
                review.push("trusted_fields: the tool declares no outputSchema; check that its results are JSON records with these keys (trusted_fields work only there)".into());
                (vec!["id".into(), "name".into()], vec![], Some(listing_why))
            }
        };
    }
    if content.is_some_and(|c| c.typical_keys.is_empty()) {
        return (vec![], vec![], None);
    }
    match &tool.output_schema {
        Some(schema) => {
            let mut keys = Vec::new();
            schema_keys(&Value::Object((**schema).clone()), &mut keys);
            let trusted: Vec<String> = keys.into_iter().filter(|k| system_key(k, content)).collect();
            let why = if trusted.is_empty() {
                "none of its outputSchema's keys is one the system fills"
            } else {
                "the keys of its outputSchema that the system fills (ids, dates, amounts, recorded senders), not the writer"
            };
            (trusted, vec![], Some(why.into()))
        }
        None => {
            let typical = content.map_or(vec!["id".to_owned(), "date".to_owned()], |c| c.typical_keys.iter().map(|k| (*k).to_owned()).collect());
            review.push("trusted_fields: the tool declares no outputSchema; uncomment the keys below that its results have and the system (not the writer) fills".into());
            (vec![], typical, None)
        }
    }
}

#[cfg(test)]
mod tests;
