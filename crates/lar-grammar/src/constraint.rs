//! What a request asks its output to match ([`Constraint`]) and that constraint compiled for one model
//! ([`Grammar`]), from which every sequence of the request takes its own [`GrammarMask`].

use std::sync::Arc;

use llguidance::Matcher;
use llguidance::api::TopLevelGrammar;
use serde_json::{Value, json};

use crate::mask::GrammarMask;
use crate::{Error, Result};
use lar_types::json_kind as kind;

/// A request's constraint on its output.
#[derive(Clone, Debug, PartialEq)]
pub enum Constraint {
    /// Any JSON object (OpenAI's `json_object`, Ollama's `format: "json"`).
    JsonObject,
    /// A value that validates against this JSON schema (an object, or `true`).
    JsonSchema(Value),
    /// Text that matches this regular expression, whole.
    Regex(String),
    /// Text in the language of this Lark grammar (llguidance's dialect: `%json {...}` embeds a schema).
    Lark(String),
}

/// How JSON is written: compact but readable separators, no free whitespace (a small model given free
/// whitespace can pad forever), as OpenAI's structured outputs look.
fn json_options() -> Value {
    json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "})
}

impl Constraint {
    /// A JSON schema, checked for shape: an object, or `true` (anything).
    pub fn schema(schema: Value) -> Result<Self> {
        match schema {
            Value::Bool(true) => Ok(Self::JsonSchema(json!({}))),
            Value::Bool(false) => Err(Error::Unsupported(
                "the schema `false` accepts no value at all".into(),
            )),
            Value::Object(_) => Ok(Self::JsonSchema(schema)),
            other => Err(Error::Unsupported(format!(
                "a JSON schema is an object (or true), not {}",
                kind(&other)
            ))),
        }
    }

    pub(crate) fn to_llguidance(&self) -> Result<TopLevelGrammar> {
        Ok(match self {
            Self::JsonObject => {
                TopLevelGrammar::from_json_schema(with_options(json!({"type": "object"})))
            }
            Self::JsonSchema(s) => match s {
                Value::Object(_) => TopLevelGrammar::from_json_schema(with_options(s.clone())),
                other => return Self::schema(other.clone())?.to_llguidance(),
            },
            Self::Regex(rx) => TopLevelGrammar::from_regex(rx),
            Self::Lark(g) => TopLevelGrammar::from_lark(g.clone()),
        })
    }
}

/// Closes every object schema that lists `properties` but does not say whether others are allowed, as llama.cpp
/// does: the output still validates against the schema as given, and a small model cannot wander off into
/// properties nobody asked for.
pub(crate) fn close_objects(schema: &mut Value) {
    let Some(o) = schema.as_object_mut() else {
        return;
    };
    if o.contains_key("properties") && !o.contains_key("additionalProperties") {
        o.insert("additionalProperties".into(), Value::Bool(false));
    }
    for (k, v) in o.iter_mut() {
        match k.as_str() {
            "properties" | "$defs" | "definitions" | "patternProperties" => {
                if let Some(m) = v.as_object_mut() {
                    m.values_mut().for_each(close_objects);
                }
            }
            "anyOf" | "allOf" | "oneOf" | "prefixItems" => {
                if let Some(a) = v.as_array_mut() {
                    a.iter_mut().for_each(close_objects);
                }
            }
            "items" | "additionalProperties" | "additionalItems" => close_objects(v),
            _ => {}
        }
    }
}

/// The schema with our JSON layout, unless it names llguidance options of its own (`x-guidance`).
fn with_options(mut schema: Value) -> Value {
    close_objects(&mut schema);
    if let Some(o) = schema.as_object_mut()
        && !o.contains_key("x-guidance")
    {
        o.insert("x-guidance".into(), json_options());
    }
    schema
}

/// A constraint compiled for one model: clone a [`GrammarMask`] from it for each sequence.
pub struct Grammar {
    matcher: Matcher,
    eos: u32,
    eog: Arc<[u32]>,
}

impl Grammar {
    pub(crate) fn new(matcher: Matcher, eos: u32, eog: Arc<[u32]>) -> Self {
        Self { matcher, eos, eog }
    }

    /// A fresh mask at the grammar's start, for one sequence.
    pub fn mask(&self) -> GrammarMask {
        GrammarMask::new(self.matcher.deep_clone(), self.eos, self.eog.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_that_list_properties_are_closed_unless_they_say() {
        let mut s = json!({"type": "object", "properties": {
            "a": {"type": "object", "properties": {"b": {"type": "string"}}},
            "c": {"type": "array", "items": {"properties": {"d": {}}}},
            "e": {"type": "object", "properties": {}, "additionalProperties": true},
            "f": {"anyOf": [{"properties": {}}, {"type": "string"}]}}});
        close_objects(&mut s);
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["properties"]["a"]["additionalProperties"], false);
        assert_eq!(s["properties"]["c"]["items"]["additionalProperties"], false);
        assert_eq!(s["properties"]["e"]["additionalProperties"], true);
        assert_eq!(
            s["properties"]["f"]["anyOf"][0]["additionalProperties"],
            false
        );
        assert!(
            s["properties"]["f"]["anyOf"][1]
                .get("additionalProperties")
                .is_none()
        );
        let mut any = json!({"type": "object"});
        close_objects(&mut any);
        assert!(
            any.get("additionalProperties").is_none(),
            "no properties listed: any object"
        );
    }
}
