// Input/weight loaders for GEMM-like kernels, four consecutive values at a time (K and the
// channel counts are multiples of 4; bindings are 16-byte aligned).
const CV: u32 = 4u;

@group(0) @binding(1) var<storage, read> x1: array<vec4<T>>;
@group(0) @binding(2) var<storage, read> x2: array<vec4<T>>;

// Elements e..e+4 of x1 / x2 (e % 4 == 0).
fn x1load(e: u32) -> vec4<f32> {
    return vec4<f32>(x1[e / 4u]);
}

fn x2load(e: u32) -> vec4<f32> {
    return vec4<f32>(x2[e / 4u]);
}

fn wloadc(row: u32, k: u32, kdim: u32) -> vec4<f32> {
    return wload4(row, k, kdim);
}
