// Helpers prepended to every kernel (after its specialisation constants).

// Linear workgroup index of a grid folded into up to three dimensions (src/gpu/dispatch.rs).
fn linear_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + nwg.x * (wid.y + nwg.y * wid.z);
}
