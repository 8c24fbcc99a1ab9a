// groupnorm_apply: y = x·scale[s, c] + shift[s, c] (then SiLU if asked) for channels-last
// x[S, P, C], with the per-(set, channel) affine map from groupnorm_finalize. Same grid as
// groupnorm_stats: one invocation per (set, run of chunk_len positions, CV channels) loads
// its scale/shift once and streams the run with V-wide loads and stores.

struct Params {
    sets: u32,
    positions: u32,
    cols: u32,
    chunks: u32,
    chunk_len: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<V>;
// [S, 2, cols] of VF: scale, then shift.
@group(0) @binding(2) var<storage, read> coef: array<VF>;
@group(0) @binding(3) var<storage, read_write> y: array<V>;

fn affine(x: VF, scale: VF, shift: VF) -> VF {
    let v = fma(x, scale, shift);
    if (SILU) {
        return v / (1.0 + exp(-v));
    }
    return v;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let id = linear_workgroup(wid, nwg) * WG + lid;
    if (id >= p.sets * p.chunks * p.cols) {
        return;
    }
    let col = id % p.cols;
    let sc = id / p.cols;
    let s = sc / p.chunks;
    let pos0 = (sc % p.chunks) * p.chunk_len;
    let pos1 = min(pos0 + p.chunk_len, p.positions);
    let scale = coef[2u * s * p.cols + col];
    let shift = coef[(2u * s + 1u) * p.cols + col];
    var e = (s * p.positions + pos0) * p.cols + col;
    // Four positions per iteration (loop overhead, see groupnorm_stats), then the rest.
    var pos = pos0;
    for (; pos + 4u <= pos1; pos += 4u) {
        for (var u = 0u; u < 4u; u++) {
            y[e] = V(affine(VF(x[e]), scale, shift));
            e += p.cols;
        }
    }
    for (; pos < pos1; pos++) {
        y[e] = V(affine(VF(x[e]), scale, shift));
        e += p.cols;
    }
}
