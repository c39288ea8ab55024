//! Taint tracking, without trusting the agent.
//!
//! jitgate sees every tool result. For tools whose output the manifest marks
//! untrusted (mail, web pages), it keeps the values in that output
//! that could steer an action: e-mail addresses, URLs and their hosts, file
//! names and paths, long identifiers and account numbers. The ledger is kept
//! per agent (for the longest task lifetime), so an attack spread over
//! several tasks is still traced. When a later request of the agent puts
//! such a value into a sensitive argument of a
//! tool (manifest `sensitive_args`), the request is tainted, and the call
//! that produced the value is named, whether or not the agent said `follows`.
//!
//! Values under a manifest's `trusted_fields` (JSON keys the server vouches
//! for, like a message's `from`) are not recorded. An agent whose ledger is
//! full has every sensitive argument counted as tainted (fail closed).
//!
//! A request can only be judged on the values it admits. An exact value or a
//! list of them is compared with the ledger; a sensitive argument admitted
//! by a prefix, a range or a schema cannot be, so once the agent has read
//! untrusted content it counts as tainted (fail closed), unless the manifest
//! lists it in `open_sensitive_args`. Either way, the values that really
//! reach the tool under such a constraint are checked again at call time
//! ([`TaintLedger::check_call`]).
//!
//! Values are e-mail addresses (and their domains), URLs (and their hosts),
//! paths and file names, identifiers; they are taken from every part of an
//! untrusted result: text, embedded resources, resource links, structured
//! content and `_meta`. They are matched anywhere inside a sensitive
//! argument (an address inside a message body counts).
//!
//! Names are not identifiers: "Alice", "Riverside View Hotel" or a channel
//! called "External_0" look like any other words, so no extractor can pick
//! them out of free text. What can be decided soundly is the reverse: does a
//! short sensitive argument (up to [`MAX_PHRASE_WORDS`] words) occur, word
//! for word, in third-party text the agent has read? For that the ledger
//! also keeps the untrusted text itself, as *passages*: lowercased words
//! (letters and digits) separated by single spaces, with a ` | ` between
//! fields so that no phrase spans two of them. A passage is stored like a
//! value but begins with a space, which no extracted value can. A sensitive
//! argument whose words appear in a passage is tainted, whatever the case or
//! punctuation ("alice", "Alice!", "riverside-view hotel"). Longer free text
//! (a message body) is judged by the values inside it, not as a phrase. What
//! taint cannot see, a value the model rewrites (spelled backwards, split,
//! translated) or one that was never written down (a "hotel with a river
//! view"), is left to the plan, the baseline and the end user's confirmation.
//!
//! The ledger lives in the store ([`crate::store::Store::record_taint`]), so
//! a restart or another gateway process sees what the agent has read; this
//! module extracts the values and judges a request against the agent's
//! ledger as loaded from the store.

use std::collections::HashMap;

use rmcp::model::CallToolResult;
use serde_json::Value;

use crate::constraints::{ArgConstraints, Constraint};

mod ledger;
mod probe;
mod scan;
mod text;

#[allow(unused_imports)]
pub use self::{ledger::*, probe::*, scan::*, text::*};

/// Values kept per agent before the ledger fails closed.
pub const MAX_VALUES_PER_AGENT: usize = 4096;

/// File names, paths and short identifiers kept from one result. A result
/// with more (a page stuffed with junk references) keeps none of them: its
/// passages still hold them word for word, and the values a request carries
/// are looked up there too, so nothing the attacker floods is forgotten.
/// Destinations and amounts (URLs, hosts in them, addresses and their
/// domains, account-like numbers, amounts) are always kept: a flood decides
/// nothing about them (past the agent's cap, the ledger fails closed).
pub const MAX_VALUES_PER_RESULT: usize = 256;

/// Ledger keys of amounts and other numbers begin with this (no extracted
/// value or passage can: both are text that begins with a printable
/// character or a space).
const NUMBER_KEY: &str = "\u{1}n:";

/// Shortest value kept: shorter ones match too much to mean anything.
const MIN_VALUE_LEN: usize = 5;

/// Longest sensitive argument, in words, that is looked up as a phrase in
/// the passages; a longer one is free text, judged by the values in it.
pub const MAX_PHRASE_WORDS: usize = 8;

/// Shortest phrase looked up, in letters and digits ("Bob" is a name; "7" is not).
const MIN_PHRASE_CHARS: usize = 3;

/// Where a tainted value came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    /// The token id (jti) of the call whose output held the value.
    pub call: String,
    pub tool: String,
    /// What the agent read, in words its end user knows: the tool and the
    /// arguments it was called with (the file, the page's address, the
    /// channel), and the record of the result (a message's sender), one
    /// line per read that held the value (see [`call_origin`]). Empty for
    /// entries recorded before origins were kept.
    pub origin: String,
}

/// Most reads an entry's origin names; a value found again after that keeps
/// the reads it has (the first ones).
pub const MAX_ORIGINS: usize = 4;

impl Source {
    /// Each read that held the value, once.
    pub fn origins(&self) -> impl Iterator<Item = &str> {
        self.origin.lines().filter(|l| !l.trim().is_empty())
    }
}

/// One ledger entry of an untrusted result: a value or passage, and the
/// record of the result it came from (the record's trusted fields, as
/// [`record_label`] writes them; empty outside any record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaintEntry {
    pub value: String,
    pub record: String,
}

impl TaintEntry {
    /// Entries that belong to no record (tests, fuzzing, benches).
    pub fn plain(values: Vec<String>) -> Vec<TaintEntry> {
        values.into_iter().map(|value| TaintEntry { value, record: String::new() }).collect()
    }

    /// The origin the store records for this entry of a read described by
    /// `source` ([`call_origin`]): the read, and the entry's record in it.
    pub fn origin(&self, source: &Source) -> String {
        match (source.origin.is_empty(), self.record.is_empty()) {
            (_, true) => source.origin.clone(),
            (true, false) => self.record.clone(),
            (false, false) => format!("{}, in {}", source.origin, self.record),
        }
    }
}

/// Longest argument value an origin quotes.
const ORIGIN_VALUE_CHARS: usize = 120;

/// Most arguments an origin names.
const ORIGIN_ARGS: usize = 4;

/// A scalar as an origin quotes it: JSON (quotes, escapes), cut short with
/// the cut said (a host hidden past the cut would otherwise not show).
fn origin_scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.chars().count() > ORIGIN_VALUE_CHARS => {
            let shown: String = s.chars().take(ORIGIN_VALUE_CHARS).collect();
            Some(format!("{}(+{} more characters)", serde_json::to_string(&shown).ok()?, s.chars().count() - ORIGIN_VALUE_CHARS))
        }
        Value::String(s) => serde_json::to_string(s).ok(),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A read in words its end user knows: `what chat__read_channel_messages
/// returned for channel "general"` (the tool and its scalar arguments, in
/// the order the agent sent them, each quoted as JSON so that no argument
/// writes a line or a name of its own).
pub fn call_origin(tool: &str, arguments: &serde_json::Map<String, Value>) -> String {
    let args: Vec<String> = arguments.iter().filter_map(|(k, v)| Some(format!("{} {}", origin_key(k), origin_scalar(v)?))).take(ORIGIN_ARGS).collect();
    if args.is_empty() { format!("what {tool} returned") } else { format!("what {tool} returned for {}", args.join(", ")) }
}

/// An argument's name as an origin writes it: as it is when it is a plain
/// name, JSON-quoted otherwise (a name with a newline or a quote writes no
/// read of its own).
fn origin_key(key: &str) -> String {
    let plain = !key.is_empty() && key.len() <= 64 && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain { key.to_owned() } else { serde_json::to_string(key).unwrap_or_default() }
}

/// Account numbers written in groups (`NL91 ABNA 0417 1643 00`,
/// `GB98-MIDL-0700-...`): runs of short groups separated by spaces or
/// hyphens, starting with a group that holds a digit, in which a group of
/// letters only is a four-letter bank code; joined when they hold at least
/// six digits. Other punctuation, a longer word or a line ends a run, so
/// that an amount, a date or a word of the surrounding text ("Apple") is
/// never glued to an account number.
fn grouped_numbers(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.split(['\n', '\r']) {
        let mut run: Vec<&str> = Vec::new();
        let mut flush = |run: &mut Vec<&str>| {
            out.extend(account_numbers_in(run));
            run.clear();
        };
        let mut rest = line;
        while !rest.is_empty() {
            let end = rest.find(|c: char| !c.is_alphanumeric()).unwrap_or(rest.len());
            let word = &rest[..end];
            let joins = word.chars().count() <= 6
                && (word.chars().any(|c| c.is_ascii_digit()) || (!run.is_empty() && word.chars().count() == 4 && word.chars().all(char::is_alphabetic)));
            if !word.is_empty() {
                if joins {
                    run.push(word);
                } else {
                    flush(&mut run);
                }
            }
            let Some(sep) = rest[end..].chars().next() else { break };
            if !(sep == ' ' || sep == '-') {
                flush(&mut run);
            }
            rest = &rest[end + sep.len_utf8()..];
        }
        flush(&mut run);
    }
    out
}

/// The longest account number (an IBAN has at most 34 characters).
const MAX_ACCOUNT_CHARS: usize = 34;

/// A run of groups joined, if it can be one account number; a longer run
/// (a list of codes) holds the IBANs that start inside it (two letters and
/// two digits), each as long as an IBAN can be.
fn account_numbers_in(run: &[&str]) -> Vec<String> {
    let joined: String = run.concat();
    if run.len() < 2 || digits(&joined) < 6 {
        return Vec::new();
    }
    if joined.chars().count() <= MAX_ACCOUNT_CHARS {
        return vec![joined];
    }
    let iban_start = |w: &str| {
        let c: Vec<char> = w.chars().collect();
        c.len() == 4 && c[..2].iter().all(|c| c.is_ascii_lowercase()) && c[2..].iter().all(char::is_ascii_digit)
    };
    let mut out = Vec::new();
    for (i, _) in run.iter().enumerate().filter(|(_, w)| iban_start(w)) {
        let mut iban = String::new();
        for w in &run[i..] {
            if iban.chars().count() + w.chars().count() > MAX_ACCOUNT_CHARS {
                break;
            }
            iban.push_str(w);
        }
        if digits(&iban) >= 6 && iban.len() > 4 {
            out.push(iban);
        }
    }
    out
}

fn is_email(t: &str) -> bool {
    t.split_once('@').is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.') && !domain.starts_with('.'))
}

fn is_path_or_file(t: &str) -> bool {
    if t.contains('/') && t.chars().any(|c| c.is_ascii_alphanumeric()) {
        return true;
    }
    // A name with a short extension: notes.md, report.pdf, example.org.
    t.rsplit_once('.').is_some_and(|(stem, ext)| {
        !stem.is_empty() && (1..=5).contains(&ext.len()) && ext.chars().all(|c| c.is_ascii_alphanumeric()) && ext.chars().any(|c| c.is_ascii_alphabetic())
    })
}

/// Account numbers and long identifiers: at least 6 digits, or letters and
/// digits mixed with separators (ACME-4471-9920).
fn is_identifier(t: &str) -> bool {
    let digits = t.chars().filter(char::is_ascii_digit).count();
    let letters = t.chars().filter(|c| c.is_alphabetic()).count();
    digits >= 6 || (digits >= 3 && letters >= 2 && t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
}

#[cfg(test)]
mod tests;
