//! Argument constraints carried in a capability token.
//!
//! A token names every argument the call may carry and what each may be:
//! an exact value, a string prefix, one of a list, a numeric range, or a JSON
//! Schema fragment. The call's arguments must be exactly the named set
//! (nothing missing, nothing extra) and each must satisfy its constraint.

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
            Constraint::Prefix(_) => Ok(()),
            Constraint::OneOf(v) if v.is_empty() => Err(invalid("one_of needs at least one value")),
            Constraint::OneOf(_) => Ok(()),
            Constraint::Range { min: None, max: None } => Err(invalid("range needs min, max or both")),
            Constraint::Range { min: Some(a), max: Some(b) } if a > b => Err(invalid("range min is above max")),
            Constraint::Range { .. } => Ok(()),
            Constraint::Schema(s) => jsonschema::options().build(s).map(|_| ()).map_err(|e| invalid(&format!("not a valid JSON Schema: {e}"))),
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
                let rest = s.strip_prefix(prefix.as_str()).ok_or_else(|| violated(format!("must start with {prefix:?}")))?;
                if rest.split(['/', '\\']).any(|seg| seg == "..") {
                    return Err(violated("must not leave the prefix with `..`".into()));
                }
                Ok(())
            }
            Constraint::OneOf(options) => {
                if options.contains(value) { Ok(()) } else { Err(violated(format!("must be one of {}", Value::Array(options.clone())))) }
            }
            Constraint::Range { min, max } => {
                let n = value.as_f64().ok_or_else(|| violated("must be a number".into()))?;
                if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                    return Err(violated(format!("must be within [{}, {}]", fmt_bound(*min), fmt_bound(*max))));
                }
                Ok(())
            }
            Constraint::Schema(schema) => {
                let validator = jsonschema::options().build(schema).map_err(|e| violated(format!("invalid schema in token: {e}")))?;
                match validator.iter_errors(value).next() {
                    None => Ok(()),
                    Some(e) => Err(violated(e.to_string())),
                }
            }
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
        fn prefix_never_admits_dotdot_escape(prefix in "/[a-z]{1,6}/", tail in "[a-z./]{0,12}") {
            let c = Constraint::Prefix(prefix.clone());
            let v = Value::from(format!("{prefix}{tail}"));
            let escapes = tail.split('/').any(|seg| seg == "..");
            prop_assert_eq!(c.check("p", &v).is_ok(), !escapes);
        }
    }
}
