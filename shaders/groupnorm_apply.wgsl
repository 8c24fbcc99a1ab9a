// groupnorm_apply: y = (x − mean)·rstd·gamma[c] + beta[c], optionally followed by SiLU,
// for channels-last x[S, P, C] with stats[S, G, 2] from groupnorm_stats. One invocation per
// position (row of C channels), looping over groups and their channels: no per-element
// index division (integer division does not vectorise on CPU adapters), and one
// statistics load per group.

struct Params {
    rows: u32,
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
    let row = linear_workgroup(wid, nwg) * WG + lid;
    if (row >= p.rows) {
        return;
    }
    let s = row / p.positions;
    let base = row * p.channels;
    let cpg = p.channels / p.groups;
    for (var g = 0u; g < p.groups; g++) {
        let mean = stats[2u * (s * p.groups + g)];
        let rstd = stats[2u * (s * p.groups + g) + 1u];
        for (var c = g * cpg; c < (g + 1u) * cpg; c++) {
            var v = (f32(x[base + c]) - mean) * rstd * f32(gamma[c]) + f32(beta[c]);
            if (SILU) {
                v = silu(v);
            }
            y[base + c] = T(v);
        }
    }
}
