// Group-quantized weights (layout: shaders/include/weights_quant.wgsl), four consecutive k at a
// time (k % 4 == 0; groups are multiples of 8, so the four share one scale and one word).
@group(0) @binding(9) var<storage, read> wq: array<u32>;
@group(0) @binding(10) var<storage, read> wscale: array<u32>;
@group(0) @binding(11) var<storage, read> wmin: array<u32>;

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
