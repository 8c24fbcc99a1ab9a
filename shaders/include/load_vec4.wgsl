// Input loaders for the GEMM kernels, four consecutive values (along K / channels) per load
// (K and the channel counts are multiples of 4; bindings are 16-byte aligned).
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
