//! JSON-schema helpers shared by every backend.

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Longest string the grammar lets the model write when a schema sets no `maxLength`.
/// Without a cap, small models can loop inside a string until the token budget runs out.
pub const DEFAULT_MAX_STRING: u64 = 400;
/// Most array items when a schema sets no `maxItems`, for the same reason.
pub const DEFAULT_MAX_ITEMS: u64 = 32;

/// A copy of `schema` in which every unbounded string and array gets a cap.
pub fn prepare_schema(schema: &Value) -> Value {
    let mut schema = schema.clone();
    cap(&mut schema);
    schema
}

fn cap(value: &mut Value) {
    match value {
        Value::Object(map) => {
            cap_object(map);
            for child in map.values_mut() {
                cap(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(cap),
        _ => {}
    }
}

fn cap_object(map: &mut Map<String, Value>) {
    let is_type = |map: &Map<String, Value>, want: &str| match map.get("type") {
        Some(Value::String(t)) => t == want,
        Some(Value::Array(ts)) => ts.iter().any(|t| t == want),
        _ => false,
    };
    let constrained = ["enum", "const", "pattern", "format"]
        .iter()
        .any(|k| map.contains_key(*k));
    if is_type(map, "string") && !constrained && !map.contains_key("maxLength") {
        map.insert("maxLength".into(), DEFAULT_MAX_STRING.into());
    }
    if is_type(map, "array") && !map.contains_key("maxItems") {
        map.insert("maxItems".into(), DEFAULT_MAX_ITEMS.into());
    }
}

/// Check that `text` is exactly one JSON value valid against `schema`.
pub fn validate_against(schema: &Value, text: &str) -> Result<Value> {
    let value: Value = serde_json::from_str(text.trim())
        .map_err(|e| Error::SchemaViolation(format!("not valid JSON ({e}): {}", clip(text))))?;
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| Error::Schema(format!("invalid schema: {e}")))?;
    let problems: Vec<String> = validator
        .iter_errors(&value)
        .take(3)
        .map(|e| format!("at `{}`: {e}", e.instance_path()))
        .collect();
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(Error::SchemaViolation(problems.join("; ")))
    }
}

fn clip(text: &str) -> String {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unbounded_strings_and_arrays_get_caps() {
        let schema = json!({
            "type": "object",
            "properties": {
                "a": {"type": "string"},
                "b": {"type": "string", "maxLength": 5},
                "c": {"type": "string", "enum": ["x", "y"]},
                "d": {"type": "array", "items": {"type": "string"}}
            }
        });
        let capped = prepare_schema(&schema);
        assert_eq!(capped["properties"]["a"]["maxLength"], DEFAULT_MAX_STRING);
        assert_eq!(capped["properties"]["b"]["maxLength"], 5);
        assert!(capped["properties"]["c"].get("maxLength").is_none());
        assert_eq!(capped["properties"]["d"]["maxItems"], DEFAULT_MAX_ITEMS);
        assert_eq!(
            capped["properties"]["d"]["items"]["maxLength"],
            DEFAULT_MAX_STRING
        );
    }

    #[test]
    fn validation_reports_where_and_why() {
        let schema =
            json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
        assert!(validate_against(&schema, r#" {"n": 3} "#).is_ok());
        let err = validate_against(&schema, r#"{"n": "three"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/n"), "{err}");
        let err = validate_against(&schema, r#"{"n": 3"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not valid JSON"), "{err}");
    }
}
