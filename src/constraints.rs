//! Argument constraints carried in a capability token.
//!
//! A token names every argument the call may carry and what each may be:
//! an exact value, a string prefix, one of a list, a numeric range, or a JSON
//! Schema fragment. The call's arguments must be exactly the named set
//! (nothing missing, nothing extra) and each must satisfy its constraint.
//!
//! A `schema` constraint is written by an agent and evaluated by the gateway
//! on every call the token covers, so the gateway bounds its cost, not the
//! agent (issue 23: 300 backtracking patterns cost 2.5 s of CPU per call).
//! See [`compile_schema`]: at most [`MAX_SCHEMA_BYTES`] of JSON,
//! [`MAX_SCHEMA_NODES`] objects and arrays, [`MAX_SCHEMA_PATTERNS`] patterns,
//! no references, and patterns on the linear-time `regex` engine, which has
//! no backreferences or look-around. Checking arguments is still CPU work:
//! callers on the async runtime run it on the blocking pool.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What one argument may be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Constraint {
    /// Exactly this JSON value.
    Eq(Value),
    /// A string starting with this prefix. A `..` path segment after the
    /// prefix is refused, so `/srv/files/` cannot be escaped with `/srv/files/../etc`.
    Prefix(String),
    /// One of these values.
    OneOf(Vec<Value>),
    /// A number within the inclusive bounds.
    Range {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
    },
    /// A value valid against this JSON Schema fragment.
    Schema(Value),
}

/// Constraints per argument name.
pub type ArgConstraints = BTreeMap<String, Constraint>;

/// Why arguments do not match a token's constraints, or constraints are invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    #[error("argument `{0}` is not covered by the capability; request a token that names it")]
    Uncovered(String),
    #[error("argument `{0}` is required by the capability but missing")]
    Missing(String),
    #[error("argument `{name}` does not satisfy the capability's constraint ({detail})")]
    Violated { name: String, detail: String },
    #[error("constraint on `{name}` is invalid: {detail}")]
    Invalid { name: String, detail: String },
}

impl Constraint {
    /// The constraint's kind as it is written (`eq`, `prefix`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Constraint::Eq(_) => "eq",
            Constraint::Prefix(_) => "prefix",
            Constraint::OneOf(_) => "one_of",
            Constraint::Range { .. } => "range",
            Constraint::Schema(_) => "schema",
        }
    }

    /// Check the constraint itself (at request time).
    pub fn validate(&self, name: &str) -> Result<(), ConstraintError> {
        let invalid = |d: &str| ConstraintError::Invalid { name: name.to_owned(), detail: d.to_owned() };
        match self {
            Constraint::Eq(_) => Ok(()),
            Constraint::Prefix(p) if p.is_empty() => Err(invalid("an empty prefix allows anything; give exact values or a real prefix")),
            Constraint::Prefix(p) => canonical_prefix(p).map_err(|d| invalid(&d)),
            Constraint::OneOf(v) if v.is_empty() => Err(invalid("one_of needs at least one value")),
            Constraint::OneOf(_) => Ok(()),
            Constraint::Range { min: None, max: None } => Err(invalid("range needs min, max or both")),
            Constraint::Range { min: Some(a), max: Some(b) } if a > b => Err(invalid("range min is above max")),
            Constraint::Range { .. } => Ok(()),
            Constraint::Schema(s) => compile_schema(s).map(|_| ()).map_err(|e| invalid(&e)),
        }
    }

    /// Does `value` satisfy the constraint?
    pub fn check(&self, name: &str, value: &Value) -> Result<(), ConstraintError> {
        let violated = |d: String| ConstraintError::Violated { name: name.to_owned(), detail: d };
        match self {
            Constraint::Eq(expected) => {
                if value == expected { Ok(()) } else { Err(violated(format!("must equal {expected}"))) }
            }
            Constraint::Prefix(prefix) => {
                let s = value.as_str().ok_or_else(|| violated("must be a string".into()))?;
                if !s.starts_with(prefix.as_str()) {
                    return Err(violated(format!("must start with {prefix:?}")));
                }
                // The prefix was canonical when granted (and is checked again,
                // for tokens minted before that rule); the value must not walk
                // out of it in any spelling.
                canonical_prefix(prefix).map_err(violated)?;
                if let Some(why) = escapes(s) {
                    return Err(violated(format!("must stay under the prefix: {why}")));
                }
                Ok(())
            }
            Constraint::OneOf(options) => {
                if options.contains(value) { Ok(()) } else { Err(violated(format!("must be one of {}", Value::Array(options.clone())))) }
            }
            Constraint::Range { min, max } => {
                if !within(value, *min, *max).ok_or_else(|| violated("must be a number".into()))? {
                    return Err(violated(format!("must be within [{}, {}]", fmt_bound(*min), fmt_bound(*max))));
                }
                Ok(())
            }
            Constraint::Schema(schema) => {
                // Tokens minted before the limits existed are held to them too.
                let validator = compile_schema(schema).map_err(|e| violated(format!("the token's schema is not accepted ({e}); request a new token")))?;
                match validator.iter_errors(value).next() {
                    None => Ok(()),
                    Some(e) => Err(violated(e.to_string())),
                }
            }
        }
    }
}

/// Largest `schema` constraint, in bytes of compact JSON. An argument's rules
/// fit in far less; `eq`, `one_of`, `prefix` and `range` cover long lists.
pub const MAX_SCHEMA_BYTES: usize = 4 * 1024;
/// Most JSON objects and arrays (subschemas and the maps and lists that hold
/// them) in one `schema` constraint. With no references, each subschema is
/// applied at most once per value of the argument, so this bounds the work.
pub const MAX_SCHEMA_NODES: usize = 64;
/// Most regular expressions (`pattern` values and `patternProperties` keys)
/// in one `schema` constraint.
pub const MAX_SCHEMA_PATTERNS: usize = 16;
/// Largest compiled program of one pattern, in bytes (the `regex` crate's
/// `size_limit`); ordinary patterns, Unicode classes included, stay far below.
const MAX_PATTERN_PROGRAM_BYTES: usize = 256 * 1024;
/// Largest lazy-DFA cache of one pattern, in bytes (`dfa_size_limit`).
const MAX_PATTERN_DFA_BYTES: usize = 256 * 1024;
/// Keywords that make a schema jump elsewhere: a small schema whose
/// references fan out is evaluated an exponential number of times.
const REFERENCE_KEYWORDS: [&str; 3] = ["$ref", "$dynamicRef", "$recursiveRef"];

/// Compile an agent's `schema` constraint, or say which limit it breaks and
/// what to do instead. Patterns run on the `regex` crate (time linear in the
/// value's length, whatever the pattern), never on `fancy-regex`, whose
/// backtracking an agent could make exponential.
///
/// ```
/// use jitgate::token::constraints::compile_schema;
/// use serde_json::json;
/// let v = compile_schema(&json!({"type": "string", "pattern": "^[a-z0-9-]+\\.md$"})).unwrap();
/// assert!(v.is_valid(&json!("q3-plan.md")) && !v.is_valid(&json!("../etc/passwd")));
/// assert!(compile_schema(&json!({"pattern": "^(a|a)*\\1b"})).unwrap_err().contains("backreference"));
/// ```
pub fn compile_schema(schema: &Value) -> Result<jsonschema::Validator, String> {
    check_schema_limits(schema)?;
    let patterns = jsonschema::PatternOptions::regex().size_limit(MAX_PATTERN_PROGRAM_BYTES).dfa_size_limit(MAX_PATTERN_DFA_BYTES);
    jsonschema::options().with_pattern_options(patterns).build(schema).map_err(|e| match e.kind() {
        jsonschema::error::ValidationErrorKind::Format { format } if format == "regex" => {
            let pattern = e.instance().as_str().map(str::to_owned).unwrap_or_else(|| e.instance().to_string());
            format!("the pattern {} at {} is not accepted: {}", cut(&pattern), e.schema_path(), unsupported_pattern(&pattern))
        }
        _ => format!("not a valid JSON Schema: {e}"),
    })
}

/// Size, node count, pattern count and references, checked before the
/// schema is compiled at all. The walk is iterative and stops at the first
/// limit crossed.
fn check_schema_limits(schema: &Value) -> Result<(), String> {
    let remedy = "keep the schema to this argument's rules, or use `eq`, `one_of`, `prefix` or `range`";
    let bytes = serde_json::to_vec(schema).map_err(|e| format!("the schema cannot be written as JSON: {e}"))?.len();
    if bytes > MAX_SCHEMA_BYTES {
        return Err(format!("the schema is {bytes} bytes as JSON; a `schema` constraint may be at most {MAX_SCHEMA_BYTES} bytes: {remedy}"));
    }
    let (mut nodes, mut patterns) = (0usize, 0usize);
    let mut pending = vec![schema];
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    match (key.as_str(), child) {
                        (k, Value::String(_)) if REFERENCE_KEYWORDS.contains(&k) => {
                            return Err(format!("the schema uses `{k}`; a `schema` constraint cannot use references (`$ref`, `$dynamicRef`, `$recursiveRef`): write the subschema out in place"));
                        }
                        ("pattern", Value::String(_)) => patterns += 1,
                        ("patternProperties", Value::Object(keys)) => patterns += keys.len(),
                        _ => {}
                    }
                }
                pending.extend(map.values());
            }
            Value::Array(items) => pending.extend(items),
            _ => continue,
        }
        nodes += 1;
        if nodes > MAX_SCHEMA_NODES {
            return Err(format!("the schema has more than {MAX_SCHEMA_NODES} objects and arrays (subschemas); a `schema` constraint may have at most {MAX_SCHEMA_NODES}: {remedy}"));
        }
        if patterns > MAX_SCHEMA_PATTERNS {
            return Err(format!("the schema has more than {MAX_SCHEMA_PATTERNS} patterns (`pattern` values and `patternProperties` keys); a `schema` constraint may have at most {MAX_SCHEMA_PATTERNS}: {remedy}"));
        }
    }
    Ok(())
}

/// Why the linear-time engine refused a pattern, in the agent's terms.
fn unsupported_pattern(pattern: &str) -> String {
    let engine = "patterns in a `schema` constraint run on a linear-time regex engine";
    let backreference = pattern.contains("\\k<") || pattern.as_bytes().windows(2).any(|w| matches!(w, [b'\\', b'1'..=b'9']));
    if backreference {
        format!("it uses a backreference (`\\1`, `\\k<name>`), which {engine} does not have; match the repeated text explicitly, or use `one_of`")
    } else if ["(?=", "(?!", "(?<=", "(?<!"].iter().any(|l| pattern.contains(l)) {
        format!("it uses look-around (`(?=`, `(?!`, `(?<=`, `(?<!`), which {engine} does not have; rewrite it without")
    } else {
        format!("it is not a valid regular expression, or it compiles to more than {} KiB on the linear-time engine; write a smaller pattern", MAX_PATTERN_PROGRAM_BYTES / 1024)
    }
}

/// A pattern as shown in a message: at most 80 characters.
fn cut(pattern: &str) -> String {
    match pattern.char_indices().nth(80) {
        Some((end, _)) => format!("{:?}…", pattern.get(..end).unwrap_or_default()),
        None => format!("{pattern:?}"),
    }
}

/// What a prefix means. For a path (`/srv/files/`) or a URL
/// (`https://wiki.example.org/docs/`), a value is admitted when it starts
/// with the prefix as a plain string and has no `.` or `..` segment in any
/// spelling (percent-encoded, doubly encoded, with a `;` parameter, with a
/// backslash). The prefix itself must be canonical: no such segments, no
/// encoded dots or separators, and a URL prefix must reach past its host
/// (end the host with `/`), so that `https://wiki.example.org` cannot admit
/// `https://wiki.example.org.attacker.test/`.
fn canonical_prefix(prefix: &str) -> Result<(), String> {
    let lower = prefix.to_ascii_lowercase();
    if ["%2e", "%2f", "%5c", "%25"].iter().any(|e| lower.contains(e)) {
        return Err(format!("prefix {prefix:?} holds an encoded dot, slash, backslash or percent; write it plainly"));
    }
    if prefix.contains('\\') {
        return Err(format!("prefix {prefix:?} holds a backslash; use `/`"));
    }
    if let Some(why) = escapes(prefix) {
        return Err(format!("prefix {prefix:?} is not canonical: {why}"));
    }
    if let Some((_, after_scheme)) = prefix.split_once("://") {
        if !after_scheme.contains('/') {
            return Err(format!("URL prefix {prefix:?} ends inside the host; end it with `/` after the host (e.g. {prefix:?}/)"));
        }
    }
    Ok(())
}

/// Does a path or URL have a `.` or `..` segment once decoded? Decodes
/// percent-encoding up to three times (double encoding), splits on `/` and
/// `\`, and drops `;` parameters from each segment (`..;/`).
fn escapes(value: &str) -> Option<String> {
    let mut text = value.to_owned();
    for _ in 0..3 {
        let decoded = percent_decode(&text);
        if decoded == text {
            break;
        }
        text = decoded;
    }
    let path = match text.split_once("://") {
        Some((_, rest)) => rest.to_owned(),
        None => text,
    };
    path.split(['/', '\\'])
        .map(|seg| seg.split(';').next().unwrap_or(""))
        .find(|seg| *seg == "." || *seg == "..")
        .map(|seg| format!("a `{seg}` segment"))
}

/// Percent-decoding of ASCII escapes; invalid escapes stay as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes.get(i), bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (Some(b'%'), Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'%'));
                i += 3;
            }
            (Some(b), _, _) => {
                out.push(*b);
                i += 1;
            }
            (None, _, _) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Is a JSON number within the bounds? Integers are compared exactly (as
/// i128 against the bounds rounded inwards), never through f64, where
/// 2^53 + 1 would equal 2^53. None if the value is not a number.
fn within(value: &Value, min: Option<f64>, max: Option<f64>) -> Option<bool> {
    let exact = value.as_i64().map(i128::from).or_else(|| value.as_u64().map(i128::from));
    match exact {
        Some(v) => {
            // f64 bounds beyond i128 clamp to its range, which no i64/u64 reaches.
            let lo = min.is_none_or(|m| v >= m.ceil() as i128);
            let hi = max.is_none_or(|m| v <= m.floor() as i128);
            Some(lo && hi)
        }
        None => {
            let n = value.as_f64()?;
            Some(!(min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m)))
        }
    }
}

fn fmt_bound(b: Option<f64>) -> String {
    b.map(|v| v.to_string()).unwrap_or_else(|| "any".into())
}

/// Exact-value constraints for a concrete argument object.
pub fn exact(arguments: &serde_json::Map<String, Value>) -> ArgConstraints {
    arguments.iter().map(|(k, v)| (k.clone(), Constraint::Eq(v.clone()))).collect()
}

/// Check a call's arguments against a token's constraints: the same set of
/// names, each value satisfying its constraint.
pub fn check_arguments(constraints: &ArgConstraints, arguments: &serde_json::Map<String, Value>) -> Result<(), ConstraintError> {
    if let Some(extra) = arguments.keys().find(|k| !constraints.contains_key(*k)) {
        return Err(ConstraintError::Uncovered(extra.clone()));
    }
    for (name, c) in constraints {
        let value = arguments.get(name).ok_or_else(|| ConstraintError::Missing(name.clone()))?;
        c.check(name, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn integer_ranges_are_exact_beyond_two_to_the_53() {
        let max = Constraint::Range { min: None, max: Some(9_007_199_254_740_992.0) };
        assert!(max.check("n", &json!(9_007_199_254_740_992_i64)).is_ok());
        assert!(max.check("n", &json!(9_007_199_254_740_993_i64)).is_err());
        assert!(max.check("n", &json!(u64::MAX)).is_err());
        let frac = Constraint::Range { min: Some(0.5), max: Some(2.5) };
        assert!(frac.check("n", &json!(0)).is_err());
        assert!(frac.check("n", &json!(1)).is_ok() && frac.check("n", &json!(2)).is_ok());
        assert!(frac.check("n", &json!(3)).is_err());
        assert!(frac.check("n", &json!(2.5)).is_ok() && frac.check("n", &json!(2.6)).is_err());
        assert!(frac.check("n", &json!("2")).is_err());
    }

    #[test]
    fn prefixes_must_be_canonical_and_values_cannot_walk_out_in_any_spelling() {
        for bad in ["/srv/files/../../", "/srv/files/.", "/srv/files/./x", "/srv/%2e%2e/", "/srv/files%2F", "C:\\files\\", "https://wiki.example.org", "/srv/%252e/"] {
            assert!(Constraint::Prefix(bad.into()).validate("path").is_err(), "{bad}");
        }
        let p = Constraint::Prefix("/srv/files/".into());
        assert!(p.validate("path").is_ok());
        for escape in [
            "/srv/files/../etc/passwd",
            "/srv/files/%2e%2e/etc/passwd",
            "/srv/files/%2E%2E%2Fetc/passwd",
            "/srv/files/.%2e/etc/passwd",
            "/srv/files/..;/etc/passwd",
            "/srv/files/%252e%252e/etc/passwd",
            "/srv/files/..\\etc\\passwd",
            "/srv/files/./../etc",
        ] {
            assert!(p.check("path", &json!(escape)).is_err(), "{escape}");
        }
        for ok in ["/srv/files/report.pdf", "/srv/files/a/b..c/d", "/srv/files/.hidden"] {
            assert!(p.check("path", &json!(ok)).is_ok(), "{ok}");
        }
        let url = Constraint::Prefix("https://wiki.example.org/docs/".into());
        assert!(url.validate("url").is_ok());
        assert!(url.check("url", &json!("https://wiki.example.org/docs/q3")).is_ok());
        assert!(url.check("url", &json!("https://wiki.example.org/docs/%2e%2e/admin")).is_err());
        assert!(url.check("url", &json!("https://wiki.example.org.attacker.test/docs/")).is_err());
    }
    use serde_json::json;

    fn obj(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn each_kind_accepts_and_refuses() {
        let c: ArgConstraints = serde_json::from_value(json!({
            "to": {"one_of": ["alice@example.org", "bob@example.org"]},
            "path": {"prefix": "/srv/files/"},
            "limit": {"range": {"min": 1, "max": 10}},
            "subject": {"eq": "Q3"},
            "body": {"schema": {"type": "string", "maxLength": 5}},
        }))
        .unwrap();
        let good = obj(json!({"to": "alice@example.org", "path": "/srv/files/a.txt", "limit": 3, "subject": "Q3", "body": "hi"}));
        assert_eq!(check_arguments(&c, &good), Ok(()));
        let with = |k: &str, v: Value| {
            let mut a = good.clone();
            a.insert(k.into(), v);
            check_arguments(&c, &a)
        };
        assert!(matches!(with("to", json!("audit@exfil.attacker.test")), Err(ConstraintError::Violated { .. })));
        assert!(matches!(with("path", json!("/srv/files/../../etc/passwd")), Err(ConstraintError::Violated { .. })));
        assert!(matches!(with("path", json!("/etc/passwd")), Err(ConstraintError::Violated { .. })));
        assert!(matches!(with("limit", json!(11)), Err(ConstraintError::Violated { .. })));
        assert!(matches!(with("subject", json!("Q4")), Err(ConstraintError::Violated { .. })));
        assert!(matches!(with("body", json!("too long")), Err(ConstraintError::Violated { .. })));
        assert_eq!(with("bcc", json!("x@evil.test")), Err(ConstraintError::Uncovered("bcc".into())));
        let mut missing = good.clone();
        missing.remove("limit");
        assert_eq!(check_arguments(&c, &missing), Err(ConstraintError::Missing("limit".into())));
    }

    #[test]
    fn invalid_constraints_are_refused_at_request_time() {
        assert!(Constraint::Prefix(String::new()).validate("p").is_err());
        assert!(Constraint::OneOf(vec![]).validate("p").is_err());
        assert!(Constraint::Range { min: Some(5.0), max: Some(1.0) }.validate("p").is_err());
        assert!(Constraint::Schema(json!({"type": 5})).validate("p").is_err());
        assert!(serde_json::from_value::<Constraint>(json!({"regex": ".*"})).is_err());
    }

    /// The schema from issue 23: 300 backtracking patterns, about 10 KB.
    fn issue_23_schema() -> Value {
        let all: Vec<Value> = (0..300).map(|_| json!({"pattern": "^(?:(a|a)*\\1b|a)"})).collect();
        json!({"type": "string", "allOf": all})
    }

    fn refusal(schema: Value) -> String {
        match Constraint::Schema(schema).validate("note") {
            Err(ConstraintError::Invalid { detail, .. }) => detail,
            other => panic!("expected the schema to be refused, got {other:?}"),
        }
    }

    #[test]
    fn the_issue_23_schema_is_refused_at_request_time_and_at_call_time() {
        let big = issue_23_schema();
        assert!(serde_json::to_vec(&big).unwrap().len() > 9_000);
        let why = refusal(big.clone());
        assert!(why.contains("at most 4096 bytes"), "{why}");
        // A token minted before the limits is held to them when it is used.
        let at_call = Constraint::Schema(big).check("note", &json!("aaaa"));
        assert!(matches!(&at_call, Err(ConstraintError::Violated { detail, .. }) if detail.contains("request a new token")), "{at_call:?}");
        // One such pattern alone is small, and still refused: it needs a backreference.
        let why = refusal(json!({"type": "string", "pattern": "^(?:(a|a)*\\1b|a)"}));
        assert!(why.contains("backreference") && why.contains("/pattern"), "{why}");
        let why = refusal(json!({"patternProperties": {"^(x)\\1$": true}}));
        assert!(why.contains("backreference"), "{why}");
        let why = refusal(json!({"pattern": "^(?=.*[0-9]).+$"}));
        assert!(why.contains("look-around"), "{why}");
    }

    #[test]
    fn patterns_run_on_the_linear_engine() {
        // The backtracking shape without the backreference is admitted and
        // answers correctly; on the `regex` crate its cost is linear in the value.
        let c = Constraint::Schema(json!({"type": "string", "pattern": "^(a|a)*b$"}));
        assert_eq!(c.validate("s"), Ok(()));
        assert!(c.check("s", &json!(format!("{}b", "a".repeat(5000)))).is_ok());
        assert!(c.check("s", &json!("a".repeat(5000))).is_err());
        // A pattern that compiles beyond the engine's size limit is refused, saying so.
        let why = refusal(json!({"pattern": "^\\w{1000}\\w{1000}\\w{1000}$"}));
        assert!(why.contains("KiB"), "{why}");
    }

    #[test]
    fn oversize_schemas_are_refused_saying_the_limit() {
        let why = refusal(json!({"type": "string", "description": "x".repeat(MAX_SCHEMA_BYTES)}));
        assert!(why.contains(&format!("at most {MAX_SCHEMA_BYTES} bytes")) && why.contains("one_of"), "{why}");
        // Small, but too many subschemas.
        let nested = (0..MAX_SCHEMA_NODES).fold(json!({"type": "string"}), |inner, _| json!({"not": {"not": inner}}));
        assert!(serde_json::to_vec(&nested).unwrap().len() <= MAX_SCHEMA_BYTES);
        let why = refusal(nested);
        assert!(why.contains(&format!("at most {MAX_SCHEMA_NODES}")) && why.contains("subschemas"), "{why}");
        let wide: Vec<Value> = (0..MAX_SCHEMA_NODES).map(|_| json!({})).collect();
        assert!(refusal(json!({"anyOf": wide})).contains("subschemas"));
        let patterns: serde_json::Map<String, Value> = (0..=MAX_SCHEMA_PATTERNS).map(|i| (format!("^k{i}$"), json!(true))).collect();
        let why = refusal(json!({"patternProperties": patterns}));
        assert!(why.contains(&format!("at most {MAX_SCHEMA_PATTERNS}")), "{why}");
        let why = refusal(json!({"$defs": {"s": {"type": "string"}}, "$ref": "#/$defs/s"}));
        assert!(why.contains("`$ref`") && why.contains("write the subschema out"), "{why}");
        // At the limits exactly is fine.
        let wide: Vec<Value> = (0..MAX_SCHEMA_NODES - 2).map(|_| json!({})).collect();
        assert_eq!(Constraint::Schema(json!({"anyOf": wide})).validate("s"), Ok(()));
    }

    #[test]
    fn a_legitimate_schema_with_a_pattern_admits_and_refuses() {
        let c = Constraint::Schema(json!({"type": "string", "pattern": "^[a-z0-9-]+\\.md$", "maxLength": 64}));
        assert_eq!(c.validate("name"), Ok(()));
        for ok in ["q3-plan.md", "notes.md", "a-1.md"] {
            assert!(c.check("name", &json!(ok)).is_ok(), "{ok}");
        }
        for bad in [json!("q3-plan.txt"), json!("../etc/passwd.md"), json!("Q3.md"), json!("x.md\n"), json!(7)] {
            assert!(matches!(c.check("name", &bad), Err(ConstraintError::Violated { .. })), "{bad}");
        }
        // patternProperties and Unicode classes stay within the limits.
        let c = Constraint::Schema(json!({"type": "object", "patternProperties": {"^\\w+$": {"type": "string", "pattern": "^[\\w.+-]+@[\\w-]+(\\.[\\w-]+)+$"}}, "additionalProperties": false}));
        assert_eq!(c.validate("m"), Ok(()));
        assert!(c.check("m", &json!({"to_1": "alice@example.org"})).is_ok());
        assert!(c.check("m", &json!({"to": "not an address"})).is_err());
        assert!(c.check("m", &json!({"a b": "alice@example.org"})).is_err());
        let c = Constraint::Schema(json!({"type": "string", "pattern": "^[\\p{L} .'-]{1,100}$"}));
        assert_eq!(c.validate("name"), Ok(()));
        assert!(c.check("name", &json!("Zoë O'Brien-Łukasz")).is_ok());
        assert!(c.check("name", &json!("Zoë; rm -rf")).is_err());
    }

    proptest! {
        #[test]
        fn exact_constraints_accept_exactly_their_arguments(
            args in prop::collection::btree_map("[a-z]{1,6}", prop_oneof![any::<i64>().prop_map(Value::from), "[ -~]{0,12}".prop_map(Value::from), any::<bool>().prop_map(Value::from)], 0..5),
            other in "[ -~]{0,12}",
        ) {
            let args: serde_json::Map<String, Value> = args.into_iter().collect();
            let c = exact(&args);
            prop_assert_eq!(check_arguments(&c, &args), Ok(()));
            // Changing any one value to something else is refused.
            for k in args.keys() {
                let mut changed = args.clone();
                let new = Value::from(format!("{other}#changed"));
                if changed.get(k) == Some(&new) { continue; }
                changed.insert(k.clone(), new);
                prop_assert!(check_arguments(&c, &changed).is_err());
            }
            let mut extra = args.clone();
            extra.insert("zzzzzzz_extra".into(), Value::from(1));
            prop_assert!(check_arguments(&c, &extra).is_err());
        }

        #[test]
        fn constraints_round_trip_through_json(min in -1e6f64..1e6, span in 0f64..1e6, s in "[ -~]{1,10}") {
            let c: ArgConstraints = [
                ("a".to_owned(), Constraint::Range { min: Some(min), max: Some(min + span) }),
                ("b".to_owned(), Constraint::Prefix(s.clone())),
                ("c".to_owned(), Constraint::OneOf(vec![Value::from(s)])),
            ].into_iter().collect();
            let back: ArgConstraints = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
            prop_assert_eq!(back, c);
        }

        #[test]
        fn prefix_never_admits_dot_segments(prefix in "/[a-z]{1,6}/", tail in "[a-z./%2eE]{0,12}") {
            let c = Constraint::Prefix(prefix.clone());
            let v = Value::from(format!("{prefix}{tail}"));
            // Encoded dots and slashes both count (`%2f%2E` is `/.`).
            let mut decoded = tail.clone();
            for _ in 0..3 {
                decoded = decoded.replace("%2e", ".").replace("%2E", ".").replace("%2f", "/").replace("%2F", "/");
            }
            let escapes = decoded.split('/').any(|seg| seg == ".." || seg == ".");
            prop_assert_eq!(c.check("p", &v).is_ok(), !escapes);
        }
    }
}
