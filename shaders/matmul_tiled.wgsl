// matmul_tiled: the matmul kernel (shaders/matmul.wgsl: same parameters, bindings and
// epilogue from shaders/include/matmul_io.wgsl, without GEGLU; vec4 loads from
// shaders/include/load_vec4.wgsl) with workgroup-memory tiling for real GPUs: a 16×16
// workgroup computes a 64×64 tile of y, staging a 64×16 slice of x and a 16×64 slice of the
// K-major weights (through wrow(), so quantized weights are dequantized once per tile load)
// in workgroup memory; each invocation accumulates 4×4 outputs in registers.
// Needs K % 4 == 0 and N % 4 == 0.
// On software adapters barriers are expensive and shaders/matmul.wgsl is faster; the host picks.

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

// k-major tiles: a_tile[k·BM + row], b_tile[k·BN + col].
var<workgroup> a_tile: array<f32, 1024>;
var<workgroup> b_tile: array<f32, 1024>;

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let tile = linear_workgroup(wid, nwg);
    // Uniform per workgroup: barriers below stay in uniform control flow.
    if (tile >= p.tiles) {
        return;
    }
    let row_base = (tile / p.tiles_n) * BM;
    let col_base = (tile % p.tiles_n) * BN;
    // This invocation's share of each tile load: 4 consecutive k of one row of x, and
    // 4 consecutive n of one k row of the weights.
    let load_r = tid / 4u;
    let load_k = (tid % 4u) * 4u;
    let xrow = min(row_base + load_r, p.m - 1u);
    let wk = tid / 16u;
    let wcol = (tid % 16u) * 4u;

    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        let kk = k0 + load_k;
        var av = vec4<f32>();
        if (kk < p.k) {
            av = x1load(xrow * p.k + kk);
        }
        var bv = vec4<f32>();
        if (k0 + wk < p.k) {
            bv = wrow(k0 + wk, col_base + wcol, p.n);
        }
        for (var j = 0u; j < 4u; j++) {
            a_tile[(load_k + j) * BM + load_r] = av[j];
            b_tile[wk * BN + wcol + j] = bv[j];
        }
        workgroupBarrier();
        for (var t = 0u; t < BK; t++) {
            let a = vec4<f32>(a_tile[t * BM + lid.y * 4u], a_tile[t * BM + lid.y * 4u + 1u],
                              a_tile[t * BM + lid.y * 4u + 2u], a_tile[t * BM + lid.y * 4u + 3u]);
            let b = vec4<f32>(b_tile[t * BN + lid.x * 4u], b_tile[t * BN + lid.x * 4u + 1u],
                              b_tile[t * BN + lid.x * 4u + 2u], b_tile[t * BN + lid.x * 4u + 3u]);
            for (var i = 0u; i < 4u; i++) {
                acc[i] = fma(vec4<f32>(a[i]), b, acc[i]);
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let r = row_base + lid.y * 4u + i;
        if (r >= p.m) {
            break;
        }
        for (var j = 0u; j < 4u; j++) {
            let c = col_base + lid.x * 4u + j;
            if (c < p.n) {
                store_output(r, c, acc[i][j], 0.0);
            }
        }
    }
}
