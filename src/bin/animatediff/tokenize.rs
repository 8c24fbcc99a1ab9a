//! `animatediff tokenize [--vocab FILE] "prompt"`: the 77 CLIP ids diffusers would feed the text
//! encoder, as a JSON array.

use std::path::Path;

use animatediff_wgpu::pipeline::tokenizer::{ClipTokenizer, MAX_LEN};

/// Prints `[49406, …, 49407, …]` (always `MAX_LEN` ids) on stdout; says on stderr when the
/// prompt was truncated.
pub fn run(vocab: Option<&Path>, prompt: &str) -> Result<(), Box<dyn std::error::Error>> {
    let owned;
    let tok: &ClipTokenizer = match vocab {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            owned = ClipTokenizer::from_bpe_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            &owned
        }
        None => ClipTokenizer::new()?,
    };
    let count = tok.count_tokens(prompt);
    if count > MAX_LEN - 2 {
        eprintln!("note: prompt has {count} tokens; only the first {} are used", MAX_LEN - 2);
    }
    let ids = tok.encode_padded(prompt, MAX_LEN);
    println!("{}", serde_json::to_string(&ids)?);
    Ok(())
}
