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

// Rows (TM ≤ MAX_TM) are unrolled by constant-argument calls; arrays are sized MAX_TM so the
// switched-off calls' constant indices stay in bounds.
const MAX_TM: u32 = 8u;

// wmat(): shaders/include/gemm_wmat.wgsl.

fn row(acc: ptr<function, array<vec4<f32>, MAX_TM>>, acc2: ptr<function, array<vec4<f32>, MAX_TM>>, xr: ptr<function, array<u32, MAX_TM>>,
       i: u32, kk: u32, w: mat4x4<f32>, w2: mat4x4<f32>) {
    if (i < TM) {
        let a = x1load((*xr)[i] + kk);
        (*acc)[i] += w * a;
        if (GEGLU || WIDE) {
            (*acc2)[i] += w2 * a;
        }
    }
}

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

    var xr: array<u32, MAX_TM>;
    for (var i = 0u; i < TM; i++) {
        xr[i] = min(row0 + i, p.m - 1u) * p.k;
    }
    // Weight row length: value and gate halves side by side with GEGLU.
    let wn = select(p.n, 2u * p.n, GEGLU);
    // Columns of the second accumulator: the gate half, or the next four.
    let col2 = select(col0 + 4u, col0 + p.n, GEGLU);

    var acc: array<vec4<f32>, MAX_TM>;
    var acc2: array<vec4<f32>, MAX_TM>;
    for (var kk = 0u; kk < p.k; kk += CV) {
        // Weight rows kk..kk+CV as matrix columns: acc += W·x is one matrix-vector product
        // per row, with no inner loop (lavapipe scalarises register arrays indexed by a loop
        // variable).
        let w = wmat(kk, col0, wn);
        var w2 = mat4x4<f32>();
        if (GEGLU || WIDE) {
            w2 = wmat(kk, col2, wn);
        }
        row(&acc, &acc2, &xr, 0u, kk, w, w2);
        row(&acc, &acc2, &xr, 1u, kk, w, w2);
        row(&acc, &acc2, &xr, 2u, kk, w, w2);
        row(&acc, &acc2, &xr, 3u, kk, w, w2);
        row(&acc, &acc2, &xr, 4u, kk, w, w2);
        row(&acc, &acc2, &xr, 5u, kk, w, w2);
        row(&acc, &acc2, &xr, 6u, kk, w, w2);
        row(&acc, &acc2, &xr, 7u, kk, w, w2);
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
