//! Which syntax a model family writes its tool calls in, told from its chat template, and for templates that
//! know no tools, the prompt that teaches the model ours (Hermes-style `<tool_call>` JSON).

use lar_types::{ChatMessage, Role, Tool};
use serde_json::json;

/// A family's tool-call syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolFormat {
    /// Qwen 2.5/3, Hermes and most fine-tunes: `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`.
    Hermes,
    /// Llama 3.x: `{"name": ..., "parameters": {...}}` (after `<|python_tag|>`, or alone), `;`-separated.
    Llama3,
    /// Mistral: `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`.
    Mistral,
    /// A template without tools: Lar writes the tools into the system prompt and asks for Hermes' syntax.
    Generic,
}

impl ToolFormat {
    /// The syntax the template `source` renders tool calls in.
    pub fn detect(source: &str) -> Self {
        if source.contains("<tool_call>") {
            Self::Hermes
        } else if source.contains("[TOOL_CALLS]") {
            Self::Mistral
        } else if source.contains("<|python_tag|>")
            || (source.contains("<|start_header_id|>") && source.contains("tools"))
        {
            Self::Llama3
        } else {
            Self::Generic
        }
    }

    /// Whether the template itself renders the tools (otherwise see [`generic_messages`]).
    pub fn renders_tools(self) -> bool {
        self != Self::Generic
    }

    /// The text that opens a call (for Mistral and Llama 3 a control token's text).
    pub fn open(self) -> &'static str {
        match self {
            Self::Hermes | Self::Generic => "<tool_call>",
            Self::Mistral => "[TOOL_CALLS]",
            Self::Llama3 => "<|python_tag|>",
        }
    }

    /// The key of a call's arguments.
    pub fn args_key(self) -> &'static str {
        match self {
            Self::Llama3 => "parameters",
            _ => "arguments",
        }
    }
}

/// The conversation for a template that knows no tools: the tools and the call syntax in the system message
/// (merged into the caller's, or a new one first), earlier calls written out in that syntax, tool results as
/// text the template can show.
pub fn generic_messages(messages: &[ChatMessage], tools: &[Tool]) -> Vec<ChatMessage> {
    let list: Vec<String> = tools
        .iter()
        .map(|t| json!({"type": "function", "function": t}).to_string())
        .collect();
    let instructions = format!(
        "# Tools\n\nYou may call one or more functions to assist with the user query. The functions:\n<tools>\n{}\n</tools>\n\n\
         To call a function, answer with a JSON object with its name and arguments within <tool_call></tool_call> tags:\n\
         <tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n</tool_call>",
        list.join("\n")
    );
    let mut out = Vec::with_capacity(messages.len() + 1);
    match messages.first() {
        Some(m) if m.role == Role::System => {
            out.push(ChatMessage::new(
                Role::System,
                format!("{}\n\n{instructions}", m.content),
            ));
        }
        _ => out.push(ChatMessage::new(Role::System, instructions)),
    }
    let skip = usize::from(messages.first().is_some_and(|m| m.role == Role::System));
    for m in &messages[skip..] {
        let mut m = m.clone();
        if !m.tool_calls.is_empty() {
            for c in std::mem::take(&mut m.tool_calls) {
                let call = json!({"name": c.name, "arguments": c.arguments});
                if !m.content.is_empty() {
                    m.content.push('\n');
                }
                m.content
                    .push_str(&format!("<tool_call>\n{call}\n</tool_call>"));
            }
        }
        if m.role == Role::Tool {
            let name = m.name.clone().unwrap_or_default();
            m.content = format!(
                "<tool_response name=\"{name}\">\n{}\n</tool_response>",
                m.content
            );
        }
        out.push(m);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_from_templates() {
        assert_eq!(
            ToolFormat::detect("{{ '<tool_call>' }}"),
            ToolFormat::Hermes
        );
        assert_eq!(
            ToolFormat::detect("[TOOL_CALLS] {{ x }}"),
            ToolFormat::Mistral
        );
        assert_eq!(ToolFormat::detect("<|python_tag|>"), ToolFormat::Llama3);
        assert_eq!(
            ToolFormat::detect("<|start_header_id|>{% if tools %}"),
            ToolFormat::Llama3
        );
        assert_eq!(ToolFormat::detect("<|im_start|>"), ToolFormat::Generic);
    }
}
