//! The JSON Schema of `gateway.yaml` (`portcullis schema`, `docs/gateway.schema.json`), derived
//! from the raw types the loader deserializes ([`super::raw`]), so what the schema accepts and
//! what loads cannot drift apart; the hand-written parts are the scalar types with their own
//! parsers (durations, sizes) and ordered maps.

use super::raw::{ByteSize, OrderedMap, RawConfig, RawDuration};

impl<V: schemars::JsonSchema> schemars::JsonSchema for OrderedMap<V> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Map_of_{}", V::schema_name()).into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "additionalProperties": generator.subschema_for::<V>(),
        })
    }
}

impl schemars::JsonSchema for RawDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Seconds, or a duration such as `30s`, `5m`, `500ms`, `1h 30m`.",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "minLength": 1 },
            ],
        })
    }
}

impl schemars::JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Bytes, or a size such as `4MiB`, `512KiB`.",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "minLength": 1 },
            ],
        })
    }
}

/// The JSON Schema of `gateway.yaml` (draft 2020-12), from the same types the loader reads,
/// so it cannot drift from what loads (`portcullis schema`; editors: the
/// `# yaml-language-server: $schema=...` line of the shipped files).
pub fn json_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(RawConfig);
    schema.insert(
        "$id".into(),
        "https://github.com/portcullis-gateway/portcullis/schema/gateway.schema.json".into(),
    );
    schema.insert("title".into(), "Portcullis gateway.yaml".into());
    let mut value = schema.to_value();
    allow_variables(&mut value);
    if let Some(defs) = value
        .get_mut("$defs")
        .and_then(serde_json::Value::as_object_mut)
    {
        defs.insert(
            "Variable".into(),
            serde_json::json!({
                "description": "`${VAR}` or `${VAR:-default}`, substituted when the file loads.",
                "type": "string",
                "pattern": "^\\$\\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\\}$",
            }),
        );
    }
    value
}

/// Numbers and booleans may be written as a `${VAR}` the loader substitutes: every schema that
/// asks for one also takes a [`Variable`](#/$defs/Variable) string.
fn allow_variables(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let scalar = |t: &Value| matches!(t.as_str(), Some("integer" | "number" | "boolean"));
            let asks = match map.get("type") {
                Some(Value::Array(ts)) => ts.iter().any(scalar),
                Some(t) => scalar(t),
                None => false,
            };
            for (_, child) in map.iter_mut() {
                allow_variables(child);
            }
            if asks {
                let mut inner = serde_json::Map::new();
                for key in ["type", "format", "minimum", "maximum", "enum"] {
                    if let Some(x) = map.remove(key) {
                        inner.insert(key.into(), x);
                    }
                }
                map.insert(
                    "anyOf".into(),
                    serde_json::json!([Value::Object(inner), { "$ref": "#/$defs/Variable" }]),
                );
            }
        }
        Value::Array(items) => items.iter_mut().for_each(allow_variables),
        _ => {}
    }
}
