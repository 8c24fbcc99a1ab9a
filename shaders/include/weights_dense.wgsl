// Dense weights for the GEMM kernels in "K-major" layout w[k, n] (row k holds all outputs
// n; conv weights as [KH, KW, Cin, Cout]), so that neighbouring invocations (neighbouring n)
// read neighbouring memory. Storage type T, binding 9. wrow(k, n, ncols) returns
// w[k, n..n+4] (clamped to the last column).
@group(0) @binding(9) var<storage, read> wt: array<T>;

fn wload(k: u32, n: u32, ncols: u32) -> f32 {
    return f32(wt[k * ncols + min(n, ncols - 1u)]);
}

fn wrow(k: u32, n: u32, ncols: u32) -> vec4<f32> {
    return vec4<f32>(wload(k, n, ncols), wload(k, n + 1u, ncols), wload(k, n + 2u, ncols), wload(k, n + 3u, ncols));
}
