//! Canonical JSON: the one spelling of a JSON value that every digest is
//! taken over (tool pins, approval digests, argument digests). Object keys
//! sorted, no insignificant whitespace. serde_json keeps insertion order here
//! (a dependency enables `preserve_order`), so `Value::to_string` is not
//! canonical: `{"b":1,"a":2}` and `{"a":2,"b":1}` would digest differently,
//! and an agent could dodge a denial by reordering keys.
//!
//! The audit chain's record hash is the exception: it is taken over the
//! record as stored and re-read, in its stored order, and changing it would
//! break the verification of existing chains.

use serde_json::Value;

/// The canonical text of `v`.
pub fn json(v: &Value) -> String {
    let mut out = String::new();
    write(v, &mut out);
    out
}

fn write(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(val) = map.get(k) {
                    write(val, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_order_does_not_change_the_text() {
        let a: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":{"y":[2,{"d":1,"c":2}],"x":null}}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"a":{"x":null,"y":[2,{"c":2,"d":1}]},"b":1}"#).unwrap();
        assert_eq!(super::json(&a), super::json(&b));
        assert_eq!(super::json(&a), r#"{"a":{"x":null,"y":[2,{"c":2,"d":1}]},"b":1}"#);
    }
}
