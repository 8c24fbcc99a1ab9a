// Input loaders for the GEMM kernels, one value per load (any K / channel count):
// CV = values per load, returned in .x.
const CV: u32 = 1u;

@group(0) @binding(1) var<storage, read> x1: array<T>;
@group(0) @binding(2) var<storage, read> x2: array<T>;

// Element e of x1 / x2.
fn x1load(e: u32) -> vec4<f32> {
    return vec4<f32>(f32(x1[e]), 0.0, 0.0, 0.0);
}

fn x2load(e: u32) -> vec4<f32> {
    return vec4<f32>(f32(x2[e]), 0.0, 0.0, 0.0);
}
