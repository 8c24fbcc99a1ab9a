#![no_main]
#![allow(dead_code, unused_imports, unexpected_cfgs)]
//! The CLI's argument parsing (clap) plus what `generate` / `plan` build from the arguments
//! (`GenerateParams` validated against SD1.5, the sampler, the memory plan): arbitrary
//! NUL-separated arguments → `Ok` or an error message, never a panic. The CLI's modules are
//! compiled in from `src/bin/animatediff/` (a binary crate cannot be a dependency);
//! `cli::tests::fuzz_corpus_replays` (`cargo test --bin animatediff`) replays the corpus.

#[path = "../../src/bin/animatediff/bench.rs"]
mod bench;
#[path = "../../src/bin/animatediff/cli.rs"]
mod cli;
#[path = "../../src/bin/animatediff/generate.rs"]
mod generate;
#[path = "../../src/bin/animatediff/inspect.rs"]
mod inspect;
#[path = "../../src/bin/animatediff/plan.rs"]
mod plan;
#[path = "../../src/bin/animatediff/quantize.rs"]
mod quantize;
#[path = "../../src/bin/animatediff/tokenize.rs"]
mod tokenize;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cli::check_args(&cli::argv_from_bytes(data));
});
