//! The ledger a request is judged on, and its verdicts.

#[allow(unused_imports)]
use super::*;

/// The taint verdict for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaintVerdict {
    pub tainted: bool,
    /// Source calls, once each.
    pub sources: Vec<Source>,
    /// Which sensitive argument carried which value (for logs and the agent).
    pub findings: Vec<(String, String)>,
    /// Sensitive arguments admitted by a constraint whose values cannot be
    /// compared with the ledger (prefix, range, schema), counted as tainted.
    pub unverifiable: Vec<String>,
    /// Each value found, with the reads that held it ([`Source::origin`]),
    /// for the end user's question.
    pub origins: Vec<(String, Vec<String>)>,
}

impl TaintVerdict {
    /// Add another verdict's findings, sources and origins, once each (its
    /// `tainted` is the caller's to weigh).
    pub fn absorb(&mut self, other: TaintVerdict) {
        for f in other.findings {
            if !self.findings.contains(&f) {
                self.findings.push(f);
            }
        }
        for s in other.sources {
            if !self.sources.contains(&s) {
                self.sources.push(s);
            }
        }
        for (value, reads) in other.origins {
            self.add_reads(&value, reads);
        }
    }

    /// The reads that held `value`, each once.
    pub(in crate::taint) fn add_reads(&mut self, value: &str, reads: Vec<String>) {
        match self.origins.iter_mut().find(|(v, _)| v == value) {
            Some((_, known)) => {
                for read in reads {
                    if !known.contains(&read) {
                        known.push(read);
                    }
                }
            }
            None => self.origins.push((value.to_owned(), reads)),
        }
    }

    pub(in crate::taint) fn found(&mut self, name: &str, value: &str, source: &Source) {
        self.tainted = true;
        if !self.findings.iter().any(|(n, v)| n == name && v == value) {
            self.findings.push((name.to_owned(), value.to_owned()));
        }
        let reads: Vec<String> = if source.origin.trim().is_empty() {
            vec![format!("what {} returned", source.tool)]
        } else {
            source.origins().map(str::to_owned).collect()
        };
        self.add_reads(value, reads);
        if !self.sources.contains(source) {
            self.sources.push(source.clone());
        }
    }
}

/// One agent's tainted values, as loaded from the store.
#[derive(Debug, Default, Clone)]
pub struct TaintLedger {
    pub(in crate::taint) values: HashMap<String, Source>,
    /// Third-party text, normalized (see the module documentation).
    pub(in crate::taint) passages: Vec<(String, Source)>,
    /// The tools whose untrusted output the agent read, once each (all of
    /// them, whatever a lookup found).
    pub(in crate::taint) tools: Vec<String>,
    pub(in crate::taint) overflowed: bool,
}

impl TaintLedger {
    /// The ledger from the store's entries: values, and passages (the
    /// entries that begin with a space).
    pub fn new(entries: HashMap<String, Source>, overflowed: bool) -> Self {
        let mut tools: Vec<String> = entries.values().map(|s| s.tool.clone()).collect();
        tools.sort();
        tools.dedup();
        Self::from_lookup(entries, tools, overflowed)
    }

    /// The part of an agent's ledger a [`TaintProbe`] found, with the tools
    /// whose untrusted output the agent read and the overflow mark.
    pub fn from_lookup(entries: HashMap<String, Source>, tools: Vec<String>, overflowed: bool) -> Self {
        let (passages, values): (HashMap<String, Source>, HashMap<String, Source>) = entries.into_iter().partition(|(k, _)| k.starts_with(' '));
        let mut passages: Vec<(String, Source)> = passages.into_iter().collect();
        passages.sort_by(|a, b| a.1.call.cmp(&b.1.call));
        Self { values, passages, tools, overflowed }
    }

    /// Add what another ledger holds (a delegating agent's, for a delegated
    /// task's request): its values, passages, the tools read and overflow.
    pub fn merge(&mut self, other: TaintLedger) {
        for (value, source) in other.values {
            self.values.entry(value).or_insert(source);
        }
        for passage in other.passages {
            if !self.passages.iter().any(|(p, s)| *p == passage.0 && s.call == passage.1.call) {
                self.passages.push(passage);
            }
        }
        for tool in other.tools {
            if !self.tools.contains(&tool) {
                self.tools.push(tool);
            }
        }
        self.tools.sort();
        self.overflowed |= other.overflowed;
    }

    /// How many passages this ledger holds (a lookup: the candidates found).
    pub fn passages_held(&self) -> usize {
        self.passages.len()
    }

    /// Has the agent read anything untrusted (that is still remembered)?
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.passages.is_empty() && self.tools.is_empty() && !self.overflowed
    }

    /// Does a sensitive argument of this request carry, or admit, a tainted
    /// value? `open_ok` lists the sensitive arguments the manifest allows
    /// open constraints for (`open_sensitive_args`). Every string, number
    /// and key inside an argument (a list of names, an object) is judged on
    /// its own.
    pub fn check(&self, sensitive_args: &[String], open_ok: &[String], constraints: &ArgConstraints) -> TaintVerdict {
        let mut verdict = TaintVerdict::default();
        if self.is_empty() {
            return verdict;
        }
        for name in sensitive_args {
            let Some(c) = constraints.get(name) else { continue };
            if !is_checkable(c) {
                if !open_ok.contains(name) {
                    verdict.tainted = true;
                    verdict.unverifiable.push(name.clone());
                    verdict.findings.push((name.clone(), format!("({} constraint: its values cannot be checked)", c.kind())));
                }
                continue;
            }
            for leaf in constraint_leaves(c) {
                if self.overflowed {
                    verdict.tainted = true;
                    verdict.findings.push((name.clone(), leaf.text().into_owned()));
                    continue;
                }
                for (value, source) in self.matches(&leaf) {
                    verdict.found(name, &value, source);
                }
            }
        }
        verdict.sources.sort_by(|a, b| a.call.cmp(&b.call));
        verdict
    }

    /// The ledger's values and passages that one leaf of an argument
    /// carries, each with its source.
    pub(in crate::taint) fn matches(&self, leaf: &Leaf) -> Vec<(String, &Source)> {
        let mut out = Vec::new();
        // An amount is compared by value, however either side wrote it.
        for key in leaf.numbers() {
            if let Some(source) = self.values.get(&key) {
                out.push((key.trim_start_matches(NUMBER_KEY).to_owned(), source));
            }
        }
        if !out.is_empty() {
            return out;
        }
        let text = leaf.text();
        let text = text.as_ref();
        let lower = normalize(text);
        // An account number compared without its grouping.
        let packed = (digits(&lower) >= 6).then(|| compact(&lower));
        for (value, source) in self.values.iter().filter(|(v, _)| !v.starts_with(NUMBER_KEY)) {
            let plain = lower.contains(value.as_str()) || (lower.len() >= MIN_VALUE_LEN && value.contains(lower.as_str()));
            let grouped = packed.as_deref().is_some_and(|p| {
                let v = compact(value);
                digits(&v) >= 6 && (p.contains(v.as_str()) || v.contains(p))
            });
            if plain || grouped {
                out.push((value.clone(), source));
            }
        }
        if !out.is_empty() {
            // An address is reported as the address, not as its words, and
            // an account number as itself, not also as the runs of digits
            // or the unseparated form stored beside it.
            let packed: Vec<String> = out.iter().map(|(v, _)| compact(v)).collect();
            let shown_once = |i: usize| {
                let mine = &packed[i];
                let inside_another = packed.iter().any(|other| other != mine && other.contains(mine.as_str()));
                !inside_another && packed.iter().position(|p| p == mine) == Some(i)
            };
            return out.into_iter().enumerate().filter(|(i, _)| shown_once(*i)).map(|(_, m)| m).collect();
        }
        // The argument's own addresses, hosts, domains and identifiers,
        // looked up word for word in the passages: found there even when a
        // flooded result kept no values ("q3-report@exfil.attacker.test"
        // after a page that named exfil.attacker.test among 300 junk ids).
        for value in extract_values(text).into_iter().filter(|v| !v.starts_with(NUMBER_KEY)) {
            for phrase in lookup_phrases(&value) {
                out.extend(self.passages_with(&phrase).into_iter().map(|s| (value.clone(), s)));
            }
        }
        if !out.is_empty() {
            return out;
        }
        // A short argument as a name, word for word (each name of a list
        // written as text on its own).
        for phrase in name_phrases(text) {
            out.extend(self.passages_with(&phrase).into_iter().map(|s| (phrase.trim().to_owned(), s)));
        }
        out
    }

    /// The sources of the passages that hold `phrase` (` w1 w2 `).
    pub(in crate::taint) fn passages_with(&self, phrase: &str) -> Vec<&Source> {
        self.passages.iter().filter(|(p, _)| p.contains(phrase)).map(|(_, s)| s).collect()
    }

    /// Does a longer string in one of `args` repeat third-party text word for
    /// word ([`TAKEN_OVER_WORDS`] in a row)? Each run found is a finding.
    pub fn check_taken_over(&self, args: &[String], constraints: &ArgConstraints) -> TaintVerdict {
        let mut verdict = TaintVerdict::default();
        for name in args {
            let Some(c) = constraints.get(name) else { continue };
            for leaf in constraint_leaves(c) {
                for window in taken_over_windows(&leaf.text()) {
                    for source in self.passages_with(&window) {
                        verdict.found(name, window.trim(), source);
                    }
                }
            }
        }
        verdict.sources.sort_by(|a, b| a.call.cmp(&b.call));
        verdict
    }

    /// The tools whose untrusted output the agent read within the taint
    /// horizon, once each (for the chain check: an untrusted read earlier in
    /// the work counts when a sink follows, not only the last call).
    pub fn untrusted_tools(&self) -> Vec<String> {
        self.tools.clone()
    }

    /// At call time: do the values that really reach the tool carry a
    /// tainted value in a sensitive argument the token admitted by an open
    /// constraint? (Exact values were judged when the token was granted.)
    pub fn check_call(&self, sensitive_args: &[String], granted: &ArgConstraints, arguments: &serde_json::Map<String, Value>) -> TaintVerdict {
        self.check(sensitive_args, &[], &reached_at_call(sensitive_args, granted, arguments))
    }
}

/// The destinations written inside an outward message's other arguments
/// (issue 24): the URLs, addresses, account and phone numbers in the text
/// of every argument of a sink that is not a sensitive one (a link in a
/// message's body), each argument's as a `one_of` of those values, so that
/// the ledger judges them like a sensitive argument's. Names and other
/// words of free text are not looked up here: a body may quote what it
/// answers.
pub fn destinations_in_text(sensitive_args: &[String], constraints: &ArgConstraints) -> ArgConstraints {
    constraints
        .iter()
        .filter(|(name, _)| !sensitive_args.contains(name))
        .filter_map(|(name, c)| {
            let mut found: Vec<Value> = Vec::new();
            for leaf in constraint_leaves(c) {
                let (destinations, others) = extract(&without_dates(&leaf.text()));
                for d in destinations.into_iter().chain(others).filter(|d| is_destination(d)) {
                    let d = Value::String(d);
                    if !found.contains(&d) {
                        found.push(d);
                    }
                }
            }
            (!found.is_empty()).then(|| (name.clone(), Constraint::OneOf(found)))
        })
        .collect()
}

/// At call time, the destinations in the text of a sink's other arguments
/// that the token admitted by an open constraint (their values were not
/// known when it was granted), as [`destinations_in_text`] gives them.
pub fn open_text_at_call(sensitive_args: &[String], granted: &ArgConstraints, arguments: &serde_json::Map<String, Value>) -> ArgConstraints {
    let reached: ArgConstraints = granted
        .iter()
        .filter(|(name, c)| !sensitive_args.contains(name) && !is_checkable(c))
        .filter_map(|(name, _)| arguments.get(name).map(|v| (name.clone(), Constraint::Eq(v.clone()))))
        .collect();
    destinations_in_text(sensitive_args, &reached)
}

/// The values of sensitive arguments that a token admitted by an open
/// constraint, as they really reach the tool.
pub fn reached_at_call(sensitive_args: &[String], granted: &ArgConstraints, arguments: &serde_json::Map<String, Value>) -> ArgConstraints {
    sensitive_args
        .iter()
        .filter(|name| granted.get(*name).is_some_and(|c| !is_checkable(c)))
        .filter_map(|name| arguments.get(name).map(|v| (name.clone(), Constraint::Eq(v.clone()))))
        .collect()
}

/// Can the values a constraint admits be compared with the ledger?
pub(in crate::taint) fn is_checkable(c: &Constraint) -> bool {
    matches!(c, Constraint::Eq(_) | Constraint::OneOf(_))
}

/// One scalar a constraint lets through: a string, or a number.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::taint) enum Leaf {
    Text(String),
    Number(serde_json::Number),
}

impl Leaf {
    pub(in crate::taint) fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Leaf::Text(t) => std::borrow::Cow::Borrowed(t),
            Leaf::Number(n) => std::borrow::Cow::Owned(n.to_string()),
        }
    }

    /// The ledger keys of the number this leaf is, or the numbers a short
    /// text that reads as one could be ("1,250.00", "140").
    pub(in crate::taint) fn numbers(&self) -> Vec<String> {
        match self {
            Leaf::Number(n) => json_number_key(n).into_iter().collect(),
            Leaf::Text(t) if t.len() <= 40 => {
                let normal = normalize(t);
                let amount = without_currency(&normal);
                if amount.starts_with(|c: char| c.is_ascii_digit()) && amount.chars().all(|c| c.is_ascii_digit() || is_number_separator(c)) {
                    number_keys(amount)
                } else {
                    Vec::new()
                }
            }
            Leaf::Text(_) => Vec::new(),
        }
    }
}

/// Every scalar a constraint lets through, at any depth: the strings,
/// numbers and object keys of each admitted value, each on its own (a name
/// in a list is a name).
pub(in crate::taint) fn constraint_leaves(c: &Constraint) -> Vec<Leaf> {
    pub(in crate::taint) fn walk(v: &Value, out: &mut Vec<Leaf>) {
        match v {
            Value::String(s) => out.push(Leaf::Text(s.clone())),
            Value::Number(n) => out.push(Leaf::Number(n.clone())),
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Object(map) => {
                for (k, v) in map {
                    out.push(Leaf::Text(k.clone()));
                    walk(v, out);
                }
            }
            Value::Bool(_) | Value::Null => {}
        }
    }
    let mut out = Vec::new();
    match c {
        Constraint::Eq(v) => walk(v, &mut out),
        Constraint::OneOf(vs) => vs.iter().for_each(|v| walk(v, &mut out)),
        Constraint::Prefix(_) | Constraint::Schema(_) | Constraint::Range { .. } => {}
    }
    out
}
