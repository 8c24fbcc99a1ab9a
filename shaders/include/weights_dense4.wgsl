// Dense weights, four consecutive k at a time (kdim % 4 == 0): wt[row, k..k+4] (binding 9).
@group(0) @binding(9) var<storage, read> wt: array<vec4<T>>;

fn wload4(row: u32, k: u32, kdim: u32) -> vec4<f32> {
    return vec4<f32>(wt[(row * kdim + k) / 4u]);
}
