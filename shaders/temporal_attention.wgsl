// temporal_attention: motion-module self-attention over frames, read straight from frame-major
// activations [B·F, P, C] (token (b, f, p) at ((b·F + f)·P + p)·C, heads interleaved in C):
// no transpose to (B·P, F, C). A workgroup handles TP spatial positions × all F frames × one
// head: each invocation stages its own token's K and V row in workgroup memory, then attends
// its query over the F keys of its position (softmax in f32). `scale` already includes the
// optional motion scale on K (q·(s·k)/√d). Requires q_len == kv_len == F (FR constant).

struct Params {
    positions: u32,
    heads: u32,
    channels: u32,
    tiles: u32,
    pos_tiles: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<T>;
@group(0) @binding(2) var<storage, read> k: array<T>;
@group(0) @binding(3) var<storage, read> v: array<T>;
@group(0) @binding(4) var<storage, read_write> o: array<T>;

var<workgroup> k_s: array<f32, TP * FR * HEAD_DIM>;
var<workgroup> v_s: array<f32, TP * FR * HEAD_DIM>;

@compute @workgroup_size(TP * FR)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let tile = linear_workgroup(wid, nwg);
    // Uniform per workgroup: the barrier below stays in uniform control flow.
    if (tile >= p.tiles) {
        return;
    }
    let pt = tile % p.pos_tiles;
    let h = (tile / p.pos_tiles) % p.heads;
    let b = tile / (p.pos_tiles * p.heads);
    let pl = lid / FR;
    let f = lid % FR;
    let pos = pt * TP + pl;
    let valid = pos < p.positions;
    let base = ((b * FR + f) * p.positions + min(pos, p.positions - 1u)) * p.channels + h * HEAD_DIM;
    let row = (pl * FR + f) * HEAD_DIM;
    for (var d = 0u; d < HEAD_DIM; d++) {
        k_s[row + d] = f32(k[base + d]);
        v_s[row + d] = f32(v[base + d]);
    }
    workgroupBarrier();
    if (!valid) {
        return;
    }

    var scores: array<f32, FR>;
    var mx = -3.0e38;
    for (var j = 0u; j < FR; j++) {
        let kr = (pl * FR + j) * HEAD_DIM;
        var s = 0.0;
        for (var d = 0u; d < HEAD_DIM; d++) {
            s = fma(f32(q[base + d]), k_s[kr + d], s);
        }
        scores[j] = s * p.scale;
        mx = max(mx, scores[j]);
    }
    var sum = 0.0;
    for (var j = 0u; j < FR; j++) {
        scores[j] = exp(scores[j] - mx);
        sum += scores[j];
    }
    let inv = 1.0 / sum;
    for (var d = 0u; d < HEAD_DIM; d++) {
        var acc = 0.0;
        for (var j = 0u; j < FR; j++) {
            acc = fma(scores[j], v_s[(pl * FR + j) * HEAD_DIM + d], acc);
        }
        o[base + d] = T(acc * inv);
    }
}
