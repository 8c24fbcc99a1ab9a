// groupnorm_stats: first level of the GroupNorm statistics for channels-last x[S, P, C]
// (S statistic sets, P positions per set; per image: S = images, P = H·W; jointly over
// frames: S = videos, P = F·H·W). The positions of a set are cut into `chunks` runs of
// `chunk_len`; one invocation per (set, chunk, CV consecutive channels) walks its run with
// one V = CV-wide load per position (neighbouring invocations read neighbouring memory, no
// per-element index division, no barriers — cheap on CPU adapters, coalesced on GPUs) and
// stores per channel the run's mean and M2 = Σ(x − mean)² (accumulated around the run's first
// value, so f32 keeps the precision of a two-pass variance). groupnorm_finalize merges the
// runs and channels of each group exactly (Chan et al.).
// V / VF: T and f32 (CV = 1) or vec4<T> and vec4<f32> (CV = 4, C % 4 == 0).

struct Params {
    sets: u32,
    positions: u32,
    // C / CV
    cols: u32,
    chunks: u32,
    chunk_len: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<V>;
// [S, chunks, 2, cols] of VF: mean, then M2.
@group(0) @binding(2) var<storage, read_write> part: array<VF>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let id = linear_workgroup(wid, nwg) * WG + lid;
    if (id >= p.sets * p.chunks * p.cols) {
        return;
    }
    let col = id % p.cols;
    let sc = id / p.cols;
    let s = sc / p.chunks;
    let pos0 = (sc % p.chunks) * p.chunk_len;
    let pos1 = min(pos0 + p.chunk_len, p.positions);
    var e = (s * p.positions + pos0) * p.cols + col;
    let shift = VF(x[e]);
    var s1 = VF();
    var s2 = VF();
    // Four positions per iteration: loop overhead (exec-mask bookkeeping on CPU adapters)
    // matters next to one load per position.
    var pos = pos0;
    for (; pos + 4u <= pos1; pos += 4u) {
        let d0 = VF(x[e]) - shift;
        let d1 = VF(x[e + p.cols]) - shift;
        let d2 = VF(x[e + 2u * p.cols]) - shift;
        let d3 = VF(x[e + 3u * p.cols]) - shift;
        s1 += (d0 + d1) + (d2 + d3);
        s2 = fma(d0, d0, fma(d1, d1, fma(d2, d2, fma(d3, d3, s2))));
        e += 4u * p.cols;
    }
    for (; pos < pos1; pos++) {
        let d = VF(x[e]) - shift;
        s1 += d;
        s2 = fma(d, d, s2);
        e += p.cols;
    }
    let n = f32(pos1 - pos0);
    let o = 2u * sc * p.cols + col;
    part[o] = shift + s1 / n;
    part[o + p.cols] = max(s2 - s1 * s1 / n, VF());
}
