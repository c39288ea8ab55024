//! Stage 1: the request's own shape (schemas, digest, taint probe, no NUL).

#[allow(unused_imports)]
use super::*;

/// Stage 1: the request's own shape.
pub(in crate::gateway::meta) fn parse_request(shared: &crate::gateway::Shared, agent: &VerifiedAgent, req: Request) -> Result<Asked, CallToolResult> {
    if req.purpose.trim().is_empty() || req.purpose.len() > 1000 {
        return Err(bad_input(REQUEST, "purpose must be 1-1000 characters: say why the call is needed"));
    }
    if req.ttl_seconds == Some(0) {
        return Err(bad_input(REQUEST, "ttl_seconds must be at least 1 (leave it out for the default)"));
    }
    let break_glass = match &req.break_glass {
        None => None,
        Some(bg) => match bg.justification.as_deref().map(str::trim) {
            Some(j) if !j.is_empty() && j.len() <= 2000 => Some(j.to_owned()),
            _ => {
                return Err(bad_input(
                    REQUEST,
                    "break_glass needs a justification (1-2000 characters): say what emergency requires going around the normal rules; it is recorded and reviewed by a person",
                ));
            }
        },
    };
    let exposed = shared.downstreams.find(&req.tool);
    let constraints: Result<ArgConstraints, CallToolResult> = match (&exposed, req.arguments, req.constraints) {
        (None, _, _) => Err(refusal_result("unknown_tool", "")),
        (Some((_, tool)), Some(mut a), None) => {
            a.remove(TOKEN_ARGUMENT);
            let value = Value::Object(a.clone());
            if let Some(p) = schema_problems(&tool.input_validator, &value) {
                Err(denied("tool-input-schema", &format!("the arguments do not match `{}`'s input schema: {p}", req.tool)))
            } else if let Some(p) = tool.manifest_validator.as_ref().and_then(|v| schema_problems(v, &value)) {
                Err(denied("manifest-args-schema", &format!("the arguments are outside what this gateway allows for `{}`: {p}", req.tool)))
            } else {
                Ok(token::constraints::exact(&a))
            }
        }
        (Some(_), None, Some(c)) => match c.iter().find_map(|(n, c): (&String, &Constraint)| c.validate(n).err()) {
            Some(e) => Err(bad_input(REQUEST, e)),
            None => Ok(c),
        },
        _ => Err(bad_input(REQUEST, "give exactly one of `arguments` (exact values; {} for none) or `constraints`")),
    };
    // PostgreSQL's text cannot hold NUL, and no honest request needs one: a
    // request carrying one would fail in the store, uncounted.
    let with_nul = [req.purpose.as_str(), req.task.as_str(), req.tool.as_str()].into_iter().chain(req.follows.as_deref()).chain(break_glass.as_deref()).any(|t| t.contains('\0'))
        || constraints.as_ref().ok().is_some_and(|c| serde_json::to_value(c).is_ok_and(|v| carries_nul(&v)));
    if with_nul {
        return Err(bad_input(REQUEST, "the request carries a NUL character (in its purpose, task, an argument's name or value); jitgate accepts none: remove it"));
    }
    let digest = constraints.as_ref().ok().map(|c| decide::request_digest(&agent.agent.id, &req.tool, c));
    // What the taint stage will look up in the agent's ledger: only what
    // this request's sensitive values (and justification) could match.
    let probe = match (&exposed, &constraints) {
        (Some((_, tool)), Ok(c)) => taint_probe(&tool.spec, c, break_glass.as_deref()),
        _ => TaintProbe::default(),
    };
    Ok(Asked {
        task: req.task,
        tool: req.tool,
        purpose: req.purpose.trim().to_owned(),
        follows: req.follows,
        ttl_seconds: req.ttl_seconds,
        break_glass,
        constraints,
        digest,
        probe,
        now: shared.clock.now_unix(),
        one_step: req.one_step,
        passes: Passes::default(),
    })
}

/// What the taint stage will look up in the agent's ledger for a request of
/// a tool (`spec`) with these constraints: what its sensitive values, its
/// destinations in text, its other arguments and the justification could
/// match, and nothing else.
pub(in crate::gateway::meta) fn taint_probe(spec: &crate::manifest::ToolSpec, c: &ArgConstraints, break_glass: Option<&str>) -> TaintProbe {
    let text = JudgedText::of(spec, c);
    let probe = TaintProbe::of(&spec.sensitive_args, c)
        .and(TaintProbe::of(&text.in_text_names, &text.in_text))
        .and(TaintProbe::of(&text.others, c))
        .and(TaintProbe::windows(&text.others, c));
    match break_glass {
        Some(j) => probe.with_text(j),
        None => probe,
    }
}

/// A NUL anywhere in a JSON value, its keys included.
pub(in crate::gateway::meta) fn carries_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(carries_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || carries_nul(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_is_found_in_keys_and_values_at_any_depth() {
        assert!(carries_nul(&json!({"a\u{0}": 1})));
        assert!(carries_nul(&json!({"a": [{"b": "x\u{0}y"}]})));
        assert!(carries_nul(&json!("\u{0}")));
        // A written-out escape is text, not a NUL.
        assert!(!carries_nul(&json!({"a": "\\u0000", "b": [1, true, null, {"c": "d"}]})));
    }
}
