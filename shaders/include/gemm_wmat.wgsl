// wmat() for the register GEMM kernels (shaders/matmul.wgsl, shaders/conv2d.wgsl): weight
// rows k..k+CV, columns n..n+4 (wrow(), shaders/include/weights_*.wgsl) as the columns of a
// matrix, zero past CV (shaders/include/load_*.wgsl), so that a row of CV input values meets
// them as one matrix-vector product.
fn wmat(k: u32, n: u32, ncols: u32) -> mat4x4<f32> {
    var m = mat4x4<f32>();
    m[0] = wrow(k, n, ncols);
    if (CV > 1u) {
        m[1] = wrow(k + 1u, n, ncols);
        m[2] = wrow(k + 2u, n, ncols);
        m[3] = wrow(k + 3u, n, ncols);
    }
    return m;
}
