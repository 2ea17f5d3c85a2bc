//! `lar`: the command line. Each subcommand is a thin layer over the library crates (the engine does the work);
//! errors are printed as one line and give a non-zero exit.

mod bench;
mod chat;
mod common;
mod run;
mod show;

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
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Run(a) => run::main(a),
        Cmd::Chat(a) => chat::main(a),
        Cmd::Show(a) => show::main(a),
        Cmd::Bench(a) => bench::main(a),
    };
    if let Err(e) = result {
        // One line: the chain of causes joined by ": ".
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
