// attention: softmax(q·kᵀ·scale [+ causal mask])·v with an online softmax in f32 — the
// score matrix is never materialised ("flash" style). One invocation per (sequence, head,
// query); it keeps its query row and output accumulator (HEAD_DIM floats) in registers and
// streams the keys/values. No workgroup memory: the fast path where barriers are expensive
// (lavapipe, SwiftShader); GPUs get shaders/flash_attention.wgsl.
//
// Layout-agnostic addressing (shaders/include/attention_io.wgsl). Spatial/cross attention on
// [B, T, H·D] tokens: inner = 1, outer_stride = T·C, token_stride = C. Temporal attention on frame-major [B·F, HW, C] activations: a sequence is
// one (video, position) pair: inner = HW, outer_stride = F·HW·C, inner_stride = C,
// token_stride = HW·C — no transpose. K/V sequences are s / kv_div (text K/V shared by the
// F frames of a video).

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let id = linear_workgroup(wid, nwg) * WG + lid;
    if (id >= p.sequences * p.heads * p.q_len) {
        return;
    }
    let i = id % p.q_len;
    let h = (id / p.q_len) % p.heads;
    let s = id / (p.q_len * p.heads);
    let qa = addr(p.q, s, i, h);

    var qr: array<f32, HEAD_DIM>;
    var acc: array<f32, HEAD_DIM>;
    for (var d = 0u; d < HEAD_DIM; d++) {
        qr[d] = f32(q[qa + d]) * p.scale;
        acc[d] = 0.0;
    }
    var m = -3.0e38;
    var l = 0.0;
    var n_keys = p.kv_len;
    if (CAUSAL) {
        n_keys = min(i + 1u, p.kv_len);
    }
    // Address of key 0; keys are token_stride apart (no per-key integer division).
    let kv0 = addr(p.kv, s / p.kv_div, 0u, h);
    for (var j = 0u; j < n_keys; j++) {
        let ka = kv0 + j * p.kv.token_stride;
        var sc = 0.0;
        for (var d = 0u; d < HEAD_DIM; d++) {
            sc = fma(qr[d], f32(k[ka + d]), sc);
        }
        let m_new = max(m, sc);
        let corr = exp(m - m_new);
        let e = exp(sc - m_new);
        l = l * corr + e;
        for (var d = 0u; d < HEAD_DIM; d++) {
            acc[d] = fma(e, f32(v[ka + d]), acc[d] * corr);
        }
        m = m_new;
    }
    let inv = 1.0 / l;
    for (var d = 0u; d < HEAD_DIM; d++) {
        o[qa + d] = T(acc[d] * inv);
    }
}
