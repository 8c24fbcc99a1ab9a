// pad: zero padding at the bottom and right of channels-last images,
// y [N, Ho, Wo, C] with y[n, i, j, c] = x[n, i, j, c] inside x's H×W, else 0. The VAE
// encoder's downsampler pads (0, 1, 0, 1) before a stride-2, unpadded 3×3 convolution.
// T: storage type.

struct Params {
    n: u32,
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    c: u32,
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
    let c = i % p.c;
    let pix = i / p.c;
    let j = pix % p.wo;
    let r = (pix / p.wo) % p.ho;
    let img = pix / (p.wo * p.ho);
    if (r < p.h && j < p.w) {
        y[i] = x[((img * p.h + r) * p.w + j) * p.c + c];
    } else {
        y[i] = T(0.0);
    }
}
