// concat: y[r, :] = [a[r, :], b[r, :]] along the last dimension — the UNet up blocks' skip
// concatenation (ResNet norm1 needs the joined tensor; convolutions can read the two halves
// directly, see conv2d's virtual concat). T: storage type.

struct Params {
    n: u32,
    ca: u32,
    cb: u32,
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
    let c = p.ca + p.cb;
    let r = i / c;
    let j = i % c;
    if (j < p.ca) {
        y[i] = a[r * p.ca + j];
    } else {
        y[i] = b[r * p.cb + (j - p.ca)];
    }
}
