// unary: y[i] = f(scale·x[i] + shift) for a function chosen by the host (OP):
//   0 identity, 1 SiLU x·σ(x), 2 GELU (erf form, as torch's default), 3 QuickGELU x·σ(1.702x),
//   4 clamp to [lo, hi] (e.g. decoded frames: clamp(x/2 + 0.5, 0, 1)).
// T is the storage type (f32, or f16 with shader-f16); math is f32.

struct Params {
    n: u32,
    scale: f32,
    shift: f32,
    lo: f32,
    hi: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let v = p.scale * f32(x[i]) + p.shift;
    var r: f32;
    switch OP {
        case 1u: { r = silu(v); }
        case 2u: { r = gelu_erf(v); }
        case 3u: { r = v * sigmoid(1.702 * v); }
        case 4u: { r = clamp(v, p.lo, p.hi); }
        default: { r = v; }
    }
    y[i] = T(r);
}
