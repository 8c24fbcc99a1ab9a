// binary: y[i] = alpha·a[i] + beta·b[j]   (OP 0)   or   y[i] = a[i]·b[j]   (OP 1)
// with b broadcast: j = ((g / (inner·rep)) % outer)·inner + g % inner, g = i0 + i the element's
// index in the whole tensor (i0 ≠ 0 when the host splits a over several dispatches and shares
// b). outer = b's number of inner blocks; it wraps a periodic b, e.g. the motion module's
// position encoding pe [F, C] over activations [B·F, P, C] (inner = C, rep = P, outer = F). Same shape: inner = n, rep = 1;
// a per-channel vector [C] on [.., C]: inner = C, rep = n / C; a per-image [N, C] vector on
// [N, HW, C]: inner = C, rep = HW. Covers bias / residual adds, time-embedding adds, CFG
// combine (u + g(c − u) = (1−g)·u + g·c) and scaling. T: storage type; math in f32.

struct Params {
    n: u32,
    inner: u32,
    rep: u32,
    alpha: f32,
    beta: f32,
    i0: u32,
    outer: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<T>;
@group(0) @binding(2) var<storage, read> b: array<T>;
@group(0) @binding(3) var<storage, read_write> y: array<T>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let g = p.i0 + i;
    let j = ((g / (p.inner * p.rep)) % p.outer) * p.inner + g % p.inner;
    let av = f32(a[i]);
    let bv = f32(b[j]);
    var r: f32;
    if (OP == 1u) {
        r = av * bv;
    } else {
        r = p.alpha * av + p.beta * bv;
    }
    y[i] = T(r);
}
