//! The API reference of each kind, from its CRD's OpenAPI schema (which is
//! generated from the Rust types): every field with its type, default,
//! validation and description.

use std::fmt::Write as _;

use serde_json::Value;

pub(crate) fn page(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> String {
    let kind = &crd.spec.names.kind;
    let mut out = format!("# {kind}\n\n");
    for v in &crd.spec.versions {
        let _ = writeln!(
            out,
            "`apiVersion: {}/{}`, `kind: {kind}`, {}. Short names: {}.\n",
            crd.spec.group,
            v.name,
            if crd.spec.scope == "Namespaced" { "namespaced" } else { "cluster-scoped" },
            crd.spec
                .names
                .short_names
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let Some(schema) = v.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()) else { continue };
        let schema = serde_json::to_value(schema).unwrap_or_default();
        for part in ["spec", "status"] {
            let Some(s) = schema.pointer(&format!("/properties/{part}")) else { continue };
            let _ = writeln!(out, "## {part}\n");
            if let Some(d) = s.get("description").and_then(Value::as_str) {
                let _ = writeln!(out, "{}\n", super::cell(d));
            }
            out.push_str("| field | type | default | validation | description |\n| --- | --- | --- | --- | --- |\n");
            fields(&mut out, part, s, 0);
            out.push('\n');
        }
    }
    out
}

fn fields(out: &mut String, path: &str, schema: &Value, depth: usize) {
    if depth > 12 {
        return;
    }
    let required: Vec<&str> =
        schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let Some(props) = schema.get("properties").and_then(Value::as_object) else { return };
    for (name, s) in props {
        let field = format!("{path}.{name}");
        let _ = writeln!(
            out,
            "| `{field}` | {} | {} | {} | {} |",
            type_of(s),
            s.get("default").map(|d| format!("`{d}`")).unwrap_or_default(),
            validation(s, required.contains(&name.as_str())),
            super::cell(s.get("description").and_then(Value::as_str).unwrap_or_default()),
        );
        // an array's items are listed as `field[].x`
        match s.get("items") {
            Some(items) if s.get("type").and_then(Value::as_str) == Some("array") => {
                fields(out, &format!("{field}[]"), items, depth + 1);
            }
            _ => fields(out, &field, s, depth + 1),
        }
    }
}

fn type_of(s: &Value) -> String {
    let t = s.get("type").and_then(Value::as_str).unwrap_or(if s.get("x-kubernetes-int-or-string").is_some() {
        "integer or string"
    } else {
        "any"
    });
    match t {
        "array" => format!("array of {}", s.get("items").map_or_else(|| "any".to_string(), type_of)),
        "object" if s.get("additionalProperties").is_some() => "map".into(),
        t => t.to_string(),
    }
}

fn validation(s: &Value, required: bool) -> String {
    let mut v = Vec::new();
    if required {
        v.push("required".to_string());
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        v.push(format!(
            "one of {}",
            e.iter().map(|x| format!("`{}`", x.as_str().unwrap_or_default())).collect::<Vec<_>>().join(", ")
        ));
    }
    for (key, say) in [
        ("minimum", "≥"),
        ("maximum", "≤"),
        ("minLength", "length ≥"),
        ("maxLength", "length ≤"),
        ("minItems", "items ≥"),
        ("maxItems", "items ≤"),
    ] {
        if let Some(n) = s.get(key).and_then(Value::as_f64) {
            // integral bounds read as integers: `≥ 0`, not `≥ 0.0`
            v.push(if n.fract() == 0.0 { format!("{say} {}", n as i64) } else { format!("{say} {n}") });
        }
    }
    if let Some(p) = s.get("pattern").and_then(Value::as_str) {
        v.push(format!("pattern `{}`", p.replace('|', "\\|")));
    }
    v.join("; ")
}
