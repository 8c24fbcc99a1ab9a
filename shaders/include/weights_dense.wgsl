// Dense weights for matmul/conv kernels: row-major wt[row, k] in storage type T (binding 9).
@group(0) @binding(9) var<storage, read> wt: array<T>;

fn wload(row: u32, k: u32, kdim: u32) -> f32 {
    return f32(wt[row * kdim + k]);
}
