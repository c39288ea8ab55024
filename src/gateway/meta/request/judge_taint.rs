//! Stage 4: values from untrusted output in the request's arguments.

#[allow(unused_imports)]
use super::*;

/// The taint stage's verdict.
pub(in crate::gateway::meta) struct Taint {
    pub(in crate::gateway::meta) verdict: crate::taint::TaintVerdict,
    /// The break-glass justification itself repeats untrusted content.
    pub(in crate::gateway::meta) justification_tainted: bool,
    /// A sink's other argument (a body) carries a URL, an address or an
    /// account or phone number from untrusted content.
    pub(in crate::gateway::meta) destination_in_text: bool,
    /// Another argument carries third-party text ([`TaintFacts::text_from_third_party`]).
    pub(in crate::gateway::meta) text_from_third_party: bool,
    pub(in crate::gateway::meta) third_party_arguments: Vec<String>,
}

/// Stage 4: do the sensitive arguments carry, or admit, values from
/// untrusted output? Does a break-glass justification repeat such content?
pub(in crate::gateway::meta) fn judge_taint(ledger: &crate::taint::TaintLedger, spec: &crate::manifest::ToolSpec, constraints: &ArgConstraints, break_glass: Option<&str>) -> Taint {
    let mut verdict = ledger.check(&spec.sensitive_args, &spec.open_sensitive_args, constraints);
    let text = JudgedText::of(spec, constraints);
    // A sink's other arguments: a link or an address from third-party
    // content inside a message's body is marked too (issue 24).
    let t = ledger.check(&text.in_text_names, &[], &text.in_text);
    let destination_in_text = t.tainted;
    verdict.absorb(t);
    // Every other argument, of any tool: text an attacker wrote can steer a
    // write that has no destination (an event's title and place, a
    // booking's hotel where nothing is marked sensitive).
    let others = &text.others;
    let mut t = ledger.check(others, others, constraints);
    t.absorb(ledger.check_taken_over(others, constraints));
    // What says the text was taken over, not that a reply used a word or a
    // date of what it answers (see `takes_over_text`).
    t.findings.retain(|(_, value)| takes_over_text(value));
    t.origins.retain(|(value, _)| takes_over_text(value));
    let text_from_third_party = !t.findings.is_empty();
    let mut third_party_arguments: Vec<String> = t.findings.iter().map(|(arg, _)| arg.clone()).collect();
    third_party_arguments.sort();
    third_party_arguments.dedup();
    if text_from_third_party {
        verdict.absorb(t);
    }
    let mut justification_tainted = false;
    if let Some(j) = break_glass {
        let justification = ArgConstraints::from([("break_glass.justification".to_owned(), Constraint::Eq(Value::String(j.to_owned())))]);
        let t = ledger.check(&["break_glass.justification".to_owned()], &[], &justification);
        justification_tainted = t.tainted;
        if t.tainted {
            verdict.tainted = true;
            verdict.absorb(t);
        }
    }
    Taint { verdict, justification_tainted, destination_in_text, text_from_third_party, third_party_arguments }
}

/// A value found in another argument that shows third-party text was taken
/// over: a phrase of three words or more, one with a letter ("Grand Mirage
/// Palace", an event's title). Shorter ones ("Thanks, Alice", a subject
/// "Quarterly report", a note's file name) are what honest replies and
/// actions repeat of what they answer; destinations in a sink's text are
/// judged on their own (`destination_in_text`).
pub(in crate::gateway::meta) fn takes_over_text(value: &str) -> bool {
    // Words as written, apart: `q3-plan.md` is one (a name), not three.
    let words: Vec<&str> = value.split_whitespace().collect();
    words.len() >= MIN_TAKEN_OVER_WORDS && words.iter().any(|w| w.chars().any(char::is_alphabetic))
}

/// Fewest words of a phrase that shows text was taken over.
pub(in crate::gateway::meta) const MIN_TAKEN_OVER_WORDS: usize = 3;

/// What the taint stage judges besides the sensitive arguments, in one
/// place, so that the request's ledger lookup (its probe, built when the
/// request is parsed) finds what the stage then checks.
pub(in crate::gateway::meta) struct JudgedText {
    /// The destinations written in a sink's other arguments (none for a
    /// tool that is no sink), and the names of those arguments.
    pub(in crate::gateway::meta) in_text: ArgConstraints,
    pub(in crate::gateway::meta) in_text_names: Vec<String>,
    /// The arguments the manifest does not mark sensitive.
    pub(in crate::gateway::meta) others: Vec<String>,
}

impl JudgedText {
    pub(in crate::gateway::meta) fn of(spec: &crate::manifest::ToolSpec, constraints: &ArgConstraints) -> Self {
        let in_text = if is_sink(spec) { crate::taint::destinations_in_text(&spec.sensitive_args, constraints) } else { ArgConstraints::new() };
        let in_text_names = in_text.keys().cloned().collect();
        let others = constraints.keys().filter(|name| !spec.sensitive_args.contains(name)).cloned().collect();
        Self { in_text, in_text_names, others }
    }
}

/// A tool the manifest tags as a sink: what it is given leaves the system.
pub(in crate::gateway::meta) fn is_sink(spec: &crate::manifest::ToolSpec) -> bool {
    spec.tags.iter().any(|t| t == "sink")
}
