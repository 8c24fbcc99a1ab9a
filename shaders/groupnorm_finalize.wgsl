// groupnorm_finalize: merges groupnorm_stats' per-(run, channel) mean/M2 into the mean and
// variance of each (set, group) — exactly: M2 = Σ M2ᵢ + Σ nᵢ(meanᵢ − mean)² — and folds them
// with gamma/beta into a per-(set, channel) affine map y = x·scale + shift for
// groupnorm_apply: scale = gamma·rstd, shift = beta − mean·scale. One invocation per
// (set, group); the work is ~1/(chunk_len) of the data.

struct Params {
    sets: u32,
    positions: u32,
    channels: u32,
    groups: u32,
    chunks: u32,
    chunk_len: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
// groupnorm_stats' [S, chunks, 2, C]: per run, C means then C M2s.
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<T>;
@group(0) @binding(3) var<storage, read> beta: array<T>;
// [S, 2, C]: scale, then shift.
@group(0) @binding(4) var<storage, read_write> coef: array<f32>;

// Index of channel c's mean in run (set s, chunk k) (its M2 follows C elements later).
fn part_index(s: u32, k: u32, c: u32) -> u32 {
    return 2u * (s * p.chunks + k) * p.channels + c;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let sg = linear_workgroup(wid, nwg) * WG + lid;
    if (sg >= p.sets * p.groups) {
        return;
    }
    let s = sg / p.groups;
    let cpg = p.channels / p.groups;
    let c0 = (sg % p.groups) * cpg;
    let full = f32(p.chunk_len);
    let last = f32(p.positions - (p.chunks - 1u) * p.chunk_len);
    let count = f32(p.positions * cpg);

    var sum = 0.0;
    for (var k = 0u; k < p.chunks; k++) {
        let n = select(full, last, k + 1u == p.chunks);
        var t = 0.0;
        for (var c = c0; c < c0 + cpg; c++) {
            t += part[part_index(s, k, c)];
        }
        sum += n * t;
    }
    let mean = sum / count;
    var m2 = 0.0;
    for (var k = 0u; k < p.chunks; k++) {
        let n = select(full, last, k + 1u == p.chunks);
        var t = 0.0;
        var d2 = 0.0;
        for (var c = c0; c < c0 + cpg; c++) {
            let i = part_index(s, k, c);
            let d = part[i] - mean;
            t += part[i + p.channels];
            d2 = fma(d, d, d2);
        }
        m2 += t + n * d2;
    }
    let rstd = inverseSqrt(m2 / count + p.eps);
    for (var c = c0; c < c0 + cpg; c++) {
        let scale = f32(gamma[c]) * rstd;
        coef[2u * s * p.channels + c] = scale;
        coef[(2u * s + 1u) * p.channels + c] = f32(beta[c]) - mean * scale;
    }
}
