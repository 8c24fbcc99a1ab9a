// groupnorm_apply: y = (x − mean)·rstd·gamma[c] + beta[c], optionally followed by SiLU,
// for channels-last x[S, P, C] with stats[S, G, 2] from groupnorm_stats.

struct Params {
    n: u32,
    positions: u32,
    channels: u32,
    groups: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<T>;
@group(0) @binding(4) var<storage, read> beta: array<T>;
@group(0) @binding(5) var<storage, read_write> y: array<T>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let c = i % p.channels;
    let s = i / (p.positions * p.channels);
    let sg = s * p.groups + c / (p.channels / p.groups);
    var v = (f32(x[i]) - stats[2u * sg]) * stats[2u * sg + 1u] * f32(gamma[c]) + f32(beta[c]);
    if (SILU) {
        v = silu(v);
    }
    y[i] = T(v);
}
