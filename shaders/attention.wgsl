// attention: softmax(q·kᵀ·scale [+ causal mask])·v with an online softmax in f32 — the
// score matrix is never materialised ("flash" style). One invocation per (sequence, head,
// QPT consecutive queries); it keeps their query rows and output accumulators in registers and
// streams the keys/values, each loaded row serving QPT queries. No workgroup memory: the fast path where barriers are expensive
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
    // One invocation per QPT consecutive queries of one (sequence, head): each key/value row
    // loaded serves QPT queries.
    let q_groups = (p.q_len + QPT - 1u) / QPT;
    let id = linear_workgroup(wid, nwg) * WG + lid;
    if (id >= p.sequences * p.heads * q_groups) {
        return;
    }
    let i0 = (id % q_groups) * QPT;
    let h = (id / q_groups) % p.heads;
    let s = id / (q_groups * p.heads);

    var qa: array<u32, QPT>;
    var qr: array<f32, QPT * HEAD_DIM>;
    var acc: array<f32, QPT * HEAD_DIM>;
    var m: array<f32, QPT>;
    var l: array<f32, QPT>;
    for (var t = 0u; t < QPT; t++) {
        qa[t] = addr(p.q, s, min(i0 + t, p.q_len - 1u), h);
        for (var d = 0u; d < HEAD_DIM; d++) {
            qr[t * HEAD_DIM + d] = f32(q[qa[t] + d]) * p.scale;
            acc[t * HEAD_DIM + d] = 0.0;
        }
        m[t] = -3.0e38;
        l[t] = 0.0;
    }
    var n_keys = p.kv_len;
    if (CAUSAL) {
        n_keys = min(i0 + QPT, p.kv_len);
    }
    // Address of key 0; keys are token_stride apart (no per-key integer division).
    let kv0 = addr(p.kv, s / p.kv_div, 0u, h);
    for (var j = 0u; j < n_keys; j++) {
        let ka = kv0 + j * p.kv.token_stride;
        // Explicitly zeroed every iteration (do not rely on implicit zero-initialisation of a
        // var declared inside a loop: SwiftShader/Tint and naga disagreed here).
        var sc: array<f32, QPT>;
        for (var t = 0u; t < QPT; t++) {
            sc[t] = 0.0;
        }
        for (var d = 0u; d < HEAD_DIM; d++) {
            let kd = f32(k[ka + d]);
            for (var t = 0u; t < QPT; t++) {
                sc[t] = fma(qr[t * HEAD_DIM + d], kd, sc[t]);
            }
        }
        var e: array<f32, QPT>;
        var corr: array<f32, QPT>;
        for (var t = 0u; t < QPT; t++) {
            // Causal: query i0 + t sees keys 0..=i0 + t only.
            let masked = CAUSAL && j > i0 + t;
            let m_new = select(max(m[t], sc[t]), m[t], masked);
            corr[t] = exp(m[t] - m_new);
            e[t] = select(exp(sc[t] - m_new), 0.0, masked);
            l[t] = l[t] * corr[t] + e[t];
            m[t] = m_new;
        }
        for (var d = 0u; d < HEAD_DIM; d++) {
            let vd = f32(v[ka + d]);
            for (var t = 0u; t < QPT; t++) {
                acc[t * HEAD_DIM + d] = fma(e[t], vd, acc[t * HEAD_DIM + d] * corr[t]);
            }
        }
    }
    for (var t = 0u; t < QPT; t++) {
        if (i0 + t < p.q_len) {
            let inv = 1.0 / l[t];
            for (var d = 0u; d < HEAD_DIM; d++) {
                o[qa[t] + d] = T(acc[t * HEAD_DIM + d] * inv);
            }
        }
    }
}
