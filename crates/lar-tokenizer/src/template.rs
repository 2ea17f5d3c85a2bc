//! Chat templates: the model's own Jinja template (GGUF `tokenizer.chat_template`, or `tokenizer_config.json`)
//! rendered with minijinja and its Python-compatibility methods (`.strip()`, `.startswith()`, ...), or a built-in
//! template chosen by name with `--template`.

use lar_types::{ChatMessage, Tool};
use minijinja::{Environment, Value, context};

use crate::{Error, Result};

/// Built-in templates, for models that ship none or to override one.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "chatml",
        "{% for m in messages %}{{ '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' }}{% endfor %}\
         {% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
    ),
    (
        "gemma",
        "{{ bos_token }}{% if messages and messages[0].role == 'system' %}{% set sys = messages[0].content + '\n\n' %}\
         {% set msgs = messages[1:] %}{% else %}{% set sys = '' %}{% set msgs = messages %}{% endif %}\
         {% for m in msgs %}{% set role = 'model' if m.role == 'assistant' else 'user' %}\
         {{ '<start_of_turn>' + role + '\n' + (sys if loop.first else '') + m.content | trim + '<end_of_turn>\n' }}\
         {% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}",
    ),
    (
        "llama3",
        "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m.role + '<|end_header_id|>\n\n' + m.content | trim + '<|eot_id|>' }}\
         {% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
    ),
];

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    pub source: String,
}

impl ChatTemplate {
    /// `spec` is a built-in name or Jinja source.
    pub fn new(spec: &str) -> Result<Self> {
        let source = BUILTIN
            .iter()
            .find(|(n, _)| *n == spec)
            .map_or(spec, |(_, s)| s)
            .to_string();
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        minijinja_contrib::add_to_environment(&mut env);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<Value, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_template_owned("chat", source.clone())
            .map_err(|e| Error::Template(e.to_string()))?;
        Ok(Self { env, source })
    }

    /// Renders the conversation; `add_generation_prompt` opens the assistant's turn.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        bos: &str,
        eos: &str,
    ) -> Result<String> {
        self.render_with_tools(messages, &[], add_generation_prompt, bos, eos, None)
    }

    /// [`ChatTemplate::render`] with the tools the model may call, as Hugging Face templates take them
    /// (`tools`: `{"type": "function", "function": {name, description, parameters}}`; an assistant message's
    /// `tool_calls`: `{id, type, function: {name, arguments}}` with the arguments as an object).
    /// `enable_thinking` is passed to templates of reasoning models that read it (Qwen3: `false` writes an empty
    /// thinking block so the model answers at once); `None` leaves it undefined.
    pub fn render_with_tools(
        &self,
        messages: &[ChatMessage],
        tools: &[Tool],
        add_generation_prompt: bool,
        bos: &str,
        eos: &str,
        enable_thinking: Option<bool>,
    ) -> Result<String> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| Error::Template(e.to_string()))?;
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| {
                let calls: Vec<Value> = m
                    .tool_calls
                    .iter()
                    .map(|c| {
                        context! { id => c.id.clone(), type => "function", function => context! {
                            name => c.name.clone(), arguments => Value::from_serialize(&c.arguments) } }
                    })
                    .collect();
                let calls = (!calls.is_empty()).then_some(calls);
                context! { role => m.role.as_str(), content => m.content.clone(),
                    tool_call_id => m.tool_call_id.clone(), name => m.name.clone(), tool_calls => calls }
            })
            .collect();
        let tools: Option<Vec<Value>> = (!tools.is_empty()).then(|| {
            tools
                .iter()
                .map(|t| {
                    Value::from_serialize(serde_json::json!({"type": "function", "function": t}))
                })
                .collect()
        });
        let thinking = enable_thinking.map_or(Value::UNDEFINED, Value::from);
        tmpl.render(context! {
            messages => msgs,
            tools => tools,
            add_generation_prompt => add_generation_prompt,
            bos_token => bos,
            eos_token => eos,
            enable_thinking => thinking,
        })
        .map_err(|e| Error::Template(format!("{e:#}")))
    }

    /// Whether the template renders a `tools` list (it mentions `tools` at all).
    pub fn knows_tools(&self) -> bool {
        self.source.contains("tools")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lar_types::Role;

    #[test]
    fn chatml_renders_roles_and_generation_prompt() {
        let t = ChatTemplate::new("chatml").unwrap();
        let s = t
            .render(
                &[
                    ChatMessage::new(Role::System, "Be brief."),
                    ChatMessage::new(Role::User, "Hi"),
                ],
                true,
                "",
                "",
            )
            .unwrap();
        assert_eq!(
            s,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn gemma_folds_the_system_prompt_into_the_first_user_turn() {
        let t = ChatTemplate::new("gemma").unwrap();
        let s = t
            .render(
                &[
                    ChatMessage::new(Role::System, "Be brief."),
                    ChatMessage::new(Role::User, "Hi"),
                ],
                true,
                "<bos>",
                "",
            )
            .unwrap();
        assert_eq!(
            s,
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    #[test]
    fn python_methods_and_raise_exception_work() {
        let t = ChatTemplate::new("{% if messages[0].content.strip().startswith('x') %}{{ raise_exception('no x') }}{% endif %}ok").unwrap();
        assert_eq!(
            t.render(&[ChatMessage::new(Role::User, " y ")], false, "", "")
                .unwrap(),
            "ok"
        );
        let err = t
            .render(&[ChatMessage::new(Role::User, " x ")], false, "", "")
            .unwrap_err();
        assert!(err.to_string().contains("no x"), "{err}");
    }
}
