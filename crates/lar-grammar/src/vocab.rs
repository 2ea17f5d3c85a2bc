//! The model's vocabulary as the grammar engine sees it: every token id's bytes (control tokens marked with
//! toktrie's special-token byte, so a Lark grammar can name `<|im_end|>`), the end-of-generation tokens, and the
//! llguidance parser factory built on them once per model (its token trie and the slices that make masks fast).

use std::sync::Arc;

use lar_tokenizer::Tokenizer;
use lar_tokenizer::vocab::{Model, TokenType};
use llguidance::ParserFactory;
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};

use crate::constraint::{Constraint, Grammar};
use crate::{Error, Result, guarded};

/// The grammar engine's view of one model's tokenizer; build it once per loaded model (it takes a moment on a
/// 150k-token vocabulary) and compile every request's constraint with it.
pub struct Vocabulary {
    factory: ParserFactory,
    tokenizer: Arc<Tokenizer>,
    eos: u32,
    eog: Arc<[u32]>,
    /// Tokens that are only whitespace.
    space: Arc<[u32]>,
}

/// What llguidance asks of a tokenizer: the trie, and tokenizing bytes (for forced text and lexemes).
struct Env {
    tokenizer: Arc<Tokenizer>,
    trie: TokTrie,
}

impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        if let Ok(text) = std::str::from_utf8(s) {
            let ids = self.tokenizer.encode(text, false, false);
            // Only a tokenization that gives the same bytes back (no unknown token in it).
            if self.trie.decode_raw(&ids) == s {
                return ids;
            }
        }
        // Not text (a prefix cut inside a character), or not all the tokenizer can say: the trie's longest tokens.
        self.trie.greedy_tokenize(s)
    }

    /// Byte-level BPE tokenizes any bytes the way the model was trained on them; a word vocabulary without byte
    /// fallback does not, and then the grammar engine must not predict tokens from a tokenization of text.
    fn tokenize_is_canonical(&self) -> bool {
        matches!(
            self.tokenizer.vocab.model,
            Model::Bpe { .. } | Model::Hf { byte_level: true }
        )
    }
}

impl Vocabulary {
    /// The vocabulary of `tokenizer`, for a model whose logits rows are `n_logits` long (rows can be longer than
    /// the tokenizer's vocabulary: those padding ids are never allowed).
    pub fn new(tokenizer: Arc<Tokenizer>, n_logits: usize) -> Result<Self> {
        let v = &tokenizer.vocab;
        let eos = v
            .eos
            .or_else(|| v.eog.first().copied())
            .ok_or_else(|| Error::Vocabulary("it has no end-of-sequence token".into()))?;
        let mut eog: Vec<u32> = v.eog.clone();
        if !eog.contains(&eos) {
            eog.push(eos);
        }
        let n = v.len().max(n_logits);
        let words: Vec<Vec<u8>> = (0..n)
            .map(|id| match v.types.get(id) {
                Some(TokenType::Control) => {
                    let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    w.extend_from_slice(v.tokens[id].as_bytes());
                    w
                }
                Some(TokenType::Unknown | TokenType::Unused) | None => Vec::new(),
                Some(_) => tokenizer.token_bytes(id as u32, false),
            })
            .collect();
        let space: Arc<[u32]> = (0..words.len())
            .filter(|&id| {
                v.types.get(id) != Some(&TokenType::Control)
                    && !words[id].is_empty()
                    && words[id].iter().all(u8::is_ascii_whitespace)
            })
            .map(|id| id as u32)
            .collect();
        let mut info = TokRxInfo::new(n as u32, eos);
        info.tok_bos = v.bos;
        info.tok_unk = v.unk;
        let for_env = tokenizer.clone();
        let factory = guarded("the vocabulary", || {
            let trie = TokTrie::from(&info, &words);
            let env: TokEnv = Arc::new(Env {
                tokenizer: for_env,
                trie,
            });
            let mut f =
                ParserFactory::new_simple(&env).map_err(|e| Error::Vocabulary(e.to_string()))?;
            // Warnings and errors come back to the caller; nothing to stderr.
            f.quiet();
            Ok(f)
        })?;
        Ok(Self {
            factory,
            tokenizer,
            eos,
            eog: eog.into(),
            space,
        })
    }

    /// Compiles `c` for one request; a construct the grammar engine cannot enforce is [`Error::Unsupported`].
    pub fn compile(&self, c: &Constraint) -> Result<Grammar> {
        let top: TopLevelGrammar = c.to_llguidance()?;
        guarded("this grammar", || {
            let parser = self
                .factory
                .create_parser(top)
                .map_err(|e| Error::Unsupported(e.to_string()))?;
            let mut matcher = llguidance::Matcher::new(Ok(parser));
            // A format this vocabulary cannot even start would end every answer at once: refused here instead.
            let cannot = || {
                Error::Unsupported(
                    "no token of this model's vocabulary can start this format".into(),
                )
            };
            let first = matcher.compute_mask().map_err(|_| cannot())?;
            if first.is_zero() {
                return Err(cannot());
            }
            Ok(Grammar::new(matcher, self.eos, self.eog.clone()))
        })
    }

    /// The token trie and tokenizer the grammars use.
    pub(crate) fn env(&self) -> &TokEnv {
        self.factory.tok_env()
    }

    /// The id of the control token whose text is `text` (`[TOOL_CALLS]`, `<|python_tag|>`), if there is one.
    pub fn control_token(&self, text: &str) -> Option<u32> {
        let v = &self.tokenizer.vocab;
        v.id(text)
            .filter(|&id| v.types.get(id as usize) == Some(&TokenType::Control))
    }

    /// Tokens whose text is only whitespace.
    pub fn space(&self) -> &[u32] {
        &self.space
    }

    /// Tokens that end a generation (the grammar's end of sequence is any of them).
    pub fn eog(&self) -> &[u32] {
        &self.eog
    }

    /// Tokens in the model's vocabulary.
    pub fn len(&self) -> usize {
        self.factory.tok_env().tok_trie().vocab_size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
