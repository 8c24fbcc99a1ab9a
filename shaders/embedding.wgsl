// embedding: y[t, :] = table[ids[t] − row0, :] + pos[t % positions, :] for the tokens whose id
// lies in the table slice [row0, row0 + rows) bound to this dispatch (CLIP's token + position
// embedding). A vocabulary table larger than one storage binding is bound slice by slice; each
// token is written by exactly the dispatch that holds its row.

struct Params {
    tokens: u32,
    dim: u32,
    row0: u32,
    rows: u32,
    positions: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<T>;
@group(0) @binding(3) var<storage, read> pos: array<T>;
@group(0) @binding(4) var<storage, read_write> y: array<T>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * WG + lid;
    if (i >= p.tokens * p.dim) {
        return;
    }
    let t = i / p.dim;
    let d = i % p.dim;
    let id = ids[t];
    if (id < p.row0 || id >= p.row0 + p.rows) {
        return;
    }
    y[i] = T(f32(table[(id - p.row0) * p.dim + d]) + f32(pos[(t % p.positions) * p.dim + d]));
}
