// layernorm: y[r, :] = (x[r, :] − mean)·rstd·gamma + beta over the last dimension C.
// One workgroup per row; two passes (mean, centred variance) in f32. Parameters and
// bindings: shaders/include/layernorm_io.wgsl.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let r = linear_workgroup(wid, nwg);
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    var acc = 0.0;
    for (var c = lid; c < p.cols; c += WG) {
        acc += f32(x[base + c]);
    }
    let mean = reduce_sum(lid, acc) / f32(p.cols);
    var acc2 = 0.0;
    for (var c = lid; c < p.cols; c += WG) {
        let d = f32(x[base + c]) - mean;
        acc2 += d * d;
    }
    let rstd = inverseSqrt(reduce_sum(lid, acc2) / f32(p.cols) + p.eps);
    for (var c = lid; c < p.cols; c += WG) {
        y[base + c] = T((f32(x[base + c]) - mean) * rstd * f32(gamma[c]) + f32(beta[c]));
    }
}
