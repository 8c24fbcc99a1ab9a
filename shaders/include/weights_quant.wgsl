// Group-quantized weights for matmul/conv kernels, dequantized on read (src/quant.rs):
// row-major [rows, kdim] values of QBITS bits (8: int8, 4: int4) packed 32/QBITS per u32
// (element e at word e / (32/QBITS), bit (e % (32/QBITS))·QBITS), one f16 scale (and, when
// QASYM, one f16 minimum) per group of QGROUP consecutive k. Scales/minimums are f16 pairs in
// u32 words, read with unpack2x16float, so no shader-f16 is needed. wload() reads one value,
// wload4() four consecutive k (k % 4 == 0; groups are multiples of 8, so the four share one
// scale and one word).
//   symmetric:  w = signed(q)·scale        asymmetric: w = unsigned(q)·scale + min
@group(0) @binding(9) var<storage, read> wq: array<u32>;
@group(0) @binding(10) var<storage, read> wscale: array<u32>;
@group(0) @binding(11) var<storage, read> wmin: array<u32>;

fn wload(row: u32, k: u32, kdim: u32) -> f32 {
    let per_word = 32u / QBITS;
    let e = row * kdim + k;
    let word = wq[e / per_word];
    let shift = (e % per_word) * QBITS;
    let g = row * (kdim / QGROUP) + k / QGROUP;
    let scale = unpack2x16float(wscale[g / 2u])[g % 2u];
    if (QASYM) {
        return f32(extractBits(word, shift, QBITS)) * scale + unpack2x16float(wmin[g / 2u])[g % 2u];
    }
    return f32(extractBits(bitcast<i32>(word), shift, QBITS)) * scale;
}

fn wload4(row: u32, k: u32, kdim: u32) -> vec4<f32> {
    let per_word = 32u / QBITS;
    let e = row * kdim + k;
    let word = wq[e / per_word];
    let shift = (e % per_word) * QBITS;
    let g = row * (kdim / QGROUP) + k / QGROUP;
    let scale = unpack2x16float(wscale[g / 2u])[g % 2u];
    if (QASYM) {
        let q = vec4<f32>(f32(extractBits(word, shift, QBITS)), f32(extractBits(word, shift + QBITS, QBITS)),
                          f32(extractBits(word, shift + 2u * QBITS, QBITS)), f32(extractBits(word, shift + 3u * QBITS, QBITS)));
        return q * scale + unpack2x16float(wmin[g / 2u])[g % 2u];
    }
    let sw = bitcast<i32>(word);
    let q = vec4<f32>(f32(extractBits(sw, shift, QBITS)), f32(extractBits(sw, shift + QBITS, QBITS)),
                      f32(extractBits(sw, shift + 2u * QBITS, QBITS)), f32(extractBits(sw, shift + 3u * QBITS, QBITS)));
    return q * scale;
}
