// matmul: y[m, n] = alpha·(sum_k x[m, k]·w[n, k] + bias[n]) (+ residual[m, n]) — a linear
// layer with the weight in PyTorch's [out, in] layout, read through wload() (dense or
// quantized, see shaders/include/weights_*.wgsl). Storage type T, f32 accumulation.
// GEGLU: the weight has 2·N rows [value; gate] and y[m, n] = value·gelu_erf(gate) (diffusers'
// GEGLU feed-forward projection), so the 2·N-wide intermediate is never stored.
//
// Each invocation computes a 4×4 block of y in registers (no workgroup memory: barriers are
// the slow path on software adapters); a workgroup of 8×8 invocations covers a 32×32 tile.
// Rows/columns past the edge read a clamped (valid) index and are not written.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    tiles_n: u32,
    tiles: u32,
    alpha: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read_write> y: array<T>;
@group(0) @binding(5) var<storage, read> residual: array<T>;

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let tile = linear_workgroup(wid, nwg);
    if (tile >= p.tiles) {
        return;
    }
    let row0 = (tile / p.tiles_n) * 32u + lid.y * 4u;
    let col0 = (tile % p.tiles_n) * 32u + lid.x * 4u;

    var xr: array<u32, 4>;
    var wr: array<u32, 4>;
    for (var i = 0u; i < 4u; i++) {
        xr[i] = min(row0 + i, p.m - 1u) * p.k;
        wr[i] = min(col0 + i, p.n - 1u);
    }

    var acc: array<vec4<f32>, 4>;
    var accg: array<vec4<f32>, 4>;
    for (var kk = 0u; kk < p.k; kk++) {
        let b = vec4<f32>(wload(wr[0], kk, p.k), wload(wr[1], kk, p.k), wload(wr[2], kk, p.k), wload(wr[3], kk, p.k));
        var bg = vec4<f32>();
        if (GEGLU) {
            bg = vec4<f32>(wload(wr[0] + p.n, kk, p.k), wload(wr[1] + p.n, kk, p.k),
                           wload(wr[2] + p.n, kk, p.k), wload(wr[3] + p.n, kk, p.k));
        }
        for (var i = 0u; i < 4u; i++) {
            let a = vec4<f32>(f32(x[xr[i] + kk]));
            acc[i] = fma(a, b, acc[i]);
            if (GEGLU) {
                accg[i] = fma(a, bg, accg[i]);
            }
        }
    }

    for (var i = 0u; i < 4u; i++) {
        let r = row0 + i;
        if (r >= p.m) {
            break;
        }
        for (var j = 0u; j < 4u; j++) {
            let c = col0 + j;
            if (c < p.n) {
                var v = acc[i][j];
                var g = accg[i][j];
                if (HAS_BIAS) {
                    v += f32(bias[c]);
                    if (GEGLU) {
                        g += f32(bias[c + p.n]);
                    }
                }
                if (GEGLU) {
                    v *= gelu_erf(g);
                }
                v *= p.alpha;
                if (HAS_RESIDUAL) {
                    v += f32(residual[r * p.n + c]);
                }
                y[r * p.n + c] = T(v);
            }
        }
    }
}
