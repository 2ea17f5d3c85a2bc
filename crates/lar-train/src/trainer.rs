//! The training loop: the data split into training and held-out examples, packed into micro-batches of at most
//! `batch_tokens` tokens, `grad_accum` micro-batches per optimizer step, AdamW with clipping and a schedule.
//!
//! Everything random follows from the seed and the step: the split, each epoch's order (so the whole plan of steps
//! is known at the start), the dropout masks of each micro-batch. So the same state at the same step gives the same
//! update, and a run resumed from a checkpoint continues exactly as the uninterrupted run would.

use serde::{Deserialize, Serialize};

use crate::adapter::{Adapter, Target};
use crate::checkpoint;
use crate::data::Example;
use crate::error::{Error, Result};
use crate::net::{Batch, Dropout, Net};
use crate::optim::{self, AdamW, Moments, Schedule};
use crate::rng::Rng;

/// How to train.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    pub rank: usize,
    pub alpha: f32,
    pub dropout: f32,
    pub targets: Vec<Target>,
    /// Passes over the data (used when `steps` is `None`).
    pub epochs: usize,
    pub steps: Option<usize>,
    pub lr: f32,
    pub warmup: usize,
    pub schedule: Schedule,
    pub batch_tokens: usize,
    pub grad_accum: usize,
    pub seq_len: usize,
    pub eval_split: f32,
    pub seed: u64,
    pub max_grad_norm: f32,
    pub adamw: AdamW,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            rank: 16,
            alpha: 32.0,
            dropout: 0.05,
            targets: (0..7).collect(),
            epochs: 1,
            steps: None,
            lr: 2e-4,
            warmup: 0,
            schedule: Schedule::Cosine,
            batch_tokens: 2048,
            grad_accum: 1,
            seq_len: 1024,
            eval_split: 0.1,
            seed: 42,
            max_grad_norm: 1.0,
            adamw: AdamW::default(),
        }
    }
}

impl Config {
    /// Checks the settings before any work.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("--dropout {} must be in [0, 1)", self.dropout));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("--lr {} must be positive", self.lr));
        }
        if !(0.0..1.0).contains(&self.eval_split) {
            return bad(format!(
                "--eval-split {} must be in [0, 1)",
                self.eval_split
            ));
        }
        if self.batch_tokens == 0 || self.grad_accum == 0 || self.seq_len < 2 {
            return bad("--batch-tokens, --grad-accum and --seq-len must be positive".into());
        }
        if self.steps == Some(0) || (self.steps.is_none() && self.epochs == 0) {
            return bad("nothing to do: zero steps or epochs".into());
        }
        Ok(())
    }
}

/// What one optimizer step did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepLog {
    /// 1-based.
    pub step: usize,
    /// Mean cross-entropy per trained token (nats).
    pub loss: f32,
    pub lr: f32,
    /// The gradient's norm before clipping.
    pub grad_norm: f32,
    /// Tokens run through the model.
    pub tokens: usize,
}

/// A training run in progress.
pub struct Trainer<'a> {
    net: Net<'a>,
    pub cfg: Config,
    train: Vec<Example>,
    eval: Vec<Example>,
    /// Each step's micro-batches, each a list of training examples.
    plan: Vec<Vec<Vec<usize>>>,
    pub adapter: Adapter,
    pub moments: Moments,
    grads: Adapter,
    /// Steps done.
    pub step: usize,
}

impl<'a> Trainer<'a> {
    /// Splits `examples` (held-out share by the seed), plans every step, and makes a fresh adapter.
    pub fn new(net: Net<'a>, cfg: Config, mut examples: Vec<Example>) -> Result<Self> {
        cfg.check()?;
        if let Some(e) = examples.iter().find(|e| e.tokens.len() > cfg.seq_len) {
            return Err(Error::Invalid(format!(
                "line {}: {} tokens, more than --seq-len {}",
                e.line,
                e.tokens.len(),
                cfg.seq_len
            )));
        }
        Rng::keyed(cfg.seed, &[1]).shuffle(&mut examples);
        let n_eval = (examples.len() as f32 * cfg.eval_split).round() as usize;
        let n_eval = n_eval.min(examples.len().saturating_sub(1));
        let train = examples.split_off(n_eval);
        Self::build(net, cfg, train, examples)
    }

    /// As [`Trainer::new`] with a held-out set of its own (another file): every one of `train` is trained on,
    /// `--eval-split` is not used.
    pub fn with_eval(
        net: Net<'a>,
        cfg: Config,
        train: Vec<Example>,
        eval: Vec<Example>,
    ) -> Result<Self> {
        cfg.check()?;
        if let Some(e) = train
            .iter()
            .chain(&eval)
            .find(|e| e.tokens.len() > cfg.seq_len)
        {
            return Err(Error::Invalid(format!(
                "line {}: {} tokens, more than --seq-len {}",
                e.line,
                e.tokens.len(),
                cfg.seq_len
            )));
        }
        Self::build(net, cfg, train, eval)
    }

    fn build(net: Net<'a>, cfg: Config, train: Vec<Example>, eval: Vec<Example>) -> Result<Self> {
        if train.is_empty() {
            return Err(Error::Invalid("no examples to train on".into()));
        }
        let plan = plan(&train, &cfg);
        let adapter = Adapter::new(&net.model.hp, cfg.rank, cfg.alpha, &cfg.targets, cfg.seed)?;
        Ok(Self {
            net,
            moments: Moments::new(&adapter),
            grads: adapter.zeros_like(),
            adapter,
            cfg,
            train,
            eval,
            plan,
            step: 0,
        })
    }

    pub fn total_steps(&self) -> usize {
        self.plan.len()
    }

    pub fn n_train(&self) -> usize {
        self.train.len()
    }

    pub fn n_eval(&self) -> usize {
        self.eval.len()
    }

    pub fn is_done(&self) -> bool {
        self.step >= self.plan.len()
    }

    /// One optimizer step.
    pub fn step(&mut self) -> Result<StepLog> {
        let micro = self
            .plan
            .get(self.step)
            .ok_or_else(|| Error::Invalid("the run is complete".into()))?;
        let batches: Vec<Batch> = micro.iter().map(|ids| self.batch(ids)).collect();
        let n_loss: usize = batches.iter().map(Batch::n_loss).sum();
        let w = 1.0 / n_loss.max(1) as f32;
        self.grads.clear();
        let mut loss = 0f32;
        let mut tokens = 0;
        for (i, mut b) in batches.into_iter().enumerate() {
            b.weights.iter_mut().for_each(|x| *x *= w);
            let dropout = Dropout {
                p: self.cfg.dropout,
                seed: Rng::keyed(self.cfg.seed, &[2, self.step as u64, i as u64]).next_u64(),
            };
            loss += self
                .net
                .loss_and_grad(&self.adapter, &b, dropout, &mut self.grads)?;
            tokens += b.len();
        }
        let grad_norm = optim::clip(&mut self.grads, self.cfg.max_grad_norm);
        let lr = optim::learning_rate(
            self.cfg.lr,
            self.cfg.schedule,
            self.cfg.warmup,
            self.step,
            self.plan.len(),
        );
        self.cfg
            .adamw
            .step(&mut self.adapter, &self.grads, &mut self.moments, lr);
        self.step += 1;
        if !loss.is_finite() {
            return Err(Error::Invalid(format!(
                "the loss became {loss} at step {} (try a lower --lr)",
                self.step
            )));
        }
        Ok(StepLog {
            step: self.step,
            loss,
            lr,
            grad_norm,
            tokens,
        })
    }

    /// Mean cross-entropy per trained token of the held-out examples (`None` without any).
    pub fn eval_loss(&self) -> Result<Option<f32>> {
        if self.eval.is_empty() {
            return Ok(None);
        }
        let (mut sum, mut n) = (0f64, 0usize);
        let ids: Vec<usize> = (0..self.eval.len()).collect();
        for group in pack(&self.eval, &ids, self.cfg.batch_tokens) {
            let mut b = Batch::default();
            for &i in &group {
                self.eval[i].push_to(&mut b);
            }
            n += b.n_loss();
            sum += self.net.loss(&self.adapter, &b)? as f64;
        }
        Ok(Some((sum / n.max(1) as f64) as f32))
    }

    /// Saves the run's state into `dir` (see [`crate::checkpoint`]).
    pub fn save_checkpoint(
        &self,
        dir: &std::path::Path,
        data_sha256: &str,
        history: serde_json::Value,
    ) -> Result<()> {
        let state = checkpoint::State {
            step: self.step,
            t: self.moments.t,
            config: self.cfg.clone(),
            data_sha256: data_sha256.to_string(),
            history,
        };
        checkpoint::save(dir, &state, &self.adapter, &self.moments)
    }

    /// Continues from the checkpoint in `dir`, which must be of the same settings and data; returns the history
    /// saved with it.
    pub fn resume(
        &mut self,
        dir: &std::path::Path,
        data_sha256: &str,
    ) -> Result<serde_json::Value> {
        let (state, adapter, moments) = checkpoint::load(dir, &self.adapter)?;
        let same = serde_json::to_value(&state.config).ok() == serde_json::to_value(&self.cfg).ok();
        if !same {
            return Err(Error::Invalid(format!(
                "the checkpoint in {} was made with other settings; resume with the same ones",
                dir.display()
            )));
        }
        if state.data_sha256 != data_sha256 {
            return Err(Error::Invalid(format!(
                "the checkpoint in {} was made on other data or another held-out file (--eval-data); resume \
                 with the same ones",
                dir.display()
            )));
        }
        if state.step > self.plan.len() {
            return Err(Error::Invalid(format!(
                "the checkpoint is at step {} of a {}-step run",
                state.step,
                self.plan.len()
            )));
        }
        self.adapter = adapter;
        self.moments = moments;
        self.step = state.step;
        Ok(state.history)
    }

    /// The held-out examples (to measure what was learned).
    pub fn eval_examples(&self) -> &[Example] {
        &self.eval
    }

    fn batch(&self, ids: &[usize]) -> Batch {
        let mut b = Batch::default();
        for &i in ids {
            self.train[i].push_to(&mut b);
        }
        b
    }
}

/// Every step's micro-batches: each epoch's order shuffled by the seed, examples packed in that order.
fn plan(train: &[Example], cfg: &Config) -> Vec<Vec<Vec<usize>>> {
    let mut steps = Vec::new();
    let mut epoch = 0u64;
    loop {
        let mut order: Vec<usize> = (0..train.len()).collect();
        Rng::keyed(cfg.seed, &[3, epoch]).shuffle(&mut order);
        let micro = pack(train, &order, cfg.batch_tokens);
        for chunk in micro.chunks(cfg.grad_accum) {
            steps.push(chunk.to_vec());
            if cfg.steps.is_some_and(|s| steps.len() >= s) {
                return steps;
            }
        }
        epoch += 1;
        if cfg.steps.is_none() && epoch as usize >= cfg.epochs {
            return steps;
        }
    }
}

/// `order` cut into groups of at most `batch_tokens` tokens (at least one example each).
fn pack(examples: &[Example], order: &[usize], batch_tokens: usize) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut cur = Vec::new();
    let mut len = 0;
    for &i in order {
        let n = examples[i].tokens.len();
        if !cur.is_empty() && len + n > batch_tokens {
            out.push(std::mem::take(&mut cur));
            len = 0;
        }
        cur.push(i);
        len += n;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}
