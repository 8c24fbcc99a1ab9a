// Subgroup helpers for the kernels of software adapters whose workgroup is one subgroup of
// LANES = 8 invocations (lavapipe's SIMD width; src/gpu/context.rs checks the size).

const LANES: u32 = 8u;

// v of every lane (constant lane ids, as WGSL requires of subgroupBroadcast).
fn lanes(v: vec4<f32>) -> array<vec4<f32>, LANES> {
    return array<vec4<f32>, LANES>(
        subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u),
        subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u), subgroupBroadcast(v, 6u), subgroupBroadcast(v, 7u));
}
