// copy_words: dst[dst_at + i] = src[src_at + i] for i < n (32-bit words). A copy between two
// ranges of one buffer (activation arena): WebGPU's copyBufferToBuffer refuses the same buffer
// as source and destination.

struct Params {
    n: u32,
    src_at: u32,
    dst_at: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * WG + lid;
    if (i < p.n) {
        dst[p.dst_at + i] = src[p.src_at + i];
    }
}
