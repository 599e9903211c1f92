//! An Artifact document checked offline against the CRD's own schema (what
//! `ocisync crd` writes and the API server enforces): types, required
//! fields, enums, bounds, patterns, and, as `kubectl apply`'s strict field
//! validation does, no field the schema does not know. The subset of
//! OpenAPI v3 a structural Kubernetes schema uses.

use serde_json::Value;

/// Errors reported per document, at most: the first ones say what to fix.
const MAX_ERRORS: usize = 20;
const MAX_DEPTH: usize = 64;

/// The openAPIV3Schema of the Artifact CRD this build serves.
pub(crate) fn artifact_schema() -> Value {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(crate::api::Artifact::crd()).unwrap_or(Value::Null);
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Every way `doc` breaks `schema`, as `path: what`.
pub(crate) fn validate(schema: &Value, doc: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    check(schema, doc, "", 0, &mut errs);
    errs.truncate(MAX_ERRORS);
    errs
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check(s: &Value, v: &Value, path: &str, depth: usize, errs: &mut Vec<String>) {
    if errs.len() >= MAX_ERRORS || depth > MAX_DEPTH {
        return;
    }
    let at = if path.is_empty() { "." } else { path };
    let mut err = |m: String| errs.push(format!("{at}: {m}"));
    if v.is_null() && s["nullable"] == Value::Bool(true) {
        return;
    }
    let int_or_string = s["x-kubernetes-int-or-string"] == Value::Bool(true);
    if let Some(t) = s["type"].as_str() {
        let got = kind(v);
        let ok =
            got == t || (t == "number" && got == "integer") || (int_or_string && matches!(got, "integer" | "string"));
        if !ok {
            err(format!("must be {t}, not {got}"));
            return;
        }
    }
    if let Some(e) = s["enum"].as_array()
        && !e.contains(v)
    {
        let allowed: Vec<String> = e.iter().map(|x| x.to_string()).collect();
        err(format!("{v} is not one of {}", allowed.join(", ")));
    }
    match v {
        Value::Object(m) => {
            for r in s["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                if !m.contains_key(r) {
                    err(format!("{r} is required"));
                }
            }
            let preserve = s["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true);
            let props = s["properties"].as_object();
            for (k, x) in m {
                let p = format!("{path}.{k}");
                match (props.and_then(|p| p.get(k)), &s["additionalProperties"]) {
                    (Some(sub), _) => check(sub, x, &p, depth + 1, errs),
                    (None, extra @ Value::Object(_)) => check(extra, x, &p, depth + 1, errs),
                    (None, _) if preserve || props.is_none() && s["type"] != "object" => {}
                    (None, _) => errs.push(format!("{p}: unknown field")),
                }
            }
            if let Some(max) = s["maxProperties"].as_u64().filter(|&n| (m.len() as u64) > n) {
                errs.push(format!("{at}: more than {max} entries"));
            }
        }
        Value::Array(a) => {
            if let Some(n) = s["maxItems"].as_u64().filter(|&n| (a.len() as u64) > n) {
                err(format!("more than {n} items"));
            }
            if let Some(n) = s["minItems"].as_u64().filter(|&n| (a.len() as u64) < n) {
                err(format!("fewer than {n} items"));
            }
            for (i, x) in a.iter().enumerate() {
                check(&s["items"], x, &format!("{path}[{i}]"), depth + 1, errs);
            }
        }
        Value::String(t) => {
            let n = t.chars().count() as u64;
            if let Some(max) = s["maxLength"].as_u64().filter(|&m| n > m) {
                err(format!("longer than {max} characters"));
            }
            if let Some(min) = s["minLength"].as_u64().filter(|&m| n < m) {
                err(format!("shorter than {min} characters"));
            }
            if let Some(p) = s["pattern"].as_str()
                && let Ok(re) = regex::Regex::new(p)
                && !re.is_match(t)
            {
                err(format!("{t:?} does not match {p}"));
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(min) = s["minimum"].as_f64().filter(|&m| x < m) {
                err(format!("less than {min}"));
            }
            if let Some(max) = s["maximum"].as_f64().filter(|&m| x > m) {
                err(format!("more than {max}"));
            }
        }
        _ => {}
    }
    for (key, need) in [("anyOf", 1usize), ("oneOf", 1)] {
        if let Some(alts) = s[key].as_array() {
            let passing = alts.iter().filter(|a| validate_quiet(a, v, depth)).count();
            let bad = if key == "oneOf" { passing != need } else { passing < need };
            if bad {
                errs.push(format!("{at}: matches {passing} of the {key} alternatives"));
            }
        }
    }
    for a in s["allOf"].as_array().into_iter().flatten() {
        check(a, v, path, depth + 1, errs);
    }
}

fn validate_quiet(s: &Value, v: &Value, depth: usize) -> bool {
    let mut e = Vec::new();
    check(s, v, "", depth + 1, &mut e);
    e.is_empty()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn errors(spec: Value) -> Vec<String> {
        let schema = artifact_schema();
        validate(&schema["properties"]["spec"], &spec)
    }

    #[test]
    fn the_crds_schema_is_applied() {
        assert!(errors(json!({"url": "oci://r.io/a", "ref": {"tag": "v1"}, "interval": "5m"})).is_empty());
        let cases = [
            (json!({"ref": {"tag": "v1"}}), ".: url is required"),
            (json!({"url": "oci://r.io/a", "urll": "x"}), ".urll: unknown field"),
            (json!({"url": 5}), ".url: must be string, not integer"),
            (json!({"url": "oci://r.io/a", "ref": "v1"}), ".ref: must be object, not string"),
            (
                json!({"url": "oci://r.io/a", "verify": {"transparencyLog": "Sometimes"}}),
                ".verify.transparencyLog: \"Sometimes\" is not one of",
            ),
            (
                json!({"url": "oci://r.io/a", "verify": {"keys": {"secretRef": {}}}}),
                ".verify.keys.secretRef: name is required",
            ),
        ];
        for (spec, want) in cases {
            let e = errors(spec.clone());
            assert!(e.iter().any(|m| m.starts_with(want)), "{spec}: {e:?}");
        }
    }
}
