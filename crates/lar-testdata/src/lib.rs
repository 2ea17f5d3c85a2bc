//! Test fixtures shared by the crates' tests, benchmarks and examples, and by nothing else (every user is a
//! dev-dependency): [`models`] (where `scripts/fetch-models.sh` puts the real models, tiny random-weight models of
//! each architecture, llama.cpp's goldens), [`fixtures`] (small files of every format the knowledge base reads,
//! valid or deliberately broken), [`corpus`] (a household corpus with questions, for retrieval tests) and [`rng`]
//! (reproducible pseudo-random data), [`lora`] (random LoRA adapters), [`codebook`] (random blocks of the IQ1/IQ2/IQ3
//! types, for models of those types).

pub mod codebook;
pub mod corpus;
pub mod corpus_es;
pub mod fixtures;
pub mod lora;
pub mod models;
pub mod rng;

pub use models::*;
pub use rng::Rng;
