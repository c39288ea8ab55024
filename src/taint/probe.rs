//! What a request can match in the ledger: its values, their pieces and phrases, looked up by index.

#[allow(unused_imports)]
use super::*;

/// What one request looks up in its agent's ledger: the exact keys its
/// sensitive values could match (the whole text, the addresses, hosts and
/// their parent domains, identifiers, account numbers without grouping and
/// amounts it holds) and the phrases (` w1 w2 `) to find in the stored
/// passages. The store answers with the entries that match (an index
/// lookup, not a load of everything the agent has read), and
/// [`TaintLedger::check`] judges those exactly as it would judge the whole
/// ledger: a value or passage that is not a candidate cannot match.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TaintProbe {
    pub keys: Vec<String>,
    pub phrases: Vec<String>,
}

impl TaintProbe {
    /// The probe for a request's sensitive arguments: every leaf of every
    /// value a checkable constraint admits. Open constraints need nothing
    /// looked up at request time (they count as tainted whenever the agent
    /// has read anything; their values are checked at call time).
    pub fn of(sensitive_args: &[String], constraints: &ArgConstraints) -> Self {
        let mut probe = Self::default();
        for c in sensitive_args.iter().filter_map(|name| constraints.get(name)) {
            for leaf in constraint_leaves(c) {
                probe.add_leaf(&leaf);
            }
        }
        probe.keys.sort();
        probe.keys.dedup();
        probe.phrases.sort();
        probe.phrases.dedup();
        probe
    }

    /// The probe for text taken over into other arguments: the runs of
    /// words of each longer string ([`taken_over_windows`]).
    pub fn windows(args: &[String], constraints: &ArgConstraints) -> Self {
        let mut probe = Self::default();
        for c in args.iter().filter_map(|name| constraints.get(name)) {
            for leaf in constraint_leaves(c) {
                probe.phrases.extend(taken_over_windows(&leaf.text()));
            }
        }
        probe.phrases.sort();
        probe.phrases.dedup();
        probe
    }

    /// This probe and another's, for one lookup.
    pub fn and(mut self, other: TaintProbe) -> Self {
        self.keys.extend(other.keys);
        self.phrases.extend(other.phrases);
        self.keys.sort();
        self.keys.dedup();
        self.phrases.sort();
        self.phrases.dedup();
        self
    }

    /// Add free text to look up (a break-glass justification).
    pub fn with_text(mut self, text: &str) -> Self {
        self.add_leaf(&Leaf::Text(text.to_owned()));
        self
    }

    pub(in crate::taint) fn add_leaf(&mut self, leaf: &Leaf) {
        self.keys.extend(leaf.numbers());
        let text = leaf.text();
        let lower = normalize(&text);
        let (destinations, others) = extract(&text);
        for value in destinations.iter().chain(&others).filter(|v| !v.starts_with(NUMBER_KEY)) {
            // A stored value may sit inside this one (a page's
            // `site.test/?q=` in `site.test/?q=secret`, `acme-4471-9920` in
            // `acme-4471-99201`): every piece between two punctuation marks,
            // every prefix and suffix, and every run of six digits or more
            // inside its digits, is a key too.
            self.keys.extend(pieces(value));
            self.keys.extend(prefixes_and_suffixes(value));
            if digits(value) >= 6 {
                self.keys.push(compact(value));
            }
            self.keys.extend(digit_runs_within(value));
            self.keys.extend(parent_domains(value));
            self.phrases.extend(lookup_phrases(value));
        }
        if digits(&lower) >= 6 {
            self.keys.push(compact(&lower));
            self.keys.extend(digit_runs_within(&compact(&lower)));
        }
        self.keys.push(lower.trim().to_owned());
        self.phrases.extend(name_phrases(&text));
    }
}

/// Words in a row that show a longer text was taken over from third-party
/// text (an event title of nine words copied from a review): shorter text
/// is looked up whole, as a phrase.
pub(in crate::taint) const TAKEN_OVER_WORDS: usize = 5;

/// Most runs of words looked up for one string (spread over all of it).
pub(in crate::taint) const MAX_WINDOWS: usize = 64;

/// The runs of [`TAKEN_OVER_WORDS`] words of a string longer than a phrase
/// ([`MAX_PHRASE_WORDS`]), as passages hold them (` w1 w2 w3 w4 w5 `), at
/// most [`MAX_WINDOWS`] of them, spread evenly.
pub fn taken_over_windows(text: &str) -> Vec<String> {
    let ws: Vec<String> = words(text).collect();
    if ws.len() <= MAX_PHRASE_WORDS {
        return Vec::new();
    }
    let starts = ws.len() - TAKEN_OVER_WORDS + 1;
    let step = starts.div_ceil(MAX_WINDOWS).max(1);
    (0..starts).step_by(step).map(|i| format!(" {} ", ws[i..i + TAKEN_OVER_WORDS].join(" "))).collect()
}

/// Punctuation marks in a value past which only its prefixes and suffixes
/// are keys (a long URL), not every piece between two of them.
pub(in crate::taint) const MAX_PIECE_MARKS: usize = 24;

/// A value and every piece of it that starts and ends at a punctuation
/// mark (just before or after one) or at its ends, as long as a stored
/// value can be: the stored values a whole-ledger read would find inside it
/// (`stored in value`), found by key instead.
pub(in crate::taint) fn pieces(value: &str) -> Vec<String> {
    let mut cuts: Vec<usize> = vec![0, value.len()];
    for (i, c) in value.char_indices().filter(|(_, c)| !c.is_alphanumeric()) {
        cuts.push(i);
        cuts.push(i + c.len_utf8());
    }
    cuts.sort_unstable();
    cuts.dedup();
    let many = cuts.len() > 2 * MAX_PIECE_MARKS;
    let mut out = Vec::new();
    for (n, &start) in cuts.iter().enumerate() {
        for &end in &cuts[n + 1..] {
            if many && start != 0 && end != value.len() {
                continue;
            }
            if let Some(piece) = value.get(start..end).filter(|p| p.chars().count() >= MIN_VALUE_LEN) {
                out.push(piece.to_owned());
            }
        }
    }
    out
}

/// Longest part of a list written in text that is looked up as a name.
pub(in crate::taint) const MAX_NAME_WORDS: usize = 4;

/// Longest value whose every prefix and suffix is a key.
pub(in crate::taint) const MAX_AFFIX_CHARS: usize = 96;

/// Every prefix and suffix of a value, as long as a stored value can be.
pub(in crate::taint) fn prefixes_and_suffixes(value: &str) -> Vec<String> {
    let bounds: Vec<usize> = value.char_indices().map(|(i, _)| i).chain([value.len()]).collect();
    if bounds.len() > MAX_AFFIX_CHARS + 1 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for &i in &bounds {
        for piece in [&value[..i], &value[i..]] {
            if piece.chars().count() >= MIN_VALUE_LEN && piece.len() < value.len() {
                out.push(piece.to_owned());
            }
        }
    }
    out
}

/// Every run of six digits or more inside a value's digit runs (an account
/// number inside an IBAN or a phone number), each run of at most 34.
pub(in crate::taint) fn digit_runs_within(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    for run in value.split(|c: char| !c.is_ascii_digit()).filter(|r| r.len() >= 6 && r.len() <= MAX_ACCOUNT_CHARS) {
        for start in 0..=run.len() - 6 {
            for end in start + 6..=run.len() {
                out.push(run[start..end].to_owned());
            }
        }
    }
    out
}

/// The host a value names, without scheme, user, port or path.
pub(in crate::taint) fn host_of(value: &str) -> &str {
    let rest = value.split_once("://").map_or(value, |(_, r)| r);
    let rest = rest.split(['/', '?', '#']).next().unwrap_or("");
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    rest.split(':').next().unwrap_or("").trim_end_matches('.')
}

/// The phrases a value of a request is looked for as in the passages: the
/// value, its host and the domains above it, and its host-like or file-like
/// pieces (a page that wrote `backup.attacker.test` or `customer-acme.md`
/// as text, among junk that pushed them out of the values). Not the parts
/// of an address's user name: `dana@acme` is not the words "Dana (ACME)".
pub(in crate::taint) fn lookup_phrases(value: &str) -> Vec<String> {
    // A part is looked for only as two words or more: one word alone
    // ("example", "https") is in too much text to mean anything.
    let two_words = |p: &String| p.trim().contains(' ');
    let mut out: Vec<String> = phrase_of(value).into_iter().collect();
    let host = host_of(value);
    let parts = std::iter::once(host.to_owned()).chain(parent_domains(host)).chain(pieces(value).into_iter().filter(|p| p.contains('.') && !p.contains('@')).take(64));
    out.extend(parts.filter_map(|p| phrase_of(&p)).filter(two_words));
    out.sort();
    out.dedup();
    out
}

/// A short argument as a name, and each part of it that a list written in
/// text separates (`Bob, Mallory Evans`, `Bob and Mallory Evans`).
pub(in crate::taint) fn name_phrases(text: &str) -> Vec<String> {
    let mut out: Vec<String> = phrase_of(text).into_iter().collect();
    let normal = normalize(text);
    let parts: Vec<&str> = normal.split([',', ';', '\n', '|']).flat_map(|p| p.split(" and ")).collect();
    if parts.len() > 1 {
        // Names are short: a part of more words is a sentence, not a name.
        out.extend(parts.into_iter().filter(|p| words(p).count() <= MAX_NAME_WORDS).filter_map(phrase_of));
    }
    out.sort();
    out.dedup();
    out
}

/// The domains above a host or an address's domain, down to two labels
/// (`a.b.attacker.test`: `b.attacker.test`, `attacker.test`): a page that
/// named the attacker's domain taints every host under it.
pub(in crate::taint) fn parent_domains(value: &str) -> Vec<String> {
    let host = match value.split_once("://") {
        Some((_, rest)) => rest.split(['/', '?', '#']).next().unwrap_or(""),
        None => value.rsplit_once('@').map_or(value, |(_, d)| d),
    };
    if host.contains('/') || !host.contains('.') {
        return Vec::new();
    }
    let labels: Vec<&str> = host.split('.').collect();
    (1..labels.len().saturating_sub(1)).map(|i| labels[i..].join(".")).filter(|d| d.len() >= MIN_VALUE_LEN).collect()
}
