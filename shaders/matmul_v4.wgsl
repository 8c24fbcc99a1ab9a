// matmul_v4: the matmul kernel (shaders/matmul.wgsl: same parameters, epilogues and bindings)
// for K % 4 == 0, reading x and the weights four k at a time (vec4 loads, 16 dot products per
// 8 loads). Each invocation computes TM×4 outputs in registers without workgroup memory —
// the fastest form where barriers are expensive (software adapters); a workgroup of 8×8
// invocations covers a (8·TM)×32 tile.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    tiles_n: u32,
    tiles: u32,
    alpha: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<T>>;
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
    let row0 = (tile / p.tiles_n) * (8u * TM) + lid.y * TM;
    let col0 = (tile % p.tiles_n) * 32u + lid.x * 4u;
    let k4 = p.k / 4u;

    var xr: array<u32, TM>;
    for (var i = 0u; i < TM; i++) {
        xr[i] = min(row0 + i, p.m - 1u) * k4;
    }
    var wr: array<u32, 4>;
    for (var j = 0u; j < 4u; j++) {
        wr[j] = min(col0 + j, p.n - 1u);
    }

    var acc: array<vec4<f32>, TM>;
    var accg: array<vec4<f32>, TM>;
    for (var kk = 0u; kk < p.k; kk += 4u) {
        let w0 = wload4(wr[0], kk, p.k);
        let w1 = wload4(wr[1], kk, p.k);
        let w2 = wload4(wr[2], kk, p.k);
        let w3 = wload4(wr[3], kk, p.k);
        var g0 = vec4<f32>();
        var g1 = vec4<f32>();
        var g2 = vec4<f32>();
        var g3 = vec4<f32>();
        if (GEGLU) {
            g0 = wload4(wr[0] + p.n, kk, p.k);
            g1 = wload4(wr[1] + p.n, kk, p.k);
            g2 = wload4(wr[2] + p.n, kk, p.k);
            g3 = wload4(wr[3] + p.n, kk, p.k);
        }
        for (var i = 0u; i < TM; i++) {
            let a = vec4<f32>(x[xr[i] + kk / 4u]);
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
