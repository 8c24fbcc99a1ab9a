//! Text → video: tokenizer, seeds (torch-compatible `randn`), schedulers and generation.

pub mod gif;
pub mod rng;
pub mod scheduler;
pub mod tokenizer;
