// conv2d: implicit-GEMM 2-D convolution on channels-last data.
//   x1 [N, H, W, C1] (+ x2 [N, H, W, C2] read as channels C1.. — "virtual concat", so the
//   up-block skip concatenation is never materialised), optionally nearest-×2 upsampled on
//   read (UPSAMPLE: the conv sees a 2H×2W image), weight w [KH, KW, C1+C2, Cout] (K-major:
//   row k = (ky, kx, ci) holds all output channels),
//   y [N, Ho, Wo, Cout] = conv + bias (+ residual [N, Ho, Wo, Cout]).
// Loads: x1load()/x2load() (shaders/include/load_*.wgsl: CV = 1 channel, or 4 when C1 and C2
// are multiples of 4) and wrow() = w[k, co..co+4] (shaders/include/weights_*.wgsl: dense or
// quantized).
// GEMM view: M = N·Ho·Wo pixels × Cout outputs, K = KH·KW·Cin. Each invocation computes
// TM pixels × 8 output channels in registers; a WGN×WGM workgroup (WGN·WGM = 64, WGN
// invocations along the outputs: fewer for narrow layers such as the 3/4-channel conv_out)
// covers a (WGM·TM)×(8·WGN) tile.
// Padding is zero; out-of-range rows/columns are clamped on read and not written. f32 math.

// Rows (TM ≤ MAX_TM) are unrolled by constant-argument calls, and CV input channels of a row
// meet the weights as one matrix-vector product: lavapipe scalarises register arrays indexed
// by a loop variable. Arrays are sized MAX_TM so the switched-off calls' indices stay in bounds.
const MAX_TM: u32 = 8u;

// wmat(): shaders/include/gemm_wmat.wgsl.

fn gemm_row(acc: ptr<function, array<vec4<f32>, MAX_TM>>, acc2: ptr<function, array<vec4<f32>, MAX_TM>>, xr: ptr<function, array<u32, MAX_TM>>,
            inside: ptr<function, array<bool, MAX_TM>>, i: u32, part: u32, ci: u32, w: mat4x4<f32>, w2: mat4x4<f32>) {
    if (i < TM) {
        var v: vec4<f32>;
        if (HAS_X2 && part == 1u) {
            v = x2load((*xr)[i] + ci);
        } else {
            v = x1load((*xr)[i] + ci);
        }
        let a = select(vec4<f32>(), v, (*inside)[i]);
        (*acc)[i] += w * a;
        (*acc2)[i] += w2 * a;
    }
}

// Input channels ci..ci+CV of x1 (part 0) or x2 (part 1) into every row's accumulators;
// k: their weight row.
fn gemm_step(acc: ptr<function, array<vec4<f32>, MAX_TM>>, acc2: ptr<function, array<vec4<f32>, MAX_TM>>, xr: ptr<function, array<u32, MAX_TM>>,
             inside: ptr<function, array<bool, MAX_TM>>, part: u32, ci: u32, k: u32, col0: u32) {
    let w = wmat(k, col0, p.cout);
    let w2 = wmat(k, col0 + 4u, p.cout);
    gemm_row(acc, acc2, xr, inside, 0u, part, ci, w, w2);
    gemm_row(acc, acc2, xr, inside, 1u, part, ci, w, w2);
    gemm_row(acc, acc2, xr, inside, 2u, part, ci, w, w2);
    gemm_row(acc, acc2, xr, inside, 3u, part, ci, w, w2);
    gemm_row(acc, acc2, xr, inside, 4u, part, ci, w, w2);
    gemm_row(acc, acc2, xr, inside, 5u, part, ci, w, w2);
    gemm_row(acc, acc2, xr, inside, 6u, part, ci, w, w2);
    gemm_row(acc, acc2, xr, inside, 7u, part, ci, w, w2);
}

@compute @workgroup_size(WGN, WGM, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let tile = linear_workgroup(wid, nwg);
    if (tile >= p.tiles) {
        return;
    }
    let m_total = p.n * p.ho * p.wo;
    let row0 = (tile / p.tiles_n) * (WGM * TM) + lid.y * TM;
    let col0 = (tile % p.tiles_n) * (8u * WGN) + lid.x * 8u;
    let cin = p.c1 + p.c2;
    // Input extent as the convolution sees it.
    var ih = p.h;
    var iw = p.w;
    if (UPSAMPLE) {
        ih = 2u * p.h;
        iw = 2u * p.w;
    }

    // Output pixel of each of the TM rows (clamped into range): first pixel of its image and
    // top-left input coordinate of its window.
    var pb: array<u32, MAX_TM>;
    var py: array<i32, MAX_TM>;
    var px: array<i32, MAX_TM>;
    for (var i = 0u; i < TM; i++) {
        let m = min(row0 + i, m_total - 1u);
        let img = m / (p.ho * p.wo);
        let rem = m - img * (p.ho * p.wo);
        let oy = rem / p.wo;
        pb[i] = img * p.h * p.w;
        py[i] = i32(oy * p.stride) - i32(p.pad);
        px[i] = i32((rem - oy * p.wo) * p.stride) - i32(p.pad);
    }

    var acc: array<vec4<f32>, MAX_TM>;
    var acc2: array<vec4<f32>, MAX_TM>;
    for (var ky = 0u; ky < p.kh; ky++) {
        for (var kx = 0u; kx < p.kw; kx++) {
            // Per row, once per window position (not per loaded element): the source pixel
            // (clamped into the image) and whether it is inside (else zero padding).
            var pix: array<u32, MAX_TM>;
            var inside: array<bool, MAX_TM>;
            for (var i = 0u; i < TM; i++) {
                let yy = py[i] + i32(ky);
                let xx = px[i] + i32(kx);
                inside[i] = yy >= 0 && xx >= 0 && yy < i32(ih) && xx < i32(iw);
                var sy = u32(clamp(yy, 0, i32(ih) - 1));
                var sx = u32(clamp(xx, 0, i32(iw) - 1));
                if (UPSAMPLE) {
                    sy /= 2u;
                    sx /= 2u;
                }
                pix[i] = pb[i] + sy * p.w + sx;
            }
            let kbase = (ky * p.kw + kx) * cin;
            // x1's channels, then x2's: two branch-free GEMM loops over the input channels
            // with the same shape as the matmul kernel's K loop.
            var xr: array<u32, MAX_TM>;
            for (var i = 0u; i < TM; i++) {
                xr[i] = pix[i] * p.c1;
            }
            for (var ci = 0u; ci < p.c1; ci += CV) {
                gemm_step(&acc, &acc2, &xr, &inside, 0u, ci, kbase + ci, col0);
            }
            if (HAS_X2) {
                for (var i = 0u; i < TM; i++) {
                    xr[i] = pix[i] * p.c2;
                }
                let kbase2 = kbase + p.c1;
                for (var ci = 0u; ci < p.c2; ci += CV) {
                    gemm_step(&acc, &acc2, &xr, &inside, 1u, ci, kbase2 + ci, col0);
                }
            }
        }
    }

    for (var i = 0u; i < TM; i++) {
        let m = row0 + i;
        if (m >= m_total) {
            break;
        }
        for (var j = 0u; j < 8u; j++) {
            let c = col0 + j;
            if (c < p.cout) {
                var v = select(acc2[i][j % 4u], acc[i][j % 4u], j < 4u) + f32(bias[c]);
                if (HAS_RESIDUAL) {
                    v += f32(residual[m * p.cout + c]);
                }
                y[m * p.cout + c] = T(v);
            }
        }
    }
}
