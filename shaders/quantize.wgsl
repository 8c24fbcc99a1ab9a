// quantize: a dense K-major weight w[k, n] (f32, or f16 read as packed u32 pairs: no
// shader-f16 needed) → the group-quantized layout of include/weights_quant.wgsl: QBITS-bit
// codes packed PW = 32/QBITS per u32 along n, f16 scales (and, QASYM, f16 minimums) per
// output n and group of QGROUP consecutive k, stored [k / QGROUP, n] as f16 pairs in u32.
//
// Bit-exact with src/quant.rs (the CPU reference): one invocation owns PW neighbouring
// columns of one group (so it writes whole code words and whole scale words, no races);
// scales come from one correctly rounded multiply and a round-to-nearest-even f16
// conversion done in integer arithmetic (WGSL leaves f32→f16 rounding to the
// implementation); codes are decided with exact products (q ± ½)·s, never by the quotient
// alone (WGSL division is only accurate to 2.5 ulp).
//
// Host constants: QBITS (8 or 4), QGROUP, QASYM, F16_IN, WG; WT = f32 (F16_IN false) or u32.

struct Params {
    n: u32,
    // n / PW: code words per row of k.
    wcols: u32,
    // Invocations: groups in this chunk × wcols.
    count: u32,
    // 1 / (largest code): 1/127, 1/7 (symmetric), 1/255, 1/15 (asymmetric).
    rcp: f32,
}

const PW: u32 = 32u / QBITS;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<WT>;
@group(0) @binding(2) var<storage, read_write> words: array<u32>;
@group(0) @binding(3) var<storage, read_write> scales: array<u32>;
@group(0) @binding(4) var<storage, read_write> mins: array<u32>;

fn load_w(i: u32) -> f32 {
    if (F16_IN) {
        let pair = unpack2x16float(bitcast<u32>(w[i / 2u]));
        return select(pair.x, pair.y, (i & 1u) == 1u);
    }
    return bitcast<f32>(w[i]);
}

// f32 → f16 bits, round to nearest even (the `half` crate's conversion, for finite inputs).
fn f16_bits(v: f32) -> u32 {
    let x = bitcast<u32>(v);
    let sign = (x >> 16u) & 0x8000u;
    let e = i32((x >> 23u) & 0xffu) - 112; // f32 exponent rebiased for f16 (−127 + 15)
    let man = x & 0x7fffffu;
    if (e >= 31) {
        return sign | 0x7c00u;
    }
    if (e <= 0) {
        if (e < -10) {
            return sign;
        }
        let m = man | 0x800000u;
        let sh = u32(14 - e);
        var hm = m >> sh;
        let rb = 1u << (sh - 1u);
        if ((m & rb) != 0u && (m & (3u * rb - 1u)) != 0u) {
            hm = hm + 1u;
        }
        return sign | hm;
    }
    var r = sign | (u32(e) << 10u) | (man >> 13u);
    if ((man & 0x1000u) != 0u && (man & 0x2fffu) != 0u) {
        r = r + 1u;
    }
    return r;
}

// f16 bits → f32, exactly (subnormal scales too, which unpack2x16float may flush).
fn f16_value(b: u32) -> f32 {
    let e = (b >> 10u) & 0x1fu;
    let man = b & 0x3ffu;
    if (e == 0u) {
        return select(1.0, -1.0, (b & 0x8000u) != 0u) * f32(man) * 5.9604644775390625e-8;
    }
    return bitcast<f32>(((b & 0x8000u) << 16u) | ((e + 112u) << 23u) | (man << 13u));
}

// min(round(a / s), top) for a ≥ 0, s > 0 an f16 value, ties away from zero: the quotient
// proposes q, the exact products (q ± ½)·s decide (src/quant.rs `nearest_code`).
fn nearest(a: f32, s: f32, top: u32) -> u32 {
    let t = a / s;
    var q = top + 1u;
    if (t < f32(top + 1u)) {
        q = u32(floor(t + 0.5));
    }
    if (q > 0u && (f32(q) - 0.5) * s > a) {
        q = q - 1u;
    }
    if ((f32(q) + 0.5) * s <= a) {
        q = q + 1u;
    }
    return min(q, top);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * WG + lid;
    if (i >= p.count) {
        return;
    }
    let gi = i / p.wcols;
    let wc = i % p.wcols;
    let col0 = wc * PW;
    let base = gi * QGROUP * p.n + col0;

    var lo: array<f32, PW>;
    var hi: array<f32, PW>;
    for (var c = 0u; c < PW; c++) {
        let v = load_w(base + c);
        lo[c] = v;
        hi[c] = v;
    }
    for (var j = 1u; j < QGROUP; j++) {
        for (var c = 0u; c < PW; c++) {
            let v = load_w(base + j * p.n + c);
            lo[c] = min(lo[c], v);
            hi[c] = max(hi[c], v);
        }
    }

    // Scales (and minimums) of the PW columns: PW/2 whole u32 words.
    var s: array<f32, PW>;
    var m: array<f32, PW>;
    let sbase = (gi * p.n + col0) / 2u;
    for (var c = 0u; c < PW; c += 2u) {
        var sb: array<u32, 2>;
        var mb: array<u32, 2>;
        for (var h = 0u; h < 2u; h++) {
            let cc = c + h;
            if (QASYM) {
                mb[h] = f16_bits(lo[cc]);
                sb[h] = f16_bits((hi[cc] - lo[cc]) * p.rcp);
                m[cc] = f16_value(mb[h]);
            } else {
                sb[h] = f16_bits(max(abs(lo[cc]), abs(hi[cc])) * p.rcp);
                m[cc] = 0.0;
            }
            s[cc] = f16_value(sb[h]);
        }
        scales[sbase + c / 2u] = sb[0] | (sb[1] << 16u);
        if (QASYM) {
            mins[sbase + c / 2u] = mb[0] | (mb[1] << 16u);
        }
    }

    let top = select((1u << (QBITS - 1u)) - 1u, (1u << QBITS) - 1u, QASYM);
    let mask = (1u << QBITS) - 1u;
    for (var j = 0u; j < QGROUP; j++) {
        var word = 0u;
        for (var c = 0u; c < PW; c++) {
            let v = load_w(base + j * p.n + c);
            var code = 0u;
            if (QASYM) {
                let d = v - m[c];
                if (s[c] > 0.0 && d > 0.0) {
                    code = nearest(d, s[c], top);
                }
            } else if (s[c] > 0.0) {
                let q = i32(nearest(abs(v), s[c], top));
                code = bitcast<u32>(select(q, -q, v < 0.0)) & mask;
            }
            word = word | (code << (c * QBITS));
        }
        words[(gi * QGROUP + j) * p.wcols + wc] = word;
    }
}
