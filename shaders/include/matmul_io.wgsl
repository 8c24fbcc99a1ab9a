// Parameters, output bindings and the fused epilogue shared by the matmul kernels
// (shaders/matmul.wgsl, shaders/matmul_tiled.wgsl; host side: src/ops/matmul.rs).
// y[m, n] = alpha·(acc + bias[n]) (+ residual[m, n]); with GEGLU, acc·gelu_erf(gate) first.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    tiles_n: u32,
    tiles: u32,
    alpha: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read_write> y: array<T>;
@group(0) @binding(5) var<storage, read> residual: array<T>;

fn store_output(r: u32, c: u32, acc: f32, gate: f32) {
    var v = acc;
    var g = gate;
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
