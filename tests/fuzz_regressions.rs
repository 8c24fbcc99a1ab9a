//! Parser hardening on the stable toolchain: replays the committed fuzz corpus
//! (`tests/fuzz_corpus/<target>/`, crashes the fuzzers found plus hand-made nasty cases) through
//! the same entry functions the cargo-fuzz targets call (`load::fuzz_entry`), checks that every
//! nasty case is a typed error naming the file, and that every truncation of small valid files
//! is an error rather than a panic.
//!
//! Corpus naming: `bad-*` files must return an error; any other file (a former crash) must
//! just return without panicking. `cargo test --test fuzz_regressions -- --ignored
//! write_corpus` regenerates the `bad-*` files from [`nasty_cases`] and the `seed-*` files.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use animatediff_wgpu::load::archive::FileDType;
use animatediff_wgpu::load::ckpt::fixture::{strides, torch_save, zip_stored, Pickle};
use animatediff_wgpu::load::fuzz_entry::{FuzzError, FuzzResult, TARGETS};

/// Nasty cases larger than this (the recursion bombs) are only generated in memory, to keep
/// the committed corpus small.
const MAX_COMMITTED: usize = 16 << 10;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus")
}

fn entry(target: &str) -> fn(&[u8]) -> FuzzResult {
    TARGETS.iter().find(|(n, _)| *n == target).map(|(_, f)| *f).unwrap_or_else(|| panic!("no fuzz target `{target}`"))
}

/// Run one input; a panic becomes `Err(message)`.
fn run(target: &str, data: &[u8]) -> Result<FuzzResult, String> {
    let f = entry(target);
    catch_unwind(AssertUnwindSafe(|| f(data))).map_err(|p| {
        p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "panic".into())
    })
}

/// A nasty input must be an error, and load errors must name the file they came from.
fn check_typed_error(target: &str, name: &str, r: Result<FuzzResult, String>) -> Option<String> {
    match r {
        Err(p) => Some(format!("{target}/{name}: PANIC {p}")),
        Ok(Ok(())) => Some(format!("{target}/{name}: accepted, expected an error")),
        Ok(Err(e)) => {
            let msg = e.to_string();
            let names_file = match &e {
                FuzzError::Load(_) | FuzzError::Crate(animatediff_wgpu::Error::Load(_)) => msg.contains("fuzz"),
                _ => true,
            };
            (!names_file || msg.is_empty()).then(|| format!("{target}/{name}: error does not name the file: {msg}"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-made nasty inputs

fn st(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

fn st_raw_len(len: u64, rest: &[u8]) -> Vec<u8> {
    let mut v = len.to_le_bytes().to_vec();
    v.extend_from_slice(rest);
    v
}

/// A `torch.save`-style zip around a hand-written pickle, with storages `data/<key>`.
fn ckpt_with(pickle: &[u8], storages: &[(&str, &[u8])]) -> Vec<u8> {
    let mut files: Vec<(String, Vec<u8>)> = vec![("archive/data.pkl".into(), pickle.to_vec())];
    for (k, d) in storages {
        files.push((format!("archive/data/{k}"), d.to_vec()));
    }
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    zip_stored(&refs, false)
}

/// `{name: tensor}` pickled the way torch does, with a free choice of storage size, offset,
/// shape and stride.
fn one_tensor_pickle(dtype: FileDType, storage_numel: u64, offset: u64, shape: &[u64], stride: &[u64]) -> Vec<u8> {
    let mut p = Pickle::new();
    p.op(b'}').put();
    p.str("w");
    p.tensor(dtype, "0", storage_numel, offset, shape, stride);
    p.op(b's').op(b'.');
    p.out
}

fn small_ckpt() -> Vec<u8> {
    let f32b = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    torch_save(&[("a.weight", FileDType::F32, &[2, 2], f32b(&[1.0, 2.0, 3.0, 4.0])), ("b", FileDType::F32, &[1], f32b(&[5.0]))], false, false)
}

/// A valid small safetensors with one tensor per dtype class.
fn small_safetensors() -> Vec<u8> {
    let h = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1,1],"data_offsets":[4,8]},"c":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]},"d":{"dtype":"U8","shape":[4],"data_offsets":[12,16]}}"#;
    st(h, &[0x00, 0x3c, 0x00, 0xc0, 0, 0, 0x80, 0x3f, 0x80, 0x3f, 0x00, 0x40, 1, 2, 3, 4])
}

/// A small valid kohya LoRA (one UNet attention module).
fn small_lora() -> Vec<u8> {
    let h = r#"{"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight":{"dtype":"F32","shape":[1,4],"data_offsets":[0,16]},"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight":{"dtype":"F32","shape":[4,1],"data_offsets":[16,32]},"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.alpha":{"dtype":"F32","shape":[],"data_offsets":[32,36]}}"#;
    let data: Vec<u8> = [0.5f32, 0.25, -0.5, 1.0, 1.0, 2.0, 3.0, 4.0, 1.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    st(h, &data)
}

/// Every nasty case: (target, name, bytes). All must be typed errors.
fn nasty_cases() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let d8 = [0u8; 8];
    let mut v: Vec<(&str, &str, Vec<u8>)> = vec![
        // safetensors: lying header lengths, huge shapes, bad offsets, duplicates, encodings.
        ("safetensors", "header-len-100gb", st_raw_len(100 << 30, b"{}")),
        ("safetensors", "header-len-u64-max", st_raw_len(u64::MAX, b"{\"a\":1}")),
        ("safetensors", "header-len-past-end", st_raw_len(64, b"{\"a\":{}}")),
        ("safetensors", "header-len-zero", st_raw_len(0, b"{}")),
        ("safetensors", "shorter-than-length", vec![7, 0, 0]),
        ("safetensors", "shape-100gb", st(r#"{"a":{"dtype":"F32","shape":[25000000000],"data_offsets":[0,100000000000]}}"#, &d8)),
        ("safetensors", "shape-100gb-offsets-fit", st(r#"{"a":{"dtype":"F32","shape":[25000000000],"data_offsets":[0,8]}}"#, &d8)),
        ("safetensors", "shape-overflow", st(r#"{"a":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,8]}}"#, &d8)),
        ("safetensors", "shape-zero-times-huge", st(r#"{"a":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,8]}}"#, &d8)),
        ("safetensors", "shape-huge-times-zero", st(r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}}"#, &[])),
        ("safetensors", "shape-zero-then-huge", st(r#"{"a":{"dtype":"F32","shape":[0,1099511627776,1099511627776],"data_offsets":[0,0]}}"#, &[])),
        ("safetensors", "shape-negative", st(r#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, &d8)),
        ("safetensors", "shape-float", st(r#"{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#, &d8)),
        ("safetensors", "offsets-overlap", st(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, &d8)),
        ("safetensors", "offsets-same-range", st(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, &d8)),
        ("safetensors", "offsets-hole", st(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, &d8)),
        ("safetensors", "offsets-reversed", st(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}"#, &d8)),
        ("safetensors", "offsets-u64-max", st(r#"{"a":{"dtype":"U8","shape":[8],"data_offsets":[18446744073709551607,18446744073709551615]}}"#, &d8)),
        ("safetensors", "offsets-three", st(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}}"#, &d8)),
        ("safetensors", "dtype-size-mismatch", st(r#"{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}}"#, &d8)),
        ("safetensors", "dtype-unknown", st(r#"{"a":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}"#, &d8)),
        ("safetensors", "dtype-not-string", st(r#"{"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}"#, &d8)),
        ("safetensors", "duplicate-names", st(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, &d8)),
        ("safetensors", "duplicate-metadata", st(r#"{"__metadata__":{},"__metadata__":{},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, &d8)),
        ("safetensors", "metadata-not-object", st(r#"{"__metadata__":[1,2],"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, &d8)),
        ("safetensors", "entry-not-object", st(r#"{"a":"F32"}"#, &d8)),
        ("safetensors", "header-not-object", st(r#"{"a":1}"#.replace('{', "[").as_str(), &d8)),
        ("safetensors", "trailing-data", st(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, &d8)),
        ("safetensors", "truncated-json", st(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#, &d8)),
        ("safetensors", "deep-json", st(&format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000)), &d8)),
    ];
    // Names that are not UTF-8: the JSON must be rejected, not lossily accepted.
    let mut h = br#"{"a"#.to_vec();
    h.extend([0xff, 0xfe]);
    h.extend(br#"":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#);
    let mut non_utf8 = (h.len() as u64).to_le_bytes().to_vec();
    non_utf8.extend(&h);
    non_utf8.extend(d8);
    v.push(("safetensors", "non-utf8-name", non_utf8));

    // .ckpt: zip lies.
    let good = small_ckpt();
    let eocd = good.len() - 22;
    let mut cd_past_end = good.clone();
    cd_past_end[eocd + 16..eocd + 20].copy_from_slice(&u32::MAX.to_le_bytes()[..]);
    cd_past_end[eocd + 16] = 0xfe; // offset 0xfffffffe: not the zip64 marker, past the end
    v.push(("ckpt", "zip-cd-offset-past-end", cd_past_end));
    let mut cd_huge = good.clone();
    cd_huge[eocd + 12..eocd + 16].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
    v.push(("ckpt", "zip-cd-size-huge", cd_huge));
    let mut many = good.clone();
    many[eocd + 10..eocd + 12].copy_from_slice(&0xfffeu16.to_le_bytes());
    v.push(("ckpt", "zip-entry-count-lies", many));
    let mut zip64_lie = good.clone();
    zip64_lie[eocd + 10..eocd + 12].copy_from_slice(&0xffffu16.to_le_bytes());
    v.push(("ckpt", "zip64-locator-missing", zip64_lie));
    let mut deflate = good.clone();
    // Every central-directory entry's method → deflate.
    let mut i = 0;
    while let Some(p) = deflate[i..].windows(4).position(|w| w == b"PK\x01\x02") {
        let at = i + p;
        deflate[at + 10] = 8;
        i = at + 4;
    }
    v.push(("ckpt", "zip-deflated-entries", deflate));
    let mut lho = good.clone();
    if let Some(p) = lho.windows(4).position(|w| w == b"PK\x01\x02") {
        lho[p + 42..p + 46].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
    }
    v.push(("ckpt", "zip-local-header-past-end", lho));
    v.push(("ckpt", "zip-no-eocd", good[..good.len() - 22].to_vec()));
    v.push(("ckpt", "zip-without-data-pkl", zip_stored(&[("archive/other.pkl", b"\x80\x02}.")], false)));
    v.push(("ckpt", "legacy-pickle", b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec()));

    // .ckpt: pickles that name foreign code, use opcodes outside the subset, or bomb.
    let pk = |body: &[u8]| {
        let mut p = vec![0x80, 2];
        p.extend_from_slice(body);
        p
    };
    let foreign: &[(&str, &[u8])] = &[
        ("global-os-system", b"cos\nsystem\n(S'echo pwned'\ntR."),
        ("global-builtins-eval", b"cbuiltins\neval\n(X\x04\x00\x00\x001+1tR."),
        ("global-subprocess", b"csubprocess\ncheck_output\n."),
        ("global-torch-load", b"ctorch\nload\n."),
        ("global-numpy-reconstruct", b"cnumpy.core.multiarray\n_reconstruct\n."),
        ("stack-global-builtins-exec", b"\x8c\x08builtins\x8c\x04exec\x93."),
        ("stack-global-posix-system", b"\x8c\x05posix\x8c\x06system\x93\x8c\x02id\x85R."),
        ("opcode-inst", b"(ios\nsystem\nS'id'\n."),
        ("opcode-obj", b"(cos\nsystem\nS'id'\no."),
        ("opcode-ext1", b"\x82\x01."),
        ("opcode-persid-text", b"Pfoo\n."),
        ("opcode-string-text", b"S'abc'\n."),
        ("opcode-newobj-ex", b"cos\nsystem\n)}\x92."),
        ("reduce-on-string", b"X\x01\x00\x00\x00a)R."),
        ("storage-constructed", b"ctorch\nFloatStorage\n)R."),
        ("protocol-9", b"\x80\x09}."),
    ];
    for (name, body) in foreign {
        v.push(("pickle", name, pk(body)));
        let mut p = pk(body);
        p.drain(..2);
        v.push(("ckpt", name, ckpt_with(&pk(&p), &[])));
    }
    // Recursion bombs: nesting a million deep must neither overflow the stack nor hang.
    let mut deep_marks = vec![0x80, 2];
    deep_marks.extend(std::iter::repeat_n(b'(', 200_000));
    deep_marks.extend(std::iter::repeat_n(b'l', 200_000));
    deep_marks.push(b'.');
    v.push(("pickle", "bomb-nested-lists", deep_marks));
    let mut deep_tuples = vec![0x80, 2, b')'];
    deep_tuples.extend(std::iter::repeat_n(0x85, 500_000));
    deep_tuples.push(b'.');
    v.push(("pickle", "bomb-nested-tuples", deep_tuples));
    let mut deep_memo = vec![0x80, 2, b']', b'q', 0];
    for _ in 0..100_000 {
        deep_memo.extend([b']', b'q', 1, b'h', 0, b'a', b'q', 0, b'0']);
    }
    deep_memo.extend([b'h', 0, b'.']);
    v.push(("pickle", "bomb-memo-chain", deep_memo));
    v.push(("pickle", "cycle-list-contains-itself", pk(b"]q\x00h\x00a.")));
    // Nesting dropped in the middle of the run (POP), not at the end: no recursive drop either.
    let mut popped_lists = vec![0x80, 2];
    popped_lists.extend(std::iter::repeat_n(b'(', 200_000));
    popped_lists.extend(std::iter::repeat_n(b'l', 200_000));
    popped_lists.extend(b"0K\x01.");
    v.push(("pickle", "bomb-nested-lists-popped", popped_lists));
    let mut popped_tuples = vec![0x80, 2, b')'];
    popped_tuples.extend(std::iter::repeat_n(0x85, 500_000));
    popped_tuples.extend(b"0K\x01.");
    v.push(("pickle", "bomb-nested-tuples-popped", popped_tuples));
    // Found by the fuzzer (LeakSanitizer): lists appended into themselves (DUP, APPENDS) and
    // then popped off the stack leaked their cycles.
    v.push(("pickle", "cycle-popped", b"]]]]](]]]]]e]]]]]]]]]]]]]]]]2](]]]]]](]]]]]e]]]N]]]]]]]]]]]]2(]]]]]]ea102]]]]]]ea]]]]]].".to_vec()));
    let mut dup = vec![0x80, 2, b']'];
    dup.extend(std::iter::repeat_n(b'2', 300_000));
    dup.push(b'.');
    v.push(("pickle", "bomb-dup", dup));
    v.push(("pickle", "binunicode-length-4gb", pk(b"X\xff\xff\xff\xff\x00.")));
    v.push(("pickle", "binunicode8-length-u64-max", pk(b"\x8d\xff\xff\xff\xff\xff\xff\xff\xff.")));
    v.push(("pickle", "binbytes8-huge", pk(b"\x8e\x00\x00\x00\x00\x01\x00\x00\x00.")));
    v.push(("pickle", "long4-huge", pk(b"\x8b\xff\xff\xff\x7f\x00.")));
    v.push(("pickle", "long-wider-than-64", pk(b"\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09}.")));
    v.push(("pickle", "non-utf8-string", pk(b"X\x02\x00\x00\x00\xff\xfe.")));
    v.push(("pickle", "stack-underflow", pk(b"s.")));
    v.push(("pickle", "pop-mark-without-mark", pk(b"1.")));
    v.push(("pickle", "memo-get-missing", pk(b"h\x07.")));
    v.push(("pickle", "empty", vec![]));
    v.push(("pickle", "no-stop", pk(b"}")));
    v.push(("pickle", "not-a-dict", pk(b"K\x01.")));
    // State dicts whose tensors lie about their storage.
    let f4 = [0u8; 16];
    v.push(("ckpt", "tensor-100gb-shape", ckpt_with(&one_tensor_pickle(FileDType::F32, 4, 0, &[25_000_000_000], &[1]), &[("0", &f4)])));
    v.push(("ckpt", "storage-100gb-declared", ckpt_with(&one_tensor_pickle(FileDType::F32, 25_000_000_000, 0, &[4], &[1]), &[("0", &f4)])));
    v.push(("ckpt", "tensor-outside-storage", ckpt_with(&one_tensor_pickle(FileDType::F32, 4, 2, &[4], &[1]), &[("0", &f4)])));
    v.push(("ckpt", "offset-u63", ckpt_with(&one_tensor_pickle(FileDType::F32, 4, i64::MAX as u64, &[1], &[1]), &[("0", &f4)])));
    v.push(("ckpt", "shape-overflow", ckpt_with(&one_tensor_pickle(FileDType::F32, 4, 0, &[1 << 62, 1 << 62], &[1 << 62, 1]), &[("0", &f4)])));
    v.push(("ckpt", "non-contiguous-stride", ckpt_with(&one_tensor_pickle(FileDType::F32, 4, 0, &[2, 2], &[1, 2]), &[("0", &f4)])));
    v.push(("ckpt", "zero-stride-broadcast", ckpt_with(&one_tensor_pickle(FileDType::F32, 1, 0, &[1_000_000_000], &[0]), &[("0", &f4[..4])])));
    v.push(("ckpt", "storage-entry-missing", ckpt_with(&one_tensor_pickle(FileDType::F32, 4, 0, &[4], &strides(&[4])), &[])));
    let mut two = Pickle::new();
    two.op(b'}').put().op(b'(');
    two.str("w").tensor(FileDType::F32, "0", 4, 0, &[4], &[1]);
    two.str("w").tensor(FileDType::F32, "0", 4, 0, &[4], &[1]);
    two.op(b'u').op(b'.');
    v.push(("ckpt", "duplicate-tensor-names", ckpt_with(&two.out, &[("0", &f4)])));
    let mut clash = Pickle::new();
    clash.op(b'}').put().op(b'(');
    clash.str("w").tensor(FileDType::F32, "0", 4, 0, &[4], &[1]);
    clash.str("v").tensor(FileDType::F16, "0", 8, 0, &[8], &[1]);
    clash.op(b'u').op(b'.');
    v.push(("ckpt", "storage-described-twice", ckpt_with(&clash.out, &[("0", &f4)])));
    let pkl = one_tensor_pickle(FileDType::F32, 4, 0, &[4], &[1]);
    v.push(("ckpt", "big-endian", zip_stored(&[("archive/data.pkl", &pkl), ("archive/byteorder", b"big"), ("archive/data/0", &f4)], false)));

    // LoRA: structure lies.
    let f = |vals: &[f32]| vals.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let m = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q";
    v.push(("lora", "no-lora-tensors", st(r#"{"model.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, &d8)));
    v.push(("lora", "rank-mismatch", st(&format!(r#"{{"{m}.lora_down.weight":{{"dtype":"F32","shape":[1,4],"data_offsets":[0,16]}},"{m}.lora_up.weight":{{"dtype":"F32","shape":[2,2],"data_offsets":[16,32]}}}}"#), &f(&[1.0; 8]))));
    v.push(("lora", "rank-zero", st(&format!(r#"{{"{m}.lora_down.weight":{{"dtype":"F32","shape":[0,4],"data_offsets":[0,0]}},"{m}.lora_up.weight":{{"dtype":"F32","shape":[4,0],"data_offsets":[0,0]}}}}"#), &[])));
    v.push(("lora", "zero-dims-overflow", st(&format!(r#"{{"{m}.lora_down.weight":{{"dtype":"F32","shape":[1,4294967296,4294967296,0],"data_offsets":[0,0]}},"{m}.lora_up.weight":{{"dtype":"F32","shape":[4294967296,1,0],"data_offsets":[0,0]}}}}"#), &[])));
    // A zero-sized pair whose other dimensions multiply past usize (the shape products of
    // LoRA matching must not overflow).
    v.push(("lora", "zero-dims-overflow-fits", st(&format!(r#"{{"{m}.lora_down.weight":{{"dtype":"F32","shape":[1,4294967296,4294967296,0],"data_offsets":[0,0]}},"{m}.lora_up.weight":{{"dtype":"F32","shape":[0,1],"data_offsets":[0,0]}}}}"#), &[])));
    v.push(("lora", "zero-rows-huge-cols", st(&format!(r#"{{"{m}.lora_down.weight":{{"dtype":"F32","shape":[1,0,4611686018427387904,4611686018427387904],"data_offsets":[0,0]}},"{m}.lora_up.weight":{{"dtype":"F32","shape":[4,1],"data_offsets":[0,16]}}}}"#), &f(&[1.0; 4]))));
    v.push(("lora", "alpha-not-scalar", st(&format!(r#"{{"{m}.lora_down.weight":{{"dtype":"F32","shape":[1,4],"data_offsets":[0,16]}},"{m}.lora_up.weight":{{"dtype":"F32","shape":[4,1],"data_offsets":[16,32]}},"{m}.alpha":{{"dtype":"F32","shape":[2],"data_offsets":[32,40]}}}}"#), &f(&[1.0; 10]))));
    v.push(("lora", "alpha-nan", st(&format!(r#"{{"{m}.lora_down.weight":{{"dtype":"F32","shape":[1,4],"data_offsets":[0,16]}},"{m}.lora_up.weight":{{"dtype":"F32","shape":[4,1],"data_offsets":[16,32]}},"{m}.alpha":{{"dtype":"F32","shape":[],"data_offsets":[32,36]}}}}"#), &f(&[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, f32::NAN]))));
    v.push(("lora", "dora", st(r#"{"__metadata__":{"lora_adapter_metadata":"{\"use_dora\":true}"},"unet.a.lora_A.weight":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]},"unet.a.lora_B.weight":{"dtype":"F32","shape":[1,1],"data_offsets":[4,8]}}"#, &d8)));
    v.push(("lora", "lokr", st(&format!(r#"{{"{m}.lokr_w1":{{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}}}"#), &d8)));
    v.push(("lora", "two-downs", st(&format!(r#"{{"{m}.lora_down.weight":{{"dtype":"F32","shape":[1],"data_offsets":[0,4]}},"{m}.lora_down.weight ":{{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}}}"#), &d8)));
    v.push(("lora", "not-a-weight-file", b"hello, this is not a LoRA".to_vec()));

    // Quantized pipeline metadata.
    let q = |meta: &str| st(&format!(r#"{{"__metadata__":{meta},"unet.x":{{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}}}"#), &d8);
    v.push(("quantized", "scheme-unknown", q(r#"{"animatediff.quantization":"{\"scheme\":\"evil/v9\",\"weights\":\"q8\"}"}"#)));
    v.push(("quantized", "quantization-not-json", q(r#"{"animatediff.quantization":"{not json"}"#)));
    v.push(("quantized", "weights-q3", q(r#"{"animatediff.quantization":"{\"scheme\":\"animatediff-wgpu/quant-v1\",\"weights\":\"q3\"}"}"#)));
    v.push(("quantized", "configs-missing", q(r#"{"animatediff.quantization":"{\"scheme\":\"animatediff-wgpu/quant-v1\",\"weights\":\"q8\"}"}"#)));
    v.push((
        "quantized",
        "unet-config-garbage",
        q(r#"{"animatediff.quantization":"{\"scheme\":\"animatediff-wgpu/quant-v1\",\"weights\":\"q4\"}","animatediff.unet_config":"[[[[["}"#),
    ));

    // Tokenizer: BPE merges files (0xff prefix selects the vocabulary parser).
    v.push(("tokenizer", "bpe-not-utf8", vec![0xff, 0xc3, 0x28]));
    v.push(("tokenizer", "bpe-gzip-corrupt", vec![0xff, 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 1, 2, 3]));
    v.push(("tokenizer", "bpe-too-few-merges", [&[0xffu8][..], b"#version: 0.2\na b\n"].concat()));
    v.push(("tokenizer", "bpe-bad-line", [&[0xffu8][..], b"#version: 0.2\na b c\n"].concat()));
    v.push(("tokenizer", "bpe-unknown-symbol", [&[0xffu8][..], "#version: 0.2\n\u{4e2d} b\n".as_bytes()].concat()));
    v.push(("tokenizer", "bpe-duplicate-merge", [&[0xffu8][..], b"#version: 0.2\na b\na b\n"].concat()));

    // Config files: first byte picks the parser (0 unet, 1 motion, 2 vae, 3 clip, 4 scheduler).
    let c = |which: u8, text: &str| [&[which][..], text.as_bytes()].concat();
    v.push(("config", "unet-deep-json", c(0, &format!("{}{}", "[".repeat(50_000), "]".repeat(50_000)))));
    v.push(("config", "unet-not-object", c(0, "[1,2,3]")));
    v.push(("config", "unet-channels-negative", c(0, r#"{"block_out_channels":[-320,640]}"#)));
    v.push(("config", "unet-channels-huge", c(0, r#"{"block_out_channels":[1e300]}"#)));
    v.push(("config", "motion-not-json", c(1, "{motion")));
    v.push(("config", "vae-wrong-types", c(2, r#"{"latent_channels":"four"}"#)));
    v.push(("config", "clip-hidden-size-string", c(3, r#"{"hidden_size":"768"}"#)));
    v.push(("config", "scheduler-not-object", c(4, "42")));
    v.push(("config", "scheduler-train-steps-1", c(4, r#"{"num_train_timesteps":1}"#)));
    v.push(("config", "scheduler-train-steps-huge", c(4, r#"{"num_train_timesteps":1000000000000000}"#)));
    v.push(("config", "scheduler-beta-schedule-unknown", c(4, r#"{"beta_schedule":"cosine_of_doom"}"#)));
    v.push(("config", "scheduler-trained-betas-short", c(4, r#"{"trained_betas":[0.1,0.2]}"#)));
    v
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn nasty_cases_are_typed_errors() {
    let mut failures = Vec::new();
    for (target, name, data) in nasty_cases() {
        if let Some(f) = check_typed_error(target, name, run(target, &data)) {
            failures.push(f);
        }
    }
    assert!(failures.is_empty(), "{} nasty inputs misbehaved:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn committed_corpus_replays() {
    let mut failures = Vec::new();
    let mut replayed = 0usize;
    for (target, _) in TARGETS {
        let dir = corpus_dir().join(target);
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
        files.sort();
        for p in files {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let r = run(target, &data);
            replayed += 1;
            if name.starts_with("bad-") {
                if let Some(f) = check_typed_error(target, &name, r) {
                    failures.push(f);
                }
            } else if let Err(p) = r {
                failures.push(format!("{target}/{name}: PANIC {p}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} corpus inputs misbehaved:\n{}", failures.len(), failures.join("\n"));
    // The corpus is committed: an empty or missing directory means it was lost, not that all is well.
    let committed = nasty_cases().iter().filter(|c| c.2.len() <= MAX_COMMITTED).count();
    assert!(replayed >= committed, "only {replayed} corpus files under {}", corpus_dir().display());
}

/// Every strict prefix of a valid file is an error (never a panic, never a partial success).
#[test]
fn truncated_at_every_byte_is_an_error() {
    let cases: [(&str, Vec<u8>); 3] = [("safetensors", small_safetensors()), ("ckpt", small_ckpt()), ("lora", small_lora())];
    for (target, full) in cases {
        assert!(matches!(run(target, &full), Ok(Ok(()))), "{target}: the untruncated file must load");
        let mut failures = Vec::new();
        for n in 0..full.len() {
            if let Some(f) = check_typed_error(target, &format!("prefix {n}/{}", full.len()), run(target, &full[..n])) {
                failures.push(f);
            }
        }
        assert!(failures.is_empty(), "{target}: {} truncations misbehaved:\n{}", failures.len(), failures.join("\n"));
    }
}

/// The real tiny fixtures, cut at every byte of their header region and at a stride through
/// the data: errors, never panics.
#[test]
fn truncated_real_fixtures_are_errors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny");
    let files = [
        ("safetensors", "lora/kohya_ldm_paths.safetensors"),
        ("lora", "lora/kohya_ldm_paths.safetensors"),
        ("safetensors", "original/mm_tiny_v2.safetensors"),
        ("ckpt", "lora/motion_lora_orig.ckpt"),
        ("ckpt", "original/mm_tiny_v2_fp16.ckpt"),
    ];
    for (target, rel) in files {
        let full = std::fs::read(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(matches!(run(target, &full), Ok(Ok(()))), "{target}: {rel} must load");
        let header_end = if target == "ckpt" { 0 } else { 8 + u64::from_le_bytes(full[..8].try_into().unwrap()) as usize };
        let step = (full.len() / 300).max(1);
        let cuts = (0..header_end.min(full.len())).chain((header_end..full.len()).step_by(step)).chain(full.len().saturating_sub(64)..full.len());
        let mut failures = Vec::new();
        for n in cuts {
            if let Some(f) = check_typed_error(target, &format!("{rel} cut at {n}"), run(target, &full[..n])) {
                failures.push(f);
            }
        }
        assert!(failures.is_empty(), "{rel}: {} truncations misbehaved:\n{}", failures.len(), failures.join("\n"));
    }
}

/// Arbitrary text through the tokenizer: ids in the vocabulary, always 77 of them.
#[test]
fn tokenizer_arbitrary_text() {
    let inputs: [&[u8]; 7] = [
        b"",
        b" \xff\xfe\xfd not utf8 \xc3\x28",
        "<|startoftext|><|endoftext|><|endoftext".as_bytes(),
        "🦀🦀🦀 ẞ ǅ ﬁ \u{200b}\u{feff} Ⅻ ¼ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢".as_bytes(),
        "e\u{301}\u{301}\u{301}\u{301}\u{301}\u{301}\u{301}\u{301}\u{301}".as_bytes(),
        &[b'a'; 100_000],
        "a, ".repeat(20_000).as_bytes().to_vec().leak(),
    ];
    for data in inputs {
        assert!(matches!(run("tokenizer", data), Ok(Ok(()))), "{:?}", String::from_utf8_lossy(&data[..data.len().min(40)]));
    }
}

/// A small quantized-pipeline file: the tiny model's real configs in the metadata, one tensor
/// per component (a seed that reaches every metadata parser).
fn small_quantized() -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny");
    let read = |rel: &str| std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let meta = serde_json::json!({
        "animatediff.quantization": r#"{"scheme":"animatediff-wgpu/quant-v1","weights":"q8"}"#,
        "animatediff.unet_config": read("diffusers/unet/config.json"),
        "animatediff.motion_config": read("motion_adapter/config.json"),
        "animatediff.vae_config": read("diffusers/vae/config.json"),
        "animatediff.text_encoder_config": read("diffusers/text_encoder/config.json"),
        "animatediff.scheduler_config": read("diffusers/scheduler/scheduler_config.json"),
        "animatediff.motion": r#"{"version":"v2","original_naming":false}"#,
    });
    let mut h = serde_json::Map::new();
    h.insert("__metadata__".into(), meta);
    for (i, c) in ["unet", "vae", "text_encoder", "motion"].iter().enumerate() {
        h.insert(format!("{c}.x.weight"), serde_json::json!({"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]}));
    }
    st(&serde_json::Value::Object(h).to_string(), &[0u8; 16])
}

/// The pickle inside a `torch.save` zip.
fn data_pkl(zip: &[u8]) -> Vec<u8> {
    use animatediff_wgpu::load::ckpt::{read_zip_directory, zip_entry_data_offset};
    use animatediff_wgpu::load::source::{ByteSource, MemorySource};
    let src = MemorySource::new("seed", zip.to_vec());
    let dir = read_zip_directory(&src).unwrap();
    let e = dir.iter().find(|e| e.name.ends_with("data.pkl")).unwrap();
    let off = zip_entry_data_offset(&src, e).unwrap();
    let mut buf = vec![0u8; e.size as usize];
    src.read_at(off, &mut buf).unwrap();
    buf
}

/// Small valid inputs for the fuzzers to start from (`seed-*`: must not panic; most load).
fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny");
    let read = |rel: &str| std::fs::read(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let c = |which: u8, rel: &str| [vec![which], read(rel)].concat();
    vec![
        ("safetensors", "small", small_safetensors()),
        ("ckpt", "small", small_ckpt()),
        ("pickle", "small", data_pkl(&small_ckpt())),
        ("pickle", "motion-lora", data_pkl(&read("lora/motion_lora_orig.ckpt"))),
        ("lora", "small-kohya", small_lora()),
        ("quantized", "small", small_quantized()),
        ("tokenizer", "prompt", b"a corgi running on the beach, golden hour, highly detailed, 4k <|endoftext|>".to_vec()),
        ("tokenizer", "unicode", "caf\u{e9} na\u{ef}ve \u{1f980} \u{4e2d}\u{6587} don't 1234".as_bytes().to_vec()),
        ("tokenizer", "bpe-head", [vec![0xff], b"#version: 0.2\ni n\nt h\na n\nr e\n".to_vec()].concat()),
        ("config", "unet", c(0, "diffusers/unet/config.json")),
        ("config", "motion", c(1, "motion_adapter/config.json")),
        ("config", "vae", c(2, "diffusers/vae/config.json")),
        ("config", "clip", c(3, "diffusers/text_encoder/config.json")),
        ("config", "scheduler", c(4, "diffusers/scheduler/scheduler_config.json")),
    ]
}

#[test]
fn seeds_load() {
    for (target, name, data) in seeds() {
        let r = run(target, &data);
        let ok = matches!(r, Ok(Ok(())));
        // The BPE head has too few merges: an error, but a typed one.
        assert!(ok || name == "bpe-head" && matches!(r, Ok(Err(_))), "{target}/seed-{name}: {r:?}");
    }
}

/// Regenerates `tests/fuzz_corpus/<target>/bad-<name>` from [`nasty_cases`] and the `seed-*`
/// files. Run explicitly: `cargo test --test fuzz_regressions -- --ignored write_corpus`.
#[test]
#[ignore]
fn write_corpus() {
    let bad = nasty_cases().into_iter().filter(|c| c.2.len() <= MAX_COMMITTED).map(|(t, n, d)| (t, format!("bad-{n}"), d));
    let good = seeds().into_iter().map(|(t, n, d)| (t, format!("seed-{n}"), d));
    for (target, name, data) in bad.chain(good) {
        let dir = corpus_dir().join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), &data).unwrap();
    }
}
