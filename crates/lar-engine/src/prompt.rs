//! The model as the engine's callers see it ([`ModelInfo`]): its tokenizer, context length, chat template and
//! device, and the rendering of a conversation into prompt tokens. Shared by every [`crate::EngineHandle`] clone;
//! nothing here touches the forward pass.

use std::sync::Arc;

use lar_tokenizer::{ChatTemplate, Tokenizer};
use lar_types::{ChatMessage, Role, Tool};

use crate::{Error, Result};

pub struct ModelInfo {
    pub tokenizer: Arc<Tokenizer>,
    /// Context length per sequence.
    pub ctx: usize,
    /// Vocabulary size of the model's output.
    pub n_vocab: usize,
    /// The model's own chat template (GGUF `tokenizer.chat_template`), if it has one.
    pub template: Option<String>,
    /// Where the forward pass runs (`cpu`, `cuda:0`, `candle-cpu`).
    pub device: String,
    /// The LoRA adapters loaded with the model, by id (a request's [`lar_models::LoraSlot::id`]).
    pub loras: Vec<String>,
}

impl ModelInfo {
    /// The id of the adapter named `name`.
    pub fn lora_id(&self, name: &str) -> Option<u32> {
        self.loras.iter().position(|n| n == name).map(|i| i as u32)
    }
}

impl ModelInfo {
    /// Renders `messages` with `template` (a built-in name or Jinja source) or the model's own, and tokenizes the
    /// result with special tokens parsed. BOS is added when the model wants one and the template did not write it.
    pub fn chat_tokens(
        &self,
        messages: &[ChatMessage],
        template: Option<&str>,
    ) -> Result<Vec<u32>> {
        self.chat_tokens_with_tools(messages, &[], template)
    }

    /// The template that renders a conversation: `template` (a built-in name or Jinja source) or the model's own.
    pub fn template_source(&self, template: Option<&str>) -> Result<String> {
        let spec = template
            .or(self.template.as_deref())
            .ok_or(Error::NoTemplate)?;
        Ok(ChatTemplate::new(spec)?.source)
    }

    /// The text the template renders for `messages` and `tools`, the assistant's turn opened (llama-server's
    /// `/apply-template`).
    pub fn chat_text(
        &self,
        messages: &[ChatMessage],
        tools: &[Tool],
        template: Option<&str>,
    ) -> Result<String> {
        self.chat_text_thinking(messages, tools, template, None)
    }

    /// [`ModelInfo::chat_text`] with the template's `enable_thinking` set (reasoning models' templates read it).
    pub fn chat_text_thinking(
        &self,
        messages: &[ChatMessage],
        tools: &[Tool],
        template: Option<&str>,
        thinking: Option<bool>,
    ) -> Result<String> {
        let spec = template
            .or(self.template.as_deref())
            .ok_or(Error::NoTemplate)?;
        let t = ChatTemplate::new(spec)?;
        let tok = &self.tokenizer;
        let tok_text = |id: Option<u32>| id.map(|i| tok.decode(&[i], true)).unwrap_or_default();
        let (bos, eos) = (tok_text(tok.vocab.bos), tok_text(tok.vocab.eos));
        Ok(t.render_with_tools(messages, tools, true, &bos, &eos, thinking)?)
    }

    /// [`ModelInfo::chat_tokens`] with the tools the model may call, rendered by the template.
    pub fn chat_tokens_with_tools(
        &self,
        messages: &[ChatMessage],
        tools: &[Tool],
        template: Option<&str>,
    ) -> Result<Vec<u32>> {
        self.chat_prompt(messages, tools, template, None)
    }

    /// The prompt tokens of [`ModelInfo::chat_text_thinking`].
    pub fn chat_prompt(
        &self,
        messages: &[ChatMessage],
        tools: &[Tool],
        template: Option<&str>,
        thinking: Option<bool>,
    ) -> Result<Vec<u32>> {
        Ok(self
            .chat_prompt_text(messages, tools, template, thinking)?
            .1)
    }

    /// [`ModelInfo::chat_prompt`] with the text it tokenized.
    pub fn chat_prompt_text(
        &self,
        messages: &[ChatMessage],
        tools: &[Tool],
        template: Option<&str>,
        thinking: Option<bool>,
    ) -> Result<(String, Vec<u32>)> {
        let text = self.chat_text_thinking(messages, tools, template, thinking)?;
        let tok = &self.tokenizer;
        let mut ids = tok.encode(&text, false, true);
        if let Some(b) = tok.vocab.bos
            && tok.vocab.add_bos
            && ids.first() != Some(&b)
        {
            ids.insert(0, b);
        }
        Ok((text, ids))
    }

    /// [`ModelInfo::chat_tokens`] for a conversation that may have outgrown the context: drops the oldest messages
    /// (never a leading system message, never the last message) until the prompt leaves `reserve` tokens of the
    /// context free for the answer. Returns the tokens and how many messages were dropped. If even the system
    /// message and the last message do not fit, the tokens are returned as they are and submitting them fails.
    pub fn chat_tokens_fitting(
        &self,
        messages: &[ChatMessage],
        template: Option<&str>,
        reserve: usize,
    ) -> Result<(Vec<u32>, usize)> {
        let keep = usize::from(messages.first().is_some_and(|m| m.role == Role::System));
        let mut dropped = 0;
        loop {
            let msgs: Vec<ChatMessage> = messages[..keep]
                .iter()
                .chain(&messages[keep + dropped..])
                .cloned()
                .collect();
            let ids = self.chat_tokens(&msgs, template)?;
            if ids.len() + reserve <= self.ctx || keep + dropped + 1 >= messages.len() {
                return Ok((ids, dropped));
            }
            dropped += 1;
        }
    }
}
