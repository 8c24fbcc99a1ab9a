// groupnorm_stats: mean and 1/sqrt(var + eps) per (set, group) of channels-last data
// x[S, P, C] — S statistic sets, P positions per set, C channels in G groups of C/G.
// Per-image GroupNorm: S = images, P = H·W. Joint over frames (diffusers motion modules,
// original v1 ResNets): S = videos, P = F·H·W. One workgroup per (set, group); two passes
// over the data (mean, then centred variance) in f32 for accuracy. Invocations stride over
// positions and read their group's C/G channels contiguously (no per-element division, which
// CPU adapters cannot vectorise).

struct Params {
    sets: u32,
    positions: u32,
    channels: u32,
    groups: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let sg = linear_workgroup(wid, nwg);
    // Uniform across the workgroup, so the early return keeps barriers uniform.
    if (sg >= p.sets * p.groups) {
        return;
    }
    let s = sg / p.groups;
    let g = sg % p.groups;
    let cpg = p.channels / p.groups;
    let base = s * p.positions * p.channels + g * cpg;

    var acc = 0.0;
    for (var pos = lid; pos < p.positions; pos += WG) {
        let row = base + pos * p.channels;
        for (var c = 0u; c < cpg; c++) {
            acc += f32(x[row + c]);
        }
    }
    let count = f32(p.positions * cpg);
    let mean = reduce_sum(lid, acc) / count;

    var acc2 = 0.0;
    for (var pos = lid; pos < p.positions; pos += WG) {
        let row = base + pos * p.channels;
        for (var c = 0u; c < cpg; c++) {
            let d = f32(x[row + c]) - mean;
            acc2 += d * d;
        }
    }
    let var_ = reduce_sum(lid, acc2) / count;
    if (lid == 0u) {
        stats[2u * sg] = mean;
        stats[2u * sg + 1u] = inverseSqrt(var_ + p.eps);
    }
}
