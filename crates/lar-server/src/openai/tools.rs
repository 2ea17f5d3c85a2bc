//! OpenAI's tools in a chat request (`tools`, `tool_choice`, `parallel_tool_calls`; assistant `tool_calls` and
//! `tool` messages in the history) and the calls in its answer (`message.tool_calls`, or `delta.tool_calls`
//! chunks: the first fragment of a call carries its `id`, `type`, `function.name` and empty `arguments`, the next
//! the arguments).

use lar_grammar::tools::ToolChoice;
use lar_types::{Tool, ToolCall};
use serde_json::{Map, Value, json};

use crate::body::kind;
use crate::error::{ApiError, ApiResult};

/// The tools a request offers and how it lets the model use them.
pub struct ToolSpec {
    pub tools: Vec<Tool>,
    pub choice: ToolChoice,
    pub parallel: bool,
}

/// `tools`, `tool_choice` and `parallel_tool_calls` of a chat request; `None` when it offers no tools.
pub fn spec(obj: &Map<String, Value>) -> ApiResult<Option<ToolSpec>> {
    let tools = match obj.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, t)| tool(t, &format!("tools[{i}]")))
            .collect::<ApiResult<_>>()?,
        Some(v) => {
            return Err(ApiError::field(
                "tools",
                format!("tools must be an array, not {}", kind(v)),
            ));
        }
    };
    for (i, t) in tools.iter().enumerate() {
        if tools[..i].iter().any(|u| u.name == t.name) {
            return Err(ApiError::field(
                &format!("tools[{i}].function.name"),
                format!("two tools are named '{}'", t.name),
            ));
        }
    }
    let parallel = match obj.get("parallel_tool_calls") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(ApiError::field(
                "parallel_tool_calls",
                format!("parallel_tool_calls must be a boolean, not {}", kind(v)),
            ));
        }
    };
    let choice = match obj.get("tool_choice") {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(ApiError::field(
                    "tool_choice",
                    format!(
                        "tool_choice must be auto, none, required or a function (got '{other}')"
                    ),
                ));
            }
        },
        Some(Value::Object(o)) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|_| o.get("type").and_then(Value::as_str) == Some("function"))
                .ok_or_else(|| {
                    ApiError::field(
                        "tool_choice",
                        "tool_choice must be {\"type\": \"function\", \"function\": {\"name\": ...}}",
                    )
                })?;
            if !tools.iter().any(|t| t.name == name) {
                return Err(ApiError::field(
                    "tool_choice",
                    format!("tool_choice names '{name}', which is not among the tools"),
                ));
            }
            ToolChoice::Function(name.to_string())
        }
        Some(v) => {
            return Err(ApiError::field(
                "tool_choice",
                format!("tool_choice must be a string or an object, not {}", kind(v)),
            ));
        }
    };
    if tools.is_empty() {
        if obj.get("tool_choice").is_some_and(|v| !v.is_null()) && choice != ToolChoice::None {
            return Err(ApiError::field(
                "tool_choice",
                "tool_choice needs tools to choose from",
            ));
        }
        return Ok(None);
    }
    Ok(Some(ToolSpec {
        tools,
        choice,
        parallel,
    }))
}

/// One entry of `tools`: `{"type": "function", "function": {name, description, parameters, strict}}`.
fn tool(v: &Value, at: &str) -> ApiResult<Tool> {
    let o = v
        .as_object()
        .ok_or_else(|| ApiError::field(at, format!("{at} must be an object, not {}", kind(v))))?;
    if let Some(k) = o
        .keys()
        .find(|k| !["type", "function"].contains(&k.as_str()))
    {
        return Err(ApiError::field(
            &format!("{at}.{k}"),
            format!("{at}: unknown field '{k}'"),
        ));
    }
    match o.get("type").and_then(Value::as_str) {
        Some("function") => {}
        other => {
            return Err(ApiError::field(
                &format!("{at}.type"),
                format!("{at}.type must be \"function\" (got {other:?})"),
            ));
        }
    }
    let f = o
        .get("function")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            ApiError::field(
                &format!("{at}.function"),
                format!("{at}.function must be an object"),
            )
        })?;
    function(f, &format!("{at}.function"))
}

/// `{name, description, parameters, strict}`, the function of a tool (OpenAI's and Ollama's shape).
pub fn function(f: &Map<String, Value>, at: &str) -> ApiResult<Tool> {
    if let Some(k) = f
        .keys()
        .find(|k| !["name", "description", "parameters", "strict"].contains(&k.as_str()))
    {
        return Err(ApiError::field(
            &format!("{at}.{k}"),
            format!("{at}: unknown field '{k}'"),
        ));
    }
    let name = match f.get("name") {
        Some(Value::String(n)) if valid_name(n) => n.clone(),
        Some(Value::String(n)) => {
            return Err(ApiError::field(
                &format!("{at}.name"),
                format!("{at}.name '{n}' must be 1 to 64 letters, digits, '_', '.' or '-'"),
            ));
        }
        _ => {
            return Err(ApiError::field(
                &format!("{at}.name"),
                format!("{at}.name is required: every tool needs a name"),
            ));
        }
    };
    let description = match f.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(v) => {
            return Err(ApiError::field(
                &format!("{at}.description"),
                format!("{at}.description must be a string, not {}", kind(v)),
            ));
        }
    };
    let parameters = match f.get("parameters") {
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(v) => {
            return Err(ApiError::field(
                &format!("{at}.parameters"),
                format!(
                    "{at}.parameters must be a JSON schema object, not {}",
                    kind(v)
                ),
            ));
        }
    };
    Ok(Tool {
        name,
        description,
        parameters,
    })
}

fn valid_name(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// An assistant message's `tool_calls` (`{id, type, function: {name, arguments}}`, the arguments a JSON string).
pub fn calls_in(v: &Value, at: &str) -> ApiResult<Vec<ToolCall>> {
    let a = v
        .as_array()
        .ok_or_else(|| ApiError::field(at, format!("{at} must be an array, not {}", kind(v))))?;
    let mut out = Vec::with_capacity(a.len());
    for (j, c) in a.iter().enumerate() {
        let at = format!("{at}[{j}]");
        let id = c.get("id").and_then(Value::as_str);
        let f = c.get("function");
        let name = f.and_then(|f| f.get("name")).and_then(Value::as_str);
        let (Some(id), Some(name)) = (id, name) else {
            return Err(ApiError::field(
                &at,
                format!("{at} needs an id and function.name"),
            ));
        };
        let arguments = match f.and_then(|f| f.get("arguments")) {
            None | Some(Value::Null) => json!({}),
            Some(Value::String(s)) => serde_json::from_str(s).map_err(|e| {
                ApiError::field(
                    &format!("{at}.function.arguments"),
                    format!("{at}.function.arguments is not JSON: {e}"),
                )
            })?,
            Some(o @ Value::Object(_)) => o.clone(),
            Some(v) => {
                return Err(ApiError::field(
                    &format!("{at}.function.arguments"),
                    format!(
                        "{at}.function.arguments must be a JSON string, not {}",
                        kind(v)
                    ),
                ));
            }
        };
        out.push(ToolCall {
            id: id.to_string(),
            name: name.to_string(),
            arguments,
        });
    }
    Ok(out)
}

/// A call as OpenAI writes it in a message (`arguments` as a JSON string).
pub fn call_json(c: &ToolCall) -> Value {
    json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments.to_string()}})
}

/// A call as stream fragments at `index`: its head (id, type, name, empty arguments), then its arguments.
pub fn call_deltas(index: usize, c: &ToolCall) -> [Value; 2] {
    [
        json!([{"index": index, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}}]),
        json!([{"index": index, "function": {"arguments": c.arguments.to_string()}}]),
    ]
}
