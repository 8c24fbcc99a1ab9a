// flash_attention: the attention of shaders/attention.wgsl (same parameters, bindings and
// addressing: shaders/include/attention_io.wgsl) for GPUs: a workgroup of BQ invocations
// takes BQ consecutive queries of one (sequence, head) and streams the keys/values through
// workgroup memory in tiles of BKV tokens, so each K/V element is read from memory once per
// workgroup instead of once per query. Online softmax in f32; each invocation keeps its query
// row and output accumulator (HEAD_DIM floats) in registers.

var<workgroup> k_tile: array<f32, BKV * HEAD_DIM>;
var<workgroup> v_tile: array<f32, BKV * HEAD_DIM>;

@compute @workgroup_size(BQ)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let tq = q_tile(wid, nwg, BQ);
    // Uniform per workgroup: barriers below stay in uniform control flow.
    if (!tq.valid) {
        return;
    }
    let qt = tq.qt;
    let h = tq.h;
    let s = tq.s;
    let i = qt * BQ + lid;
    let valid = i < p.q_len;
    let qa = addr(p.q, s, min(i, p.q_len - 1u), h);
    // Address of key 0; keys are token_stride apart (no per-element integer division).
    let kv0 = addr(p.kv, s / p.kv_div, 0u, h);

    var qr: array<f32, HEAD_DIM>;
    var acc: array<f32, HEAD_DIM>;
    for (var d = 0u; d < HEAD_DIM; d++) {
        qr[d] = f32(q[qa + d]) * p.scale;
        acc[d] = 0.0;
    }
    var m = -3.0e38;
    var l = 0.0;
    // Keys this workgroup needs (uniform): all, or up to its last query when causal.
    var n_keys = p.kv_len;
    if (CAUSAL) {
        n_keys = min(min(qt * BQ + BQ, p.q_len), p.kv_len);
    }
    for (var j0 = 0u; j0 < n_keys; j0 += BKV) {
        for (var e = lid; e < BKV * HEAD_DIM; e += BQ) {
            let j = j0 + e / HEAD_DIM;
            var kv = vec2<f32>();
            if (j < p.kv_len) {
                let ka = kv0 + j * p.kv.token_stride + e % HEAD_DIM;
                kv = vec2<f32>(f32(k[ka]), f32(v[ka]));
            }
            k_tile[e] = kv.x;
            v_tile[e] = kv.y;
        }
        workgroupBarrier();
        var last = min(BKV, n_keys - j0);
        if (CAUSAL) {
            last = min(last, select(0u, i + 1u - min(i + 1u, j0), i + 1u > j0));
        }
        for (var jj = 0u; jj < last; jj++) {
            var sc = 0.0;
            for (var d = 0u; d < HEAD_DIM; d++) {
                sc = fma(qr[d], k_tile[jj * HEAD_DIM + d], sc);
            }
            let m_new = max(m, sc);
            let corr = exp(m - m_new);
            let ex = exp(sc - m_new);
            l = l * corr + ex;
            for (var d = 0u; d < HEAD_DIM; d++) {
                acc[d] = fma(ex, v_tile[jj * HEAD_DIM + d], acc[d] * corr);
            }
            m = m_new;
        }
        workgroupBarrier();
    }
    if (valid) {
        let inv = 1.0 / l;
        for (var d = 0u; d < HEAD_DIM; d++) {
            o[qa + d] = T(acc[d] * inv);
        }
    }
}
