// Workgroup tree reduction (needs `const WG: u32` = workgroup size, a power of two).

var<workgroup> partial: array<f32, WG>;

// Sum of `v` over the workgroup; every invocation must call it (uniform control flow).
fn reduce_sum(lid: u32, v: f32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}
