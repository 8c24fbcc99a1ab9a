//! Text → video: tokenizer, seeds (torch-compatible `randn`), schedulers and generation.
