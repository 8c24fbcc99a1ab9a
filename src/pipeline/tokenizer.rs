//! CLIP byte-level BPE tokenizer, matching transformers' (fast) `CLIPTokenizer` as diffusers
//! uses it for Stable Diffusion 1.x text encoders.
//!
//! The pipeline is the one transformers 5.x builds in `CLIPTokenizer.__init__`:
//! 1. **Special tokens** `<|startoftext|>` / `<|endoftext|>` written literally in the prompt are
//!    split out first, on the raw text and case-sensitively (they are added tokens with
//!    `normalized: false`), and become 49406 / 49407.
//! 2. **Normaliser**: NFC, every run of Unicode whitespace → one space, lower-case (per character,
//!    like `tokenizers`' `Lowercase`; no final-sigma rule).
//! 3. **Pre-tokeniser**: the pieces matched by
//!    `'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+` (leftmost-first); whatever
//!    does not match (whitespace) is dropped. The byte-level pre-tokeniser that follows splits
//!    again with GPT-2's regex, which never cuts a CLIP piece further, and maps bytes to
//!    GPT-2's printable "byte unicode" characters.
//! 4. **BPE** per piece, with `</w>` appended to the piece's last symbol; merges are applied
//!    lowest rank first, leftmost first among equal ranks (what `tokenizers` does).
//! 5. **Post-processing** (in [`ClipTokenizer::encode_padded`]): `BOS content[..max_len-2] EOS`,
//!    then padding with `<|endoftext|>` (SD 1.5's `pad_token`) to `max_len` (77).
//!
//! OpenAI's / open_clip's `SimpleTokenizer` differs on purpose: it also runs `ftfy.fix_text`
//! and `html.unescape` (curly quotes, `&amp;`), which diffusers does not.
//!
//! The vocabulary is OpenAI's `bpe_simple_vocab_16e6.txt` (MIT; see `vocab/LICENSE.md`),
//! shipped gzipped in the crate and decoded on first use. Vocabulary layout (49408 ids):
//! 256 byte characters, the same 256 with `</w>`, the 48894 merge results in merge order,
//! then `<|startoftext|>` (49406) and `<|endoftext|>` (49407).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use regex::Regex;
use thiserror::Error;
use unicode_normalization::UnicodeNormalization;

/// `<|startoftext|>`.
pub const BOS: u32 = 49406;
/// `<|endoftext|>`; also SD 1.5's padding token.
pub const EOS: u32 = 49407;
/// SD 1.5's padding token (`<|endoftext|>`).
pub const PAD: u32 = EOS;
/// CLIP's context length (BOS + 75 content tokens + EOS).
pub const MAX_LEN: usize = 77;
/// Number of merges the CLIP vocabulary uses (`lines[1:48895]` of the BPE file).
pub const NUM_MERGES: usize = 48894;
/// Vocabulary size: 2·256 byte symbols + merges + 2 specials.
pub const VOCAB_SIZE: usize = 512 + NUM_MERGES + 2;

const START_OF_TEXT: &str = "<|startoftext|>";
const END_OF_TEXT: &str = "<|endoftext|>";
const PRETOKENIZE: &str = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// The bundled vocabulary (gzip, 1.36 MB; 3.2 MB decoded).
static BUNDLED_VOCAB_GZ: &[u8] = include_bytes!("vocab/bpe_simple_vocab_16e6.txt.gz");
/// Largest decoded vocabulary file accepted (the real one is 3.2 MB).
const MAX_VOCAB_BYTES: usize = 64 << 20;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum TokenizerError {
    #[error("vocabulary: gzip data is corrupt: {0}")]
    Gzip(String),
    #[error("vocabulary: not UTF-8 text")]
    NotUtf8,
    #[error("vocabulary: line {line}: expected two space-separated symbols, got {text:?}")]
    BadMergeLine { line: usize, text: String },
    #[error("vocabulary: has {found} merges, CLIP needs {NUM_MERGES}")]
    TooFewMerges { found: usize },
    #[error("vocabulary: merge {line} ({text:?}) uses a symbol not defined before it")]
    UnknownSymbol { line: usize, text: String },
    #[error("vocabulary: merge result {text:?} (line {line}) appears twice")]
    DuplicateMerge { line: usize, text: String },
    #[error("tokenizer: internal regex error: {0}")]
    Regex(String),
}

/// FxHash-style hasher: the maps are keyed by small integers and short strings, and the
/// vocabulary is trusted data, so SipHash's DoS resistance buys nothing here.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// GPT-2's byte → printable character table (`bytes_to_unicode`), in the order of CLIP's
/// vocabulary: `BYTE_ORDER[i]` is the byte whose character has id `i` (and `i + 256` with `</w>`).
fn byte_order() -> ([u8; 256], [char; 256]) {
    let mut order = [0u8; 256];
    let mut chars = ['\0'; 256];
    let mut n = 0usize;
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    for b in 0u32..256 {
        if printable(b) {
            order[n] = b as u8;
            n += 1;
        }
    }
    let mut extra = 0u32;
    for b in 0u32..256 {
        if !printable(b) {
            order[n] = b as u8;
            n += 1;
        }
    }
    for b in 0u32..256 {
        chars[b as usize] = if printable(b) {
            char::from_u32(b).unwrap_or('\0')
        } else {
            let c = char::from_u32(256 + extra).unwrap_or('\0');
            extra += 1;
            c
        };
    }
    (order, chars)
}

/// CLIP BPE tokenizer (see the module docs for the exact rules).
pub struct ClipTokenizer {
    /// Id of each byte's symbol without `</w>`; with `</w>` it is `+ 256`.
    byte_id: [u32; 256],
    /// `(left, right)` → `(rank, merged id)`.
    merges: FxMap<u64, (u32, u32)>,
    /// Id → token string (byte-unicode characters, `</w>` kept), for [`ClipTokenizer::token`].
    tokens: Vec<String>,
    pretokenize: Regex,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer").field("vocab_size", &self.tokens.len()).finish()
    }
}

static BUNDLED: OnceLock<Result<ClipTokenizer, TokenizerError>> = OnceLock::new();

impl ClipTokenizer {
    /// The tokenizer with the bundled OpenAI vocabulary, built on first use (~3 MB decoded,
    /// a few tens of ms) and shared afterwards.
    pub fn new() -> Result<&'static ClipTokenizer, TokenizerError> {
        BUNDLED.get_or_init(|| Self::from_bpe_bytes(BUNDLED_VOCAB_GZ)).as_ref().map_err(Clone::clone)
    }

    /// Builds a tokenizer from a BPE merges file: `bpe_simple_vocab_16e6.txt` (gzipped or not)
    /// or a Hub `merges.txt` (`#version: 0.2` header). The first line is a header; the next
    /// [`NUM_MERGES`] lines are used.
    pub fn from_bpe_bytes(bytes: &[u8]) -> Result<Self, TokenizerError> {
        let decoded;
        let text_bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
            decoded = gunzip(bytes)?;
            &decoded[..]
        } else {
            bytes
        };
        let text = std::str::from_utf8(text_bytes).map_err(|_| TokenizerError::NotUtf8)?;
        Self::from_bpe_text(text)
    }

    /// Builds a tokenizer from the text of a BPE merges file (see [`Self::from_bpe_bytes`]).
    pub fn from_bpe_text(text: &str) -> Result<Self, TokenizerError> {
        let (order, chars) = byte_order();
        let mut tokens: Vec<String> = Vec::with_capacity(VOCAB_SIZE);
        let mut byte_id = [0u32; 256];
        for (i, &b) in order.iter().enumerate() {
            byte_id[b as usize] = i as u32;
            tokens.push(chars[b as usize].to_string());
        }
        for i in 0..256 {
            let t = format!("{}</w>", tokens[i]);
            tokens.push(t);
        }
        let mut ids: FxMap<String, u32> = FxMap::default();
        ids.reserve(VOCAB_SIZE);
        for (i, t) in tokens.iter().enumerate() {
            ids.insert(t.clone(), i as u32);
        }
        let mut merges: FxMap<u64, (u32, u32)> = FxMap::default();
        merges.reserve(NUM_MERGES);
        let mut found = 0usize;
        for (line_no, line) in text.split('\n').enumerate().skip(1) {
            if found == NUM_MERGES {
                break;
            }
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split(' ');
            let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(TokenizerError::BadMergeLine { line: line_no + 1, text: line.to_string() });
            };
            let (Some(&ia), Some(&ib)) = (ids.get(a), ids.get(b)) else {
                return Err(TokenizerError::UnknownSymbol { line: line_no + 1, text: line.to_string() });
            };
            let merged = format!("{a}{b}");
            let id = tokens.len() as u32;
            if ids.insert(merged.clone(), id).is_some() {
                return Err(TokenizerError::DuplicateMerge { line: line_no + 1, text: merged });
            }
            tokens.push(merged);
            // transformers keeps the first rank if a pair were listed twice.
            merges.entry(pair_key(ia, ib)).or_insert((found as u32, id));
            found += 1;
        }
        if found < NUM_MERGES {
            return Err(TokenizerError::TooFewMerges { found });
        }
        tokens.push(START_OF_TEXT.to_string());
        tokens.push(END_OF_TEXT.to_string());
        debug_assert_eq!(tokens.len(), VOCAB_SIZE);
        let pretokenize = Regex::new(PRETOKENIZE).map_err(|e| TokenizerError::Regex(e.to_string()))?;
        Ok(Self { byte_id, merges, tokens, pretokenize })
    }

    /// Number of ids (49408).
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The vocabulary string of `id` (byte-unicode characters, `</w>` marking a word end).
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// Content ids of `text`: no BOS/EOS, no truncation. Literal `<|startoftext|>` /
    /// `<|endoftext|>` in the text become their special ids, as in transformers.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let mut rest = text;
        loop {
            let next = [(START_OF_TEXT, BOS), (END_OF_TEXT, EOS)]
                .iter()
                .filter_map(|&(s, id)| rest.find(s).map(|pos| (pos, s.len(), id)))
                .min_by_key(|&(pos, _, _)| pos);
            match next {
                Some((pos, len, id)) => {
                    self.encode_plain(&rest[..pos], &mut out);
                    out.push(id);
                    rest = &rest[pos + len..];
                }
                None => {
                    self.encode_plain(rest, &mut out);
                    return out;
                }
            }
        }
    }

    /// Number of content tokens of `text` (without BOS/EOS). More than `MAX_LEN - 2` (75)
    /// means [`Self::encode_padded`] truncates.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.encode(text).len()
    }

    /// `BOS content… EOS PAD…` of exactly `max_len` ids (77 for SD), content truncated to
    /// `max_len - 2` tokens: what diffusers gets from
    /// `tokenizer(text, padding="max_length", max_length=77, truncation=True)`.
    /// For `max_len < 2` the result is `[BOS, EOS]` cut to `max_len`.
    pub fn encode_padded(&self, text: &str, max_len: usize) -> Vec<u32> {
        if max_len < 2 {
            return [BOS, EOS][..max_len].to_vec();
        }
        let content = self.encode(text);
        let keep = content.len().min(max_len - 2);
        let mut out = Vec::with_capacity(max_len);
        out.push(BOS);
        out.extend_from_slice(&content[..keep]);
        out.push(EOS);
        out.resize(max_len, PAD);
        out
    }

    /// Normalises and pre-tokenises `text` (no specials), then appends each piece's BPE ids.
    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        let normalized = normalize(text);
        for m in self.pretokenize.find_iter(&normalized) {
            self.bpe(m.as_str().as_bytes(), out);
        }
    }

    /// BPE of one pre-token: byte symbols, `</w>` on the last one, merges by rank.
    ///
    /// The lowest-ranked adjacent pair is merged first, the leftmost among equals — the order
    /// of transformers' loop — but found with a heap over a linked list, O(n log n): the
    /// rescan-per-merge loop is O(n²), and a 100 000-letter "word" in a prompt took minutes.
    fn bpe(&self, piece: &[u8], out: &mut Vec<u32>) {
        const NONE: usize = usize::MAX;
        let Some((&last, init)) = piece.split_last() else {
            return;
        };
        let mut sym: Vec<u32> = init.iter().map(|&b| self.byte_id[b as usize]).collect();
        sym.push(self.byte_id[last as usize] + 256);
        let n = sym.len();
        // next[i] / prev[i]: neighbours of live symbol i (NONE at the ends); alive[i]: not
        // absorbed into its left neighbour. A symbol keeps its first byte's index, so index
        // order is word order.
        let mut next: Vec<usize> = (1..=n).map(|i| if i == n { NONE } else { i }).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.checked_sub(1).unwrap_or(NONE)).collect();
        let mut alive = vec![true; n];
        let mut heap = BinaryHeap::new();
        let rank_of = |sym: &[u32], l: usize, r: usize| self.merges.get(&pair_key(sym[l], sym[r])).copied();
        for i in 0..n.saturating_sub(1) {
            if let Some((rank, _)) = rank_of(&sym, i, i + 1) {
                heap.push(Reverse((rank, i, i + 1)));
            }
        }
        while let Some(Reverse((rank, l, r))) = heap.pop() {
            // Stale entries: a side was merged away, or its symbol changed (ranks are unique
            // per pair, so an equal rank means the same pair).
            if !alive[l] || !alive[r] || next[l] != r {
                continue;
            }
            let Some((cur, id)) = rank_of(&sym, l, r) else { continue };
            if cur != rank {
                continue;
            }
            sym[l] = id;
            alive[r] = false;
            let nr = next[r];
            next[l] = nr;
            if nr != NONE {
                prev[nr] = l;
                if let Some((rank, _)) = rank_of(&sym, l, nr) {
                    heap.push(Reverse((rank, l, nr)));
                }
            }
            let pl = prev[l];
            if pl != NONE {
                if let Some((rank, _)) = rank_of(&sym, pl, l) {
                    heap.push(Reverse((rank, pl, l)));
                }
            }
        }
        let mut i = 0;
        while i != NONE {
            out.push(sym[i]);
            i = next[i];
        }
    }
}

fn pair_key(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

/// transformers' CLIP normaliser: NFC, `\s+` → `" "`, per-character lower-case.
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_space = false;
    for c in text.nfc() {
        if c.is_whitespace() {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            in_space = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Decodes a gzip member (RFC 1952) with the pure-Rust `miniz_oxide` inflater.
fn gunzip(data: &[u8]) -> Result<Vec<u8>, TokenizerError> {
    let err = |m: &str| TokenizerError::Gzip(m.to_string());
    if data.len() < 18 || data[0] != 0x1f || data[1] != 0x8b || data[2] != 8 {
        return Err(err("not a deflate gzip stream"));
    }
    let flags = data[3];
    let mut pos = 10usize;
    if flags & 0x04 != 0 {
        let xlen = data.get(pos..pos + 2).ok_or_else(|| err("truncated header"))?;
        pos += 2 + u16::from_le_bytes([xlen[0], xlen[1]]) as usize;
    }
    for flag in [0x08u8, 0x10] {
        if flags & flag != 0 {
            let tail = data.get(pos..).ok_or_else(|| err("truncated header"))?;
            let nul = tail.iter().position(|&b| b == 0).ok_or_else(|| err("truncated header"))?;
            pos += nul + 1;
        }
    }
    if flags & 0x02 != 0 {
        pos += 2;
    }
    let body = data.get(pos..).ok_or_else(|| err("truncated header"))?;
    let out = miniz_oxide::inflate::decompress_to_vec_with_limit(body, MAX_VOCAB_BYTES)
        .map_err(|e| TokenizerError::Gzip(format!("{:?}", e.status)))?;
    // Trailer: CRC-32 then the size mod 2^32; the size check catches truncation cheaply.
    if let Some(trailer) = data.len().checked_sub(4).and_then(|i| data.get(i..)) {
        let isize = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        if isize != out.len() as u32 {
            return Err(err("decoded size does not match the trailer"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok() -> &'static ClipTokenizer {
        ClipTokenizer::new().expect("bundled vocabulary")
    }

    /// transformers' BPE loop as written (rescan for the lowest rank, leftmost, per merge).
    fn bpe_rescan(t: &ClipTokenizer, piece: &[u8]) -> Vec<u32> {
        let Some((&last, init)) = piece.split_last() else { return Vec::new() };
        let mut word: Vec<u32> = init.iter().map(|&b| t.byte_id[b as usize]).collect();
        word.push(t.byte_id[last as usize] + 256);
        while word.len() > 1 {
            let mut best: Option<(u32, usize, u32)> = None;
            for i in 0..word.len() - 1 {
                if let Some(&(rank, id)) = t.merges.get(&pair_key(word[i], word[i + 1])) {
                    if best.is_none_or(|(r, _, _)| rank < r) {
                        best = Some((rank, i, id));
                    }
                }
            }
            let Some((_, i, id)) = best else { break };
            word[i] = id;
            word.remove(i + 1);
        }
        word
    }

    #[test]
    fn heap_bpe_equals_the_rescan_loop() {
        let t = tok();
        // Pseudo-random words over a small alphabet (many repeated pairs, equal-rank ties)
        // and over common letters.
        let mut s = 0x9e3779b97f4a7c15u64;
        let mut rnd = |n: u64| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s % n
        };
        for round in 0..3000 {
            let alphabet: &[u8] = if round % 2 == 0 { b"aeinrst" } else { b"abcdefghijklmnopqrstuvwxyzaeiou" };
            let len = 1 + rnd(40) as usize;
            let word: Vec<u8> = (0..len).map(|_| alphabet[rnd(alphabet.len() as u64) as usize]).collect();
            let mut fast = Vec::new();
            t.bpe(&word, &mut fast);
            assert_eq!(fast, bpe_rescan(t, &word), "{}", String::from_utf8_lossy(&word));
        }
        for w in ["aaaaaaaaaaaaaaaaaaaaaaaaa", "mississippi", "abababababababab", "photorealistic"] {
            let mut fast = Vec::new();
            t.bpe(w.as_bytes(), &mut fast);
            assert_eq!(fast, bpe_rescan(t, w.as_bytes()), "{w}");
        }
    }

    #[test]
    fn huge_word_is_fast() {
        let t0 = std::time::Instant::now();
        let n = tok().count_tokens(&"ab".repeat(100_000));
        assert!(n > 0);
        assert!(t0.elapsed().as_secs() < 20, "a 200 000-letter word took {:?}", t0.elapsed());
    }

    #[test]
    fn vocabulary_layout() {
        let t = tok();
        assert_eq!(t.vocab_size(), VOCAB_SIZE);
        assert_eq!(t.token(0), Some("!"));
        assert_eq!(t.token(256), Some("!</w>"));
        assert_eq!(t.token(BOS), Some(START_OF_TEXT));
        assert_eq!(t.token(EOS), Some(END_OF_TEXT));
        assert_eq!(t.token(320), Some("a</w>"));
        assert_eq!(t.token(VOCAB_SIZE as u32), None);
    }

    #[test]
    fn corgi_test_vector() {
        let ids = tok().encode_padded("a corgi running on the beach, golden hour, highly detailed", MAX_LEN);
        let head = [49406, 320, 31320, 2761, 525, 518, 2117, 267, 3878, 2232, 267, 5302, 12609, 49407];
        assert_eq!(ids.len(), 77);
        assert_eq!(&ids[..14], &head);
        assert!(ids[14..].iter().all(|&i| i == PAD));
    }

    #[test]
    fn empty_and_whitespace() {
        let mut empty = vec![BOS];
        empty.resize(77, EOS);
        assert_eq!(tok().encode_padded("", 77), empty);
        assert_eq!(tok().encode_padded(" \t\n ", 77), empty);
        assert_eq!(tok().encode_padded("x", 1), vec![BOS]);
        assert_eq!(tok().encode_padded("x", 0), Vec::<u32>::new());
    }

    /// Cases checked against transformers 5.24 `CLIPTokenizer` built from this vocabulary
    /// (content ids; the 100-word case shows the truncation to 75).
    #[test]
    fn transformers_cases() {
        let cases: &[(&str, &[u32])] = &[
            ("a corgi running on the beach, golden hour, highly detailed", &[320, 31320, 2761, 525, 518, 2117, 267, 3878, 2232, 267, 5302, 12609]),
            ("", &[]),
            ("   ", &[]),
            ("Hello World", &[3306, 1002]),
            ("(masterpiece:1.2), best quality, 8k uhd", &[263, 12066, 281, 272, 269, 273, 2361, 949, 3027, 267, 279, 330, 84, 4414]),
            ("it's a dog's life, don't you think? we'll see; they've gone", &[585, 568, 320, 1929, 568, 970, 267, 847, 713, 592, 1331, 286, 649, 1342, 862, 282, 889, 1200, 3601]),
            ("Caf\u{e9} na\u{ef}ve r\u{e9}sum\u{e9}", &[15304, 1097, 35689, 563, 29106, 7054, 4166]),
            ("\u{201c}curly quotes\u{201d} and \u{2019}apostrophes\u{2019}", &[728, 506, 20795, 5808, 728, 507, 537, 728, 503, 4089, 3121, 745, 542, 728, 503]),
            ("tabs\tand\nnewlines\r\n  spaces", &[29163, 537, 1218, 3418, 9006]),
            ("emoji \u{1f436}\u{1f525} test", &[16327, 14466, 3016, 1628]),
            ("1234567890 3.14 1e-5", &[272, 273, 274, 275, 276, 277, 278, 279, 280, 271, 274, 269, 272, 275, 272, 324, 268, 276]),
            ("&amp; &lt; &gt;", &[261, 6259, 282, 261, 3333, 282, 261, 4725, 282]),
            ("<|endoftext|> special <|startoftext|>", &[49407, 1689, 49406]),
            ("\u{65e5}\u{672c}\u{8a9e}\u{306e}\u{30c6}\u{30ad}\u{30b9}\u{30c8} \u{4e2d}\u{6587}", &[39121, 44353, 34002, 252, 21575, 2429, 228, 47121, 32421, 486, 19759, 255, 29032, 485]),
            ("\u{c0}\u{c9}\u{ce}\u{d5}\u{dc} \u{3a3}\u{391}\u{3a3} \u{130}stanbul", &[36149, 3459, 48704, 127, 113, 47177, 139, 225, 138, 109, 139, 481, 328, 16384, 11231]),
            ("a_b-c.d/e\\f", &[320, 318, 321, 268, 322, 269, 323, 270, 324, 315, 325]),
            ("don't!!! ... ???", &[847, 713, 995, 678, 3824]),
            ("CAPS LOCK IS ON", &[23185, 4381, 533, 525]),
            ("x'sy 's 'S", &[343, 568, 344, 568, 568]),
            ("word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word", &[2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653, 2653]),
            ("\u{fb01} ligature \u{2460} \u{216b} \u{ff12}", &[171, 105, 479, 19915, 4490, 158, 239, 510, 158, 227, 375, 171, 120, 496]),
            ("e\u{301} combining", &[4166, 23561]),
            ("zero\u{200b}width", &[5848, 9844, 23571]),
            ("nbsp\u{a0}here", &[6459, 4393, 763]),
            ("\u{3000}ideographic space", &[1909, 78, 4245, 2138]),
            ("x<|endoftext|>y", &[343, 49407, 344]),
            ("a  <|endoftext|>  b", &[320, 49407, 321]),
            ("<|ENDOFTEXT|>", &[27, 347, 40786, 4160, 91, 285]),
        ];
        for (text, content) in cases {
            let mut expected = vec![BOS];
            expected.extend_from_slice(content);
            expected.push(EOS);
            expected.resize(MAX_LEN, PAD);
            assert_eq!(tok().encode_padded(text, MAX_LEN), expected, "{text:?}");
        }
    }

    #[test]
    fn truncates_to_75() {
        let text = "word ".repeat(100);
        let t = tok();
        assert_eq!(t.count_tokens(&text), 100);
        let ids = t.encode_padded(&text, 77);
        assert_eq!(ids.len(), 77);
        assert_eq!(ids[0], BOS);
        assert_eq!(ids[76], EOS);
        assert!(ids[1..76].iter().all(|&i| i == ids[1]));
    }

    #[test]
    fn rejects_bad_vocab() {
        assert_eq!(ClipTokenizer::from_bpe_text("#v\na b\n").unwrap_err(), TokenizerError::TooFewMerges { found: 1 });
        assert!(matches!(ClipTokenizer::from_bpe_text("#v\nabc\n"), Err(TokenizerError::BadMergeLine { .. })));
        assert!(matches!(ClipTokenizer::from_bpe_text("#v\nxy z\n"), Err(TokenizerError::UnknownSymbol { .. })));
        assert!(matches!(ClipTokenizer::from_bpe_bytes(&[0x1f, 0x8b, 8, 0, 0, 0]), Err(TokenizerError::Gzip(_))));
        assert!(matches!(ClipTokenizer::from_bpe_bytes(&[0xff, 0xfe]), Err(TokenizerError::NotUtf8)));
    }
}
