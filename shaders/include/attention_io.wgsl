// Parameters, bindings and token addressing shared by the attention kernels
// (shaders/attention.wgsl, shaders/flash_attention.wgsl, shaders/attention_sg.wgsl; host side: src/ops/attention.rs).
// Token t of head h in sequence s is at
//   (s / inner)·outer_stride + (s % inner)·inner_stride + t·token_stride + h·HEAD_DIM.

struct Layout {
    inner: u32,
    outer_stride: u32,
    inner_stride: u32,
    token_stride: u32,
}

struct Params {
    q: Layout,
    kv: Layout,
    sequences: u32,
    heads: u32,
    q_len: u32,
    kv_len: u32,
    kv_div: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
// E: the element the kernel binds — T, or vec4<T> (shaders/attention_sg.wgsl: addresses / 4).
@group(0) @binding(1) var<storage, read> q: array<E>;
@group(0) @binding(2) var<storage, read> k: array<E>;
@group(0) @binding(3) var<storage, read> v: array<E>;
@group(0) @binding(4) var<storage, read_write> o: array<E>;

fn addr(l: Layout, s: u32, t: u32, h: u32) -> u32 {
    return (s / l.inner) * l.outer_stride + (s % l.inner) * l.inner_stride + t * l.token_stride + h * HEAD_DIM;
}

// The query tile a workgroup of a grid over (sequence, head, tile of bq queries) takes;
// valid is false past the grid (uniform per workgroup, so the caller's barriers or
// subgroup operations stay in uniform control flow when it returns on it).
struct QTile {
    valid: bool,
    // Tile index within the sequence, head, sequence.
    qt: u32,
    h: u32,
    s: u32,
}

fn q_tile(wid: vec3<u32>, nwg: vec3<u32>, bq: u32) -> QTile {
    let tile = linear_workgroup(wid, nwg);
    let q_tiles = (p.q_len + bq - 1u) / bq;
    return QTile(tile < p.sequences * p.heads * q_tiles, tile % q_tiles, (tile / q_tiles) % p.heads, tile / (q_tiles * p.heads));
}
