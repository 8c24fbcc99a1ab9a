// matmul: y[m, n] = alpha·(sum_k x[m, k]·w[k, n] + bias[n]) (+ residual[m, n]) — a linear
// layer with the weight stored K-major, w[k, n] (the transpose of PyTorch's [out, in]), so
// neighbouring invocations read neighbouring columns. With GEGLU the weight has 2·N columns
// [value | gate] and y = value·gelu_erf(gate) (diffusers' GEGLU projection; the 2·N-wide
// intermediate is never stored). Parameters and epilogue: shaders/include/matmul_io.wgsl.
// Loads: x1load() (shaders/include/load_*.wgsl, CV = 1 or 4 consecutive k per load) and
// wrow() = w[k, n..n+4] (shaders/include/weights_*.wgsl: dense or quantized). Storage type T,
// f32 accumulation.
//
// Each invocation computes TM rows × 4 columns (× 8 with WIDE) in registers with vec4 FMAs
// and no workgroup memory — the fast form where barriers are expensive (software adapters);
// an 8×8 workgroup covers a (8·TM)×(32 or 64) tile. A second accumulator holds the gate
// columns (GEGLU) or columns 4..8 (WIDE). Rows/columns past the edge read clamped (valid)
// indices and are not written.

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let tile = linear_workgroup(wid, nwg);
    if (tile >= p.tiles) {
        return;
    }
    let row0 = (tile / p.tiles_n) * (8u * TM) + lid.y * TM;
    let tn = select(4u, 8u, WIDE);
    let col0 = (tile % p.tiles_n) * (8u * tn) + lid.x * tn;

    var xr: array<u32, TM>;
    for (var i = 0u; i < TM; i++) {
        xr[i] = min(row0 + i, p.m - 1u) * p.k;
    }
    // Weight row length: value and gate halves side by side with GEGLU.
    let wn = select(p.n, 2u * p.n, GEGLU);
    // Columns of the second accumulator: the gate half, or the next four.
    let col2 = select(col0 + 4u, col0 + p.n, GEGLU);

    var acc: array<vec4<f32>, TM>;
    var acc2: array<vec4<f32>, TM>;
    for (var kk = 0u; kk < p.k; kk += CV) {
        var a: array<vec4<f32>, TM>;
        for (var i = 0u; i < TM; i++) {
            a[i] = x1load(xr[i] + kk);
        }
        for (var j = 0u; j < CV; j++) {
            let w = wrow(kk + j, col0, wn);
            var w2 = vec4<f32>();
            if (GEGLU || WIDE) {
                w2 = wrow(kk + j, col2, wn);
            }
            for (var i = 0u; i < TM; i++) {
                acc[i] = fma(vec4<f32>(a[i][j]), w, acc[i]);
                if (GEGLU || WIDE) {
                    acc2[i] = fma(vec4<f32>(a[i][j]), w2, acc2[i]);
                }
            }
        }
    }

    for (var i = 0u; i < TM; i++) {
        let r = row0 + i;
        if (r >= p.m) {
            break;
        }
        for (var j = 0u; j < 4u; j++) {
            if (col0 + j < p.n) {
                store_output(r, col0 + j, acc[i][j], acc2[i][j]);
            }
            if (WIDE && col0 + 4u + j < p.n) {
                store_output(r, col0 + 4u + j, acc2[i][j], 0.0);
            }
        }
    }
}
