//! Text → video: tokenizer, seeds (torch-compatible `randn`), schedulers and generation.

pub mod generate;
pub mod gif;
pub mod load;
pub mod quantized;
pub mod rng;
pub mod sampler;
pub mod scheduler;
pub mod tokenizer;
