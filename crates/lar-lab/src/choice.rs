//! Multiple-choice tasks scored by log-likelihood, as lm-evaluation-harness and llama.cpp score them. A task file
//! is JSONL, one question per line: `context` (or `question`, `ctx`, `query`), `choices` (or `endings`; a list of
//! strings, or ARC's `{"text": [...], "label": [...]}`) and `answer` (or `label`, `gold`, `answerKey`: an index, a
//! letter, or the right choice's text). Each choice is the context, a space, then the choice, scored through the
//! engine's prompt log-probabilities; three accuracies come out, each with its standard error:
//! - `acc`: the choice with the highest sum of log-probabilities of its own tokens (lm-eval's `acc`);
//! - `acc_norm`: that sum divided by the choice's length in characters (lm-eval's `acc_norm`);
//! - `acc_token`: the mean log-probability per token from the first token where the choices differ
//!   (llama-perplexity's `--hellaswag` score, which the tests compare against).

use std::time::Instant;

use lar_engine::{EngineHandle, EventStream, Request};
use lar_types::SamplingParams;
use serde::Serialize;
use serde_json::Value;

use crate::{Error, Result};

/// One question.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Item {
    pub context: String,
    pub choices: Vec<String>,
    pub answer: usize,
}

/// How one question was answered.
#[derive(Clone, Debug, Serialize)]
pub struct Scored {
    pub answer: usize,
    /// Sum of each choice's log-probabilities (its own tokens).
    pub loglik: Vec<f64>,
    /// Each choice's mean log-probability per token from where the choices differ (`acc_token`'s score).
    pub token_mean: Vec<f64>,
    /// The choices picked by `acc`, `acc_norm` and `acc_token`.
    pub picked: [usize; 3],
}

/// An accuracy and its standard error.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Accuracy {
    pub value: f64,
    pub stderr: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub tasks: usize,
    pub acc: Accuracy,
    pub acc_norm: Accuracy,
    pub acc_token: Accuracy,
    pub seconds: f64,
    pub items: Vec<Scored>,
}

fn text_field<'a>(o: &'a serde_json::Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| o.get(*k).and_then(Value::as_str))
}

/// Reads one line of a task file (`n`: its number, for errors).
pub fn parse_item(line: &str, n: usize) -> Result<Item> {
    let bad = |why: String| Error::Invalid(format!("line {n}: {why}"));
    let v: Value = serde_json::from_str(line).map_err(|e| bad(format!("not JSON ({e})")))?;
    let o = v
        .as_object()
        .ok_or_else(|| bad("a question is a JSON object".into()))?;
    let context = text_field(o, &["context", "question", "ctx", "query"])
        .ok_or_else(|| bad("no context (or question)".into()))?
        .to_string();
    let (choices, labels): (Vec<String>, Vec<String>) =
        match o.get("choices").or_else(|| o.get("endings")) {
            Some(Value::Array(a)) => {
                let c = a
                    .iter()
                    .map(|c| c.as_str().map(String::from))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("choices must be strings".into()))?;
                let labels = (0..c.len())
                    .map(|i| ((b'A' + i as u8) as char).to_string())
                    .collect();
                (c, labels)
            }
            Some(Value::Object(arc)) => {
                let list = |k: &str| -> Option<Vec<String>> {
                    arc.get(k)?
                        .as_array()?
                        .iter()
                        .map(|x| x.as_str().map(String::from))
                        .collect()
                };
                let (Some(t), Some(l)) = (list("text"), list("label")) else {
                    return Err(bad("choices must have text and label lists".into()));
                };
                if t.len() != l.len() {
                    return Err(bad("choices' text and label differ in length".into()));
                }
                (t, l)
            }
            _ => return Err(bad("no choices (a list of strings)".into())),
        };
    if choices.len() < 2 {
        return Err(bad(format!(
            "{} choice(s): a question needs at least two",
            choices.len()
        )));
    }
    let answer = match ["answer", "label", "gold", "answerKey"]
        .iter()
        .find_map(|k| o.get(*k))
    {
        Some(Value::Number(n)) => n.as_u64().map(|n| n as usize),
        Some(Value::String(s)) => labels
            .iter()
            .position(|l| l == s)
            .or_else(|| choices.iter().position(|c| c == s))
            .or_else(|| s.parse().ok()),
        _ => return Err(bad("no answer (an index, a letter or a choice)".into())),
    }
    .filter(|&a| a < choices.len())
    .ok_or_else(|| {
        bad(format!(
            "the answer is not one of the {} choices",
            choices.len()
        ))
    })?;
    Ok(Item {
        context,
        choices,
        answer,
    })
}

/// Reads a task file's text: one question per non-empty line.
pub fn parse_tasks(text: &str) -> Result<Vec<Item>> {
    let items = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_item(l, i + 1))
        .collect::<Result<Vec<_>>>()?;
    if items.is_empty() {
        return Err(Error::Invalid("the task file has no questions".into()));
    }
    Ok(items)
}

/// The log-probability of every token of `prompt` after the first (index `j` scores token `j + 1`).
fn scores(stream: EventStream, what: &str) -> Result<Vec<f64>> {
    crate::scored::prompt_scores(stream, what)?
        .iter()
        .skip(1)
        .map(|s| s.as_ref().map(|s| s.logprob as f64))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Error::Engine(lar_engine::Error::Failed(format!("{what}: unscored"))))
}

fn argmax(v: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, x) in v.enumerate() {
        // The first of equals wins, as in llama.cpp and lm-eval.
        if x > best.1 {
            best = (i, x);
        }
    }
    best.0
}

fn accuracy(hits: impl Iterator<Item = bool>) -> Accuracy {
    let v: Vec<f64> = hits.map(|h| f64::from(u8::from(h))).collect();
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n.max(1.0);
    // The sample standard deviation over sqrt(n), as lm-eval reports it.
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    Accuracy {
        value: mean,
        stderr: (var / n.max(1.0)).sqrt(),
    }
}

/// Scores `items` on `engine`; `progress(done, total)` after each question.
pub fn evaluate(
    engine: &EngineHandle,
    items: &[Item],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report> {
    let started = Instant::now();
    let tok = &engine.model().tokenizer;
    let ctx = engine.model().ctx;
    let mut out = Vec::with_capacity(items.len());
    for (q, item) in items.iter().enumerate() {
        // lm-eval's split: spaces that end the context go with the continuation.
        let trimmed = item.context.trim_end();
        let spaces = &item.context[trimmed.len()..];
        let context_ids = tok.encode(trimmed, true, false);
        let mut seqs = Vec::with_capacity(item.choices.len());
        let mut streams = Vec::with_capacity(item.choices.len());
        for c in &item.choices {
            let whole = format!("{trimmed}{spaces} {c}");
            let ids = tok.encode(&whole, true, false);
            if ids.len() + 1 >= ctx {
                return Err(Error::Invalid(format!(
                    "question {}: a choice is {} tokens with its context, more than the context of {ctx}",
                    q + 1,
                    ids.len()
                )));
            }
            let mut req = Request::new(ids.clone(), SamplingParams::greedy(1));
            req.prompt_logprobs = Some(0);
            streams.push(engine.submit(req)?);
            seqs.push(ids);
        }
        let common = (0..seqs.iter().map(Vec::len).min().unwrap_or(0))
            .take_while(|&k| seqs.iter().all(|s| s[k] == seqs[0][k]))
            .count()
            .max(1);
        let (mut sums, mut per_char, mut per_token) = (Vec::new(), Vec::new(), Vec::new());
        for ((stream, ids), c) in streams.into_iter().zip(&seqs).zip(&item.choices) {
            let lp = scores(stream, &format!("question {}", q + 1))?;
            // The choice's own tokens: those after the context's (at least the last one).
            let own = context_ids.len().min(ids.len() - 1);
            let sum: f64 = lp[own.saturating_sub(1)..].iter().sum();
            sums.push(sum);
            per_char.push(sum / c.chars().count().max(1) as f64);
            let from = lp[common - 1..].to_vec();
            per_token.push(from.iter().sum::<f64>() / from.len().max(1) as f64);
        }
        out.push(Scored {
            answer: item.answer,
            picked: [
                argmax(sums.iter().copied()),
                argmax(per_char.iter().copied()),
                argmax(per_token.iter().copied()),
            ],
            loglik: sums,
            token_mean: per_token,
        });
        progress(q + 1, items.len());
    }
    let acc = |k: usize| accuracy(out.iter().map(|s| s.picked[k] == s.answer));
    Ok(Report {
        tasks: out.len(),
        acc: acc(0),
        acc_norm: acc(1),
        acc_token: acc(2),
        seconds: started.elapsed().as_secs_f64(),
        items: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shapes_people_have_are_read() {
        let plain = parse_item(
            r#"{"context": "2+2 is", "choices": ["4", "5"], "answer": 0}"#,
            1,
        )
        .unwrap();
        assert_eq!(plain.answer, 0);
        let letter = parse_item(
            r#"{"question": "q", "choices": ["a", "b", "c"], "answer": "C"}"#,
            1,
        )
        .unwrap();
        assert_eq!(letter.answer, 2);
        let arc = parse_item(
            r#"{"question": "q", "choices": {"text": ["x", "y"], "label": ["1", "2"]}, "answerKey": "2"}"#,
            1,
        )
        .unwrap();
        assert_eq!((arc.choices.len(), arc.answer), (2, 1));
        let hs = parse_item(r#"{"ctx": "c", "endings": ["e0", "e1"], "label": "1"}"#, 1).unwrap();
        assert_eq!(hs.answer, 1);
        let by_text = parse_item(
            r#"{"context": "c", "choices": ["no", "yes"], "answer": "yes"}"#,
            1,
        )
        .unwrap();
        assert_eq!(by_text.answer, 1);
        for (line, says) in [
            ("{", "not JSON"),
            ("[1]", "JSON object"),
            (r#"{"choices": ["a", "b"], "answer": 0}"#, "no context"),
            (
                r#"{"context": "c", "choices": ["a"], "answer": 0}"#,
                "at least two",
            ),
            (
                r#"{"context": "c", "choices": ["a", 3], "answer": 0}"#,
                "strings",
            ),
            (
                r#"{"context": "c", "choices": ["a", "b"], "answer": 2}"#,
                "not one of",
            ),
            (r#"{"context": "c", "choices": ["a", "b"]}"#, "no answer"),
        ] {
            let e = parse_item(line, 7).unwrap_err().to_string();
            assert!(e.starts_with("line 7: ") && e.contains(says), "{line}: {e}");
        }
        assert!(parse_tasks("\n\n").is_err());
    }

    #[test]
    fn accuracy_and_its_error_are_lm_evals() {
        let a = accuracy([true, false, true, true].into_iter());
        assert_eq!(a.value, 0.75);
        // Sample variance 0.25, over n = 4.
        assert!((a.stderr - (0.25f64 / 4.0).sqrt()).abs() < 1e-12);
        assert_eq!(argmax([1.0, 3.0, 3.0].into_iter()), 1);
    }
}
