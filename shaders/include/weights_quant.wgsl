// Group-quantized weights (src/quant.rs) in the K-major layout w[k, n]: QBITS-bit values
// (8: int8, 4: int4) packed 32/QBITS per u32 along n (element (k, n) at word
// (k·ncols + n) / (32/QBITS), bit ((k·ncols + n) % (32/QBITS))·QBITS); one f16 scale (and,
// when QASYM, one f16 minimum) per output n and group of QGROUP consecutive k, stored
// [k / QGROUP, n] as f16 pairs in u32 words (read with unpack2x16float: no shader-f16
// needed). Dequantized on read:
//   symmetric:  w = signed(q)·scale        asymmetric: w = unsigned(q)·scale + min
// ncols % 8 == 0, so the four values of wrow(k, n, ..) (n % 4 == 0) sit in one word.
@group(0) @binding(9) var<storage, read> wq: array<u32>;
@group(0) @binding(10) var<storage, read> wscale: array<u32>;
@group(0) @binding(11) var<storage, read> wmin: array<u32>;

fn wrow(k: u32, n: u32, ncols: u32) -> vec4<f32> {
    let per_word = 32u / QBITS;
    let nn = min(n, ncols - 4u);
    let e = k * ncols + nn;
    let word = wq[e / per_word];
    let shift = (e % per_word) * QBITS;
    // Scales of columns nn..nn+4 (nn is a multiple of 4: two whole u32 words).
    let g = (k / QGROUP) * ncols + nn;
    let s = vec4<f32>(unpack2x16float(wscale[g / 2u]), unpack2x16float(wscale[g / 2u + 1u]));
    if (QASYM) {
        let q = vec4<f32>(f32(extractBits(word, shift, QBITS)), f32(extractBits(word, shift + QBITS, QBITS)),
                          f32(extractBits(word, shift + 2u * QBITS, QBITS)), f32(extractBits(word, shift + 3u * QBITS, QBITS)));
        let mn = vec4<f32>(unpack2x16float(wmin[g / 2u]), unpack2x16float(wmin[g / 2u + 1u]));
        return q * s + mn;
    }
    let sw = bitcast<i32>(word);
    let q = vec4<f32>(f32(extractBits(sw, shift, QBITS)), f32(extractBits(sw, shift + QBITS, QBITS)),
                      f32(extractBits(sw, shift + 2u * QBITS, QBITS)), f32(extractBits(sw, shift + 3u * QBITS, QBITS)));
    return q * s;
}
