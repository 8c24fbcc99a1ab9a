// to_rgba8: y[i] = RGBA8 pixel (alpha 255) from x[i, 0..3] in [0, 1] (clamped, rounded), for
// display (canvas ImageData) and GIF/WebM export.

struct Params {
    pixels: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * WG + lid;
    if (i >= p.pixels) {
        return;
    }
    y[i] = pack4x8unorm(vec4<f32>(f32(x[3u * i]), f32(x[3u * i + 1u]), f32(x[3u * i + 2u]), 1.0));
}
