//! Time to first token of each turn of a conversation, with the prefix cache on and off: what `lar chat` gains by
//! keeping its history's blocks between turns instead of prefilling the whole conversation again.
//!
//! `cargo run --release -p lar-engine --example chat-ttft -- MODEL.gguf [THREADS] [TURNS]`

use lar_engine::{EngineConfig, load};
use lar_types::{ChatMessage, Role, SamplingParams};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let Some(model) = args.get(1) else {
        return Err("usage: chat-ttft MODEL.gguf [THREADS] [TURNS]".into());
    };
    let threads = args.get(2).map_or(Ok(2), |t| t.parse())?;
    let turns: usize = args.get(3).map_or(Ok(6), |t| t.parse())?;
    let questions = [
        "Tell me about the history of the city of Granada, in some detail.",
        "And what should a visitor see there in one day?",
        "Which dishes should I try, and where?",
        "How do I get there from Madrid by train?",
        "What is the weather like in spring?",
        "Give me three day trips from the city.",
        "Summarize everything you told me in five bullet points.",
        "Thank you. One last tip?",
    ];
    println!(
        "| turn | prompt tokens | cached (on) | TTFT cache off ms | TTFT cache on ms | off / on |"
    );
    println!("|---|---|---|---|---|---|");
    let mut rows = vec![(0usize, 0usize, 0f64, 0f64); turns];
    for caching in [false, true] {
        let cfg = EngineConfig {
            ctx: Some(4096),
            threads,
            prefix_caching: caching,
            ..Default::default()
        };
        let e = load(std::path::Path::new(model), &cfg)?;
        let mut history = vec![ChatMessage::new(
            Role::System,
            "You are a knowledgeable travel guide.",
        )];
        for (t, row) in rows.iter_mut().enumerate() {
            history.push(ChatMessage::new(Role::User, questions[t % questions.len()]));
            let ids = e.chat_tokens(&history, None)?;
            let params = SamplingParams {
                ignore_eos: true,
                ..SamplingParams::greedy(48)
            };
            let out = e.generate(ids.clone(), params, |_| true)?;
            let ttft = (out.stats.queue_secs + out.stats.prompt_secs) * 1e3;
            row.0 = ids.len();
            if caching {
                row.1 = out.stats.cached_tokens;
                row.3 = ttft;
            } else {
                row.2 = ttft;
            }
            history.push(ChatMessage::new(Role::Assistant, out.text));
        }
    }
    for (t, (n, cached, off, on)) in rows.iter().enumerate() {
        println!(
            "| {} | {n} | {cached} | {off:.0} | {on:.0} | {:.1}x |",
            t + 1,
            off / on
        );
    }
    Ok(())
}
