// Dense weights w[k, n] (layout: shaders/include/weights_dense.wgsl) read as vec4 along n
// (ncols % 4 == 0): wrow(k, n, ncols) = w[k, n..n+4] for n % 4 == 0 (clamped into range).
@group(0) @binding(9) var<storage, read> wt: array<vec4<T>>;

fn wrow(k: u32, n: u32, ncols: u32) -> vec4<f32> {
    return vec4<f32>(wt[(k * ncols + min(n, ncols - 4u)) / 4u]);
}
