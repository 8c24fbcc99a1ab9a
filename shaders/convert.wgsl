// convert: y[i] = DST(x[i]) between f32 and f16 storage (SRC, DST are type aliases set by
// the host; f16 needs the shader-f16 feature).

struct Params {
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<SRC>;
@group(0) @binding(2) var<storage, read_write> y: array<DST>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * WG + lid;
    if (i < p.n) {
        y[i] = DST(x[i]);
    }
}
