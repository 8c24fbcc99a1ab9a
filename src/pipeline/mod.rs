//! Text → video: tokenizer, seeds (torch-compatible `randn`), schedulers and generation.

pub mod context;
pub mod fit;
pub mod generate;
pub mod gif;
pub mod load;
pub mod prompt_travel;
pub mod quantized;
pub mod rng;
pub mod sampler;
pub mod scheduler;
pub mod tokenizer;
