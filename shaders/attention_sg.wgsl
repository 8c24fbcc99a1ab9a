// attention_sg: the attention of shaders/attention.wgsl (same parameters, addressing and
// online softmax: shaders/include/attention_io.wgsl, bound as vec4<T>) for software adapters
// with 8-wide subgroups (lavapipe), where every storage load is a per-lane scalar loop and
// a private array indexed by a loop variable becomes per-lane masked scalar loads/stores.
//
// A workgroup is one subgroup of LANES invocations taking BQ = LANES·QPT consecutive queries
// of one (sequence, head); lane l holds queries qt·BQ + t·LANES + l (t < QPT). Keys go in
// blocks of LANES: lane l loads the K and V rows of key j0 + l, subgroupBroadcast hands them
// to all lanes, and each lane multiplies them as two 4×4 matrices (four keys each) with its
// queries: scores s = q·[k0..k3], then acc += [v0..v3]·e — whole-vector FMAs, no indexing.
// The head dimension is walked by qk8/pv8 calls with constant arguments (unrolled once
// inlined), so every register array is indexed by constants only; the softmax rescale runs
// once per block. Needs HEAD_DIM % 8 == 0, HEAD_DIM ≤ 8·MAX_D8 and the subgroup feature
// (native only: naga takes the builtins without `enable subgroups;`, which it rejects).

const D4: u32 = HEAD_DIM / 4u;
const BQ: u32 = LANES * QPT;
// Query-state arrays are sized for the largest QPT so that constant indices past QPT (in
// branches that QPT switches off) stay in bounds. More queries per lane would load fewer K/V
// rows per FMA, but lavapipe then spends seconds compiling the kernel and runs it no faster.
const MAXQ: u32 = 2u;
// Head-dimension groups of 8 the unrolled calls cover (HEAD_DIM ≤ 160).
const MAX_D8: u32 = 20u;

struct State {
    // q[t][d]: query t's row (scaled); acc[t][d]: its output accumulator.
    q: array<array<vec4<f32>, D4>, MAXQ>,
    acc: array<array<vec4<f32>, D4>, MAXQ>,
    // s[2t], s[2t + 1]: query t · keys j0..j0+4, j0+4..j0+8 (then their softmax weights).
    s: array<vec4<f32>, 2 * MAXQ>,
    // Online softmax: running max m, sum l, and this block's rescale factor corr.
    m: array<f32, MAXQ>,
    l: array<f32, MAXQ>,
    corr: array<f32, MAXQ>,
}

// Key (or value) rows d of the block's LANES keys as two matrices: columns = keys.
fn block_rows(buf_is_k: bool, a: u32) -> array<mat4x4<f32>, 2> {
    var r: vec4<f32>;
    if (buf_is_k) {
        r = vec4<f32>(k[a]);
    } else {
        r = vec4<f32>(v[a]);
    }
    let b = lanes(r);
    return array<mat4x4<f32>, 2>(mat4x4<f32>(b[0], b[1], b[2], b[3]), mat4x4<f32>(b[4], b[5], b[6], b[7]));
}

// Scores of query t += q[t][d] · keys, for component group d of this lane's key row at ka.
fn qk1(st: ptr<function, State>, m: array<mat4x4<f32>, 2>, t: u32, d: u32) {
    let qv = (*st).q[t][d];
    (*st).s[2u * t] += qv * m[0];
    (*st).s[2u * t + 1u] += qv * m[1];
}

// acc[t][d] = acc[t][d]·corr[t] + values · weights of query t.
fn pv1(st: ptr<function, State>, m: array<mat4x4<f32>, 2>, t: u32, d: u32) {
    (*st).acc[t][d] = fma((*st).acc[t][d], vec4<f32>((*st).corr[t]), m[0] * (*st).s[2u * t] + m[1] * (*st).s[2u * t + 1u]);
}

// The queries, one constant t per call: a loop over t would index the arrays dynamically.
fn qk(st: ptr<function, State>, ka: u32, d: u32) {
    let m = block_rows(true, ka + d);
    qk1(st, m, 0u, d);
    if (QPT > 1u) {
        qk1(st, m, 1u, d);
    }
}

fn pv(st: ptr<function, State>, ka: u32, d: u32) {
    let m = block_rows(false, ka + d);
    pv1(st, m, 0u, d);
    if (QPT > 1u) {
        pv1(st, m, 1u, d);
    }
}

// Eight head dimensions (two vec4 groups) from 8·g, when the head has them.
fn qk8(st: ptr<function, State>, ka: u32, g: u32) {
    if (2u * g < D4) {
        qk(st, ka, 2u * g);
        qk(st, ka, 2u * g + 1u);
    }
}

fn pv8(st: ptr<function, State>, ka: u32, g: u32) {
    if (2u * g < D4) {
        pv(st, ka, 2u * g);
        pv(st, ka, 2u * g + 1u);
    }
}

fn max4(x: vec4<f32>) -> f32 {
    return max(max(x.x, x.y), max(x.z, x.w));
}

// Online softmax of query t over keys j0..j0+LANES: the scores become weights, corr[t] the
// factor the accumulator is rescaled by. Keys past n_keys, or after the query when causal,
// weigh 0.
fn softmax(st: ptr<function, State>, t: u32, j0: u32, n_keys: u32, i0: u32) {
    let ja = vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u);
    let jb = ja + vec4<u32>(4u);
    var va = ja < vec4<u32>(n_keys);
    var vb = jb < vec4<u32>(n_keys);
    if (CAUSAL) {
        let i = vec4<u32>(i0 + t * LANES);
        va = va & (ja <= i);
        vb = vb & (jb <= i);
    }
    let sa = select(vec4<f32>(-3.0e38), (*st).s[2u * t], va);
    let sb = select(vec4<f32>(-3.0e38), (*st).s[2u * t + 1u], vb);
    let m = (*st).m[t];
    let mx = max(m, max(max4(sa), max4(sb)));
    let ea = select(vec4<f32>(), exp(sa - mx), va);
    let eb = select(vec4<f32>(), exp(sb - mx), vb);
    (*st).s[2u * t] = ea;
    (*st).s[2u * t + 1u] = eb;
    let c = exp(m - mx);
    (*st).corr[t] = c;
    (*st).l[t] = (*st).l[t] * c + dot(ea + eb, vec4<f32>(1.0));
    (*st).m[t] = mx;
}

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let tq = q_tile(wid, nwg, BQ);
    // Uniform per workgroup: the subgroup operations below run in uniform control flow.
    if (!tq.valid) {
        return;
    }
    let qt = tq.qt;
    let h = tq.h;
    let s = tq.s;
    let i0 = qt * BQ + lane;

    var st: State;
    for (var t = 0u; t < QPT; t++) {
        let qa = addr(p.q, s, min(i0 + t * LANES, p.q_len - 1u), h) / 4u;
        for (var d = 0u; d < D4; d++) {
            st.q[t][d] = vec4<f32>(q[qa + d]) * p.scale;
            st.acc[t][d] = vec4<f32>();
        }
        st.m[t] = -3.0e38;
        st.l[t] = 0.0;
    }
    // Keys this workgroup needs (uniform): all, or up to its last query when causal.
    var n_keys = p.kv_len;
    if (CAUSAL) {
        n_keys = min(min(qt * BQ + BQ, p.q_len), p.kv_len);
    }
    let kv0 = addr(p.kv, s / p.kv_div, 0u, h) / 4u;
    let kv_step = p.kv.token_stride / 4u;
    for (var j0 = 0u; j0 < n_keys; j0 += LANES) {
        // This lane's key of the block (clamped; keys past n_keys are masked below).
        let ka = kv0 + min(j0 + lane, n_keys - 1u) * kv_step;
        for (var t = 0u; t < 2u * MAXQ; t++) {
            st.s[t] = vec4<f32>();
        }
        qk8(&st, ka, 0u); qk8(&st, ka, 1u); qk8(&st, ka, 2u); qk8(&st, ka, 3u); qk8(&st, ka, 4u);
        qk8(&st, ka, 5u); qk8(&st, ka, 6u); qk8(&st, ka, 7u); qk8(&st, ka, 8u); qk8(&st, ka, 9u);
        qk8(&st, ka, 10u); qk8(&st, ka, 11u); qk8(&st, ka, 12u); qk8(&st, ka, 13u); qk8(&st, ka, 14u);
        qk8(&st, ka, 15u); qk8(&st, ka, 16u); qk8(&st, ka, 17u); qk8(&st, ka, 18u); qk8(&st, ka, 19u);
        // Online softmax over the block.
        softmax(&st, 0u, j0, n_keys, i0);
        if (QPT > 1u) {
            softmax(&st, 1u, j0, n_keys, i0);
        }
        pv8(&st, ka, 0u); pv8(&st, ka, 1u); pv8(&st, ka, 2u); pv8(&st, ka, 3u); pv8(&st, ka, 4u);
        pv8(&st, ka, 5u); pv8(&st, ka, 6u); pv8(&st, ka, 7u); pv8(&st, ka, 8u); pv8(&st, ka, 9u);
        pv8(&st, ka, 10u); pv8(&st, ka, 11u); pv8(&st, ka, 12u); pv8(&st, ka, 13u); pv8(&st, ka, 14u);
        pv8(&st, ka, 15u); pv8(&st, ka, 16u); pv8(&st, ka, 17u); pv8(&st, ka, 18u); pv8(&st, ka, 19u);
    }
    for (var t = 0u; t < QPT; t++) {
        let i = i0 + t * LANES;
        if (i < p.q_len) {
            let oa = addr(p.q, s, i, h) / 4u;
            let inv = 1.0 / st.l[t];
            for (var d = 0u; d < D4; d++) {
                o[oa + d] = E(st.acc[t][d] * inv);
            }
        }
    }
}
