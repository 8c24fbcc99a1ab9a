// matmul: y[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]) — a linear layer with the weight in
// PyTorch's [out, in] layout. f32 storage and accumulation.
//
// Each invocation computes a 4×4 block of y in registers (no workgroup memory: barriers are
// the slow path on software adapters, and this is the baseline the tuned kernels of the
// kernel library are checked against); a workgroup of 8×8 invocations covers a 32×32 tile.
// Rows/columns past the edge read a clamped (valid) index and are not written.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    tiles_n: u32,
    tiles: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

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
        wr[i] = min(col0 + i, p.n - 1u) * p.k;
    }

    var acc: array<vec4<f32>, 4>;
    for (var kk = 0u; kk < p.k; kk++) {
        let b = vec4<f32>(w[wr[0] + kk], w[wr[1] + kk], w[wr[2] + kk], w[wr[3] + kk]);
        for (var i = 0u; i < 4u; i++) {
            acc[i] = fma(vec4<f32>(x[xr[i] + kk]), b, acc[i]);
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
                if (HAS_BIAS) {
                    v += bias[c];
                }
                y[r * p.n + c] = v;
            }
        }
    }
}
