//! A SentencePiece-style `tokenizer.json` (Llama 2, Gemma: BPE over `▁`-joined text with `<0xXX>` byte fallback)
//! written as the `tokenizer.ggml.*` arrays llama.cpp's SentencePiece tokenizer reads (`tokenizer.ggml.model =
//! "llama"`): the pieces in id order, their types and their scores.
//!
//! llama.cpp's converter takes these from `tokenizer.model` (the SentencePiece protobuf), where a BPE model's
//! piece scores fall with the piece's id; here they come from `tokenizer.json` alone: normal pieces score
//! `-rank` in id order, byte pieces `0`, control and user-defined pieces `-1000`, and added tokens are typed as
//! the converter types them (control when flagged special or when they look it, `<unused…>` included;
//! user-defined otherwise, with `▁` written back as spaces). llama.cpp's SentencePiece tokenizer merges the
//! adjacent pair whose joined piece scores highest, which for these files is the order of `tokenizer.json`'s
//! `merges`, so a converted file tokenizes as the directory's own `tokenizer.json` does. (The scores are not
//! `tokenizer.model`'s to the digit: only their order among mergeable pieces matters to the tokenizer.)
//!
//! Only what llama.cpp's tokenizer can reproduce is accepted: the `▁` space replacement (with or without a
//! prepended `▁`, llama.cpp's `add_space_prefix`) and byte fallback; any other normalizer or pre-tokenizer is
//! refused by name.

use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::gguf::Value;
use crate::hf_export::{BYTE, CONTROL, NORMAL, UNUSED, USER_DEFINED, looks_special};

fn bad(msg: String) -> Error {
    Error::Unsupported(format!("tokenizer.json: {msg}"))
}

const SPACE: &str = "\u{2581}";

/// A `Replace` step that turns `from` into `to`.
fn replaces(step: &Json, from: &str, to: &str) -> bool {
    step["type"] == "Replace" && step["pattern"]["String"] == from && step["content"] == to
}

/// Whether a normalizer or pre-tokenizer step is `Prepend("▁")` or a Metaspace that prepends.
fn prepends(step: &Json) -> bool {
    (step["type"] == "Prepend" && step["prepend"] == SPACE)
        || (step["type"] == "Metaspace"
            && match step["prepend_scheme"].as_str() {
                Some(s) => s != "never",
                None => step["add_prefix_space"].as_bool().unwrap_or(true),
            })
}

/// The steps of a normalizer, pre-tokenizer or decoder: its own list if it is a `Sequence`, else itself.
fn steps(j: &Json) -> Vec<&Json> {
    match (
        j["type"].as_str(),
        j.get("normalizers")
            .or(j.get("pretokenizers"))
            .or(j.get("decoders")),
    ) {
        (Some("Sequence"), Some(Json::Array(list))) => list.iter().collect(),
        _ if j.is_null() => Vec::new(),
        _ => vec![j],
    }
}

/// Whether `tj` is a SentencePiece-style BPE, and if so whether llama.cpp must prepend a space
/// (`add_space_prefix`). `Ok(None)` for other tokenizers (byte-level BPE); an error for a SentencePiece-style
/// one whose normalizer or pre-tokenizer llama.cpp's tokenizer does not reproduce.
pub(crate) fn space_prefix(tj: &Json) -> Result<Option<bool>> {
    let model = &tj["model"];
    let metaspace_decoder = steps(&tj["decoder"])
        .iter()
        .any(|d| replaces(d, SPACE, " ") || d["type"] == "Metaspace");
    if model["type"] != "BPE" || model["byte_fallback"] != true || !metaspace_decoder {
        return Ok(None);
    }
    let mut prefix = false;
    let mut spaces_replaced = false;
    for n in steps(&tj["normalizer"]) {
        if replaces(n, " ", SPACE) {
            spaces_replaced = true;
        } else if prepends(n) {
            prefix = true;
        } else {
            return Err(bad(format!(
                "its normalizer step {n} is not one llama.cpp's SentencePiece tokenizer reproduces"
            )));
        }
    }
    for p in steps(&tj["pre_tokenizer"]) {
        let metaspace = p["type"] == "Metaspace" && p["replacement"] == SPACE;
        // Splitting on ' ' after spaces became '▁' splits nothing.
        let no_op_split = p["type"] == "Split" && p["pattern"]["String"] == " " && spaces_replaced;
        if metaspace && p["split"] != true {
            spaces_replaced = true;
            prefix |= prepends(p);
        } else if !no_op_split {
            return Err(bad(format!(
                "its pre-tokenizer step {p} is not one llama.cpp's SentencePiece tokenizer reproduces"
            )));
        }
    }
    if !spaces_replaced {
        return Err(bad(
            "a SentencePiece-style tokenizer that does not turn spaces into '▁' is not one llama.cpp reproduces"
                .into(),
        ));
    }
    Ok(Some(prefix))
}

/// `<0x00>` .. `<0xFF>`.
fn is_byte_piece(t: &str) -> bool {
    t.len() == 6
        && t.starts_with("<0x")
        && t.ends_with('>')
        && t[3..5].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The `tokenizer.ggml.*` vocabulary arrays of a SentencePiece-style `tokenizer.json` padded to `n` pieces:
/// model, pre-tokenizer name, tokens, scores, token types and `add_space_prefix`.
pub(crate) fn vocabulary(
    tj: &Json,
    n: usize,
    add_space_prefix: bool,
) -> Result<Vec<(String, Value)>> {
    let mut vocab: Vec<Option<(String, i32)>> = vec![None; n];
    let mut put = |id: u64, t: &str, ty: i32| -> Result<()> {
        let slot = usize::try_from(id)
            .ok()
            .and_then(|i| vocab.get_mut(i))
            .ok_or_else(|| {
                bad(format!(
                    "token '{t}' has id {id}, beyond the vocabulary of {n}"
                ))
            })?;
        *slot = Some((t.to_string(), ty));
        Ok(())
    };
    for (t, id) in tj["model"]["vocab"].as_object().into_iter().flatten() {
        let id = id
            .as_u64()
            .ok_or_else(|| bad(format!("token '{t}' has no id")))?;
        put(id, t, if is_byte_piece(t) { BYTE } else { NORMAL })?;
    }
    for a in tj["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(t)) = (a["id"].as_u64(), a["content"].as_str()) else {
            return Err(bad(format!("added token {a} has no id or content")));
        };
        if a["special"].as_bool().unwrap_or(false) || looks_special(t) {
            put(id, t, CONTROL)?;
        } else {
            // The converter's "pre-normalize user-defined spaces": llama.cpp matches these before normalizing.
            put(id, &t.replace(SPACE, " "), USER_DEFINED)?;
        }
    }
    let (mut tokens, mut scores, mut types) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut rank = 0f32;
    for (i, piece) in vocab.into_iter().enumerate() {
        let (t, ty) = piece.unwrap_or_else(|| (format!("[PAD{i}]"), UNUSED));
        let score = match ty {
            NORMAL => {
                rank += 1.0;
                1.0 - rank
            }
            BYTE => 0.0,
            _ => -1000.0,
        };
        tokens.push(Value::String(t));
        scores.push(Value::F32(score));
        types.push(Value::I32(ty));
    }
    Ok(vec![
        ("tokenizer.ggml.model".into(), Value::String("llama".into())),
        ("tokenizer.ggml.pre".into(), Value::String("default".into())),
        ("tokenizer.ggml.tokens".into(), Value::Array(tokens)),
        ("tokenizer.ggml.scores".into(), Value::Array(scores)),
        ("tokenizer.ggml.token_type".into(), Value::Array(types)),
        (
            "tokenizer.ggml.add_space_prefix".into(),
            Value::Bool(add_space_prefix),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tj(normalizer: Json, pre: Json) -> Json {
        json!({
            "normalizer": normalizer, "pre_tokenizer": pre,
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"}]},
            "model": {"type": "BPE", "byte_fallback": true,
                      "vocab": {"<unk>": 0, "<0x41>": 1, "a": 2, "b": 3, "ab": 4}, "merges": [["a", "b"]]},
            "added_tokens": [{"id": 0, "content": "<unk>", "special": true},
                             {"id": 6, "content": "\u{2581}\u{2581}", "special": false},
                             {"id": 7, "content": "<unused3>", "special": false}]
        })
    }

    #[test]
    fn gemma_and_llama2_styles_and_the_rest_refused() {
        let replace = json!({"type": "Replace", "pattern": {"String": " "}, "content": SPACE});
        let split =
            json!({"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious"});
        assert_eq!(
            space_prefix(&tj(replace.clone(), split)).unwrap(),
            Some(false)
        );
        let llama2 = json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": SPACE}, replace]});
        assert_eq!(space_prefix(&tj(llama2, Json::Null)).unwrap(), Some(true));
        let metaspace = json!({"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "first", "split": false});
        assert_eq!(
            space_prefix(&tj(Json::Null, metaspace)).unwrap(),
            Some(true)
        );
        let nfkc = json!({"type": "NFKC"});
        assert!(
            space_prefix(&tj(nfkc, Json::Null))
                .unwrap_err()
                .to_string()
                .contains("NFKC")
        );
        assert!(space_prefix(&tj(Json::Null, Json::Null)).is_err());
        let mut byte_level = tj(Json::Null, Json::Null);
        byte_level["decoder"] = json!({"type": "ByteLevel"});
        assert_eq!(space_prefix(&byte_level).unwrap(), None);
    }

    #[test]
    fn pieces_scores_and_types_in_id_order() {
        let t = tj(Json::Null, Json::Null);
        let kv = vocabulary(&t, 9, false).unwrap();
        let get = |k: &str| {
            kv.iter()
                .find(|(x, _)| x == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        let Value::Array(scores) = get("tokenizer.ggml.scores") else {
            panic!()
        };
        let scores: Vec<f32> = scores
            .iter()
            .map(|v| if let Value::F32(f) = v { *f } else { f32::NAN })
            .collect();
        assert_eq!(
            scores,
            [
                -1000.0, 0.0, 0.0, -1.0, -2.0, -1000.0, -1000.0, -1000.0, -1000.0
            ]
        );
        let Value::Array(types) = get("tokenizer.ggml.token_type") else {
            panic!()
        };
        let types: Vec<i32> = types
            .iter()
            .map(|v| if let Value::I32(i) = v { *i } else { 0 })
            .collect();
        assert_eq!(
            types,
            [
                CONTROL,
                BYTE,
                NORMAL,
                NORMAL,
                NORMAL,
                UNUSED,
                USER_DEFINED,
                CONTROL,
                UNUSED
            ]
        );
        let Value::Array(tokens) = get("tokenizer.ggml.tokens") else {
            panic!()
        };
        assert_eq!(tokens[5], Value::String("[PAD5]".into()));
        // A user-defined piece is matched on the raw text: its '▁' are spaces again.
        assert_eq!(tokens[6], Value::String("  ".into()));
        // An id beyond the vocabulary is an error, not a silent drop.
        assert!(vocabulary(&t, 7, false).is_err());
    }
}
