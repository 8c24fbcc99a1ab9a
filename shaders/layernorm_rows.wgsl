// layernorm_rows: shaders/layernorm.wgsl (same parameters and bindings, from
// shaders/include/layernorm_io.wgsl) with one invocation
// per row and no workgroup reduction — for CPU adapters, where barriers cost more than the
// sequential sum over a row of at most a few thousand values. Two passes in f32.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let r = linear_workgroup(wid, nwg) * WG + lid;
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    var acc = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        acc += f32(x[base + c]);
    }
    let mean = acc / f32(p.cols);
    var acc2 = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        let d = f32(x[base + c]) - mean;
        acc2 += d * d;
    }
    let rstd = inverseSqrt(acc2 / f32(p.cols) + p.eps);
    for (var c = 0u; c < p.cols; c++) {
        y[base + c] = T((f32(x[base + c]) - mean) * rstd * f32(gamma[c]) + f32(beta[c]));
    }
}
