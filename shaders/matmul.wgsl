// matmul: y[m, n] = alpha·(sum_k x[m, k]·w[n, k] + bias[n]) (+ residual[m, n]) — a linear
// layer with the weight in PyTorch's [out, in] layout. With GEGLU the weight has 2·N rows
// [value; gate] and y = value·gelu_erf(gate) (diffusers' GEGLU projection; the 2·N-wide
// intermediate is never stored). Parameters and epilogue: shaders/include/matmul_io.wgsl.
// Loads go through x1load()/wloadc() (shaders/include/load_*.wgsl: CV = 1 or 4 values per
// load; weights dense or quantized, shaders/include/weights_*.wgsl). Storage type T, f32
// accumulation.
//
// Each invocation computes TM rows × 4 columns in registers without workgroup memory — the
// fast form where barriers are expensive (software adapters); an 8×8 workgroup covers a
// (8·TM)×32 tile. Rows/columns past the edge read a clamped (valid) index and are not written.

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let tile = linear_workgroup(wid, nwg);
    if (tile >= p.tiles) {
        return;
    }
    let row0 = (tile / p.tiles_n) * (8u * TM) + lid.y * TM;
    let col0 = (tile % p.tiles_n) * 32u + lid.x * 4u;

    var xr: array<u32, TM>;
    for (var i = 0u; i < TM; i++) {
        xr[i] = min(row0 + i, p.m - 1u) * p.k;
    }
    var wr: array<u32, 4>;
    for (var j = 0u; j < 4u; j++) {
        wr[j] = min(col0 + j, p.n - 1u);
    }

    var acc: array<vec4<f32>, TM>;
    var accg: array<vec4<f32>, TM>;
    for (var kk = 0u; kk < p.k; kk += CV) {
        let w0 = wloadc(wr[0], kk, p.k);
        let w1 = wloadc(wr[1], kk, p.k);
        let w2 = wloadc(wr[2], kk, p.k);
        let w3 = wloadc(wr[3], kk, p.k);
        var g0 = vec4<f32>();
        var g1 = vec4<f32>();
        var g2 = vec4<f32>();
        var g3 = vec4<f32>();
        if (GEGLU) {
            g0 = wloadc(wr[0] + p.n, kk, p.k);
            g1 = wloadc(wr[1] + p.n, kk, p.k);
            g2 = wloadc(wr[2] + p.n, kk, p.k);
            g3 = wloadc(wr[3] + p.n, kk, p.k);
        }
        for (var i = 0u; i < TM; i++) {
            let a = x1load(xr[i] + kk);
            acc[i] += vec4<f32>(dot(a, w0), dot(a, w1), dot(a, w2), dot(a, w3));
            if (GEGLU) {
                accg[i] += vec4<f32>(dot(a, g0), dot(a, g1), dot(a, g2), dot(a, g3));
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
                store_output(r, col0 + j, acc[i][j], accg[i][j]);
            }
        }
    }
}
