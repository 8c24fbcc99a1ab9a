// conv2d_sg: the implicit-GEMM convolution of conv2d.wgsl (same layouts, parameters and
// bindings) for software adapters, where every storage-buffer load is a per-lane scalar loop
// (lavapipe) and costs far more than the FMAs it feeds. A workgroup is one subgroup of
// LANES (= 8, lavapipe's SIMD width) invocations covering LANES·R output pixels × LANES·8
// output channels: each lane loads the input of only R of the pixels and subgroupBroadcast
// hands every pixel's values to all lanes, so each lane loads R input vec4s + 8 weight vec4s
// per 4 input channels for 32·R·8 FMAs (R = 8: 16 loads for 2048 FMAs; conv2d.wgsl: 16 loads
// for 256 FMAs).
// Needs C1, C2 and Cout multiples of 4 (vec4 loads), dense weights, the subgroup feature (native: naga takes
// the builtins without `enable subgroups;`, which it rejects) and subgroups of
// exactly LANES invocations (the workgroup is one subgroup; broadcasts within it).
// Padding is zero; out-of-range pixels/columns are clamped on read and not written. f32 math.

// LANES and lanes(): shaders/include/subgroup_lanes.wgsl.
// Output pixels per workgroup.
const TM: u32 = LANES * R;
// R (1..=MAX_R) is the specialisation; the accumulator sets below exist for MAX_R.
const MAX_R: u32 = 8u;

// Four input channels of one pixel per lane (zero outside the image), from x1 (part 0) or
// x2 (part 1, the virtual concat).
fn load_x(part: u32, e: u32, inside: bool) -> vec4<f32> {
    var v: vec4<f32>;
    if (HAS_X2 && part == 1u) {
        v = x2load(e);
    } else {
        v = x1load(e);
    }
    return select(vec4<f32>(), v, inside);
}

// acc[l] += wa·x(lane l), acc2[l] += wb·x(lane l): the LANES pixels loaded by the subgroup,
// times 4 input channels (the matrices' columns) × 8 output channels.
fn step(acc: ptr<function, array<vec4<f32>, LANES>>, acc2: ptr<function, array<vec4<f32>, LANES>>,
        v: vec4<f32>, wa: mat4x4<f32>, wb: mat4x4<f32>) {
    let a = lanes(v);
    for (var l = 0u; l < LANES; l++) {
        let x = a[l];
        (*acc)[l] = fma(vec4<f32>(x.w), wa[3], fma(vec4<f32>(x.z), wa[2], fma(vec4<f32>(x.y), wa[1], fma(vec4<f32>(x.x), wa[0], (*acc)[l]))));
        (*acc2)[l] = fma(vec4<f32>(x.w), wb[3], fma(vec4<f32>(x.z), wb[2], fma(vec4<f32>(x.y), wb[1], fma(vec4<f32>(x.x), wb[0], (*acc2)[l]))));
    }
}

// Bias (+ residual) and store of pixels m0..m0+LANES × this lane's 8 columns.
fn store(acc: ptr<function, array<vec4<f32>, LANES>>, acc2: ptr<function, array<vec4<f32>, LANES>>, m0: u32, col0: u32) {
    let m_total = p.n * p.ho * p.wo;
    for (var l = 0u; l < LANES; l++) {
        let m = m0 + l;
        if (m >= m_total) {
            break;
        }
        for (var j = 0u; j < 8u; j++) {
            let c = col0 + j;
            if (c < p.cout) {
                var v = select((*acc2)[l][j % 4u], (*acc)[l][j % 4u], j < 4u) + f32(bias[c]);
                if (p.has_residual != 0u) {
                    v += f32(residual[m * p.cout + c]);
                }
                y[m * p.cout + c] = T(v);
            }
        }
    }
}

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    // Uniform per workgroup: the subgroup operations below run in uniform control flow.
    let tile = linear_workgroup(wid, nwg);
    if (tile >= p.tiles) {
        return;
    }
    let m_total = p.n * p.ho * p.wo;
    let row0 = (tile / p.tiles_n) * TM;
    let col0 = (tile % p.tiles_n) * (8u * LANES) + lane * 8u;
    let cin = p.c1 + p.c2;
    let up = p.upsample != 0u;
    let ih = select(p.h, 2u * p.h, up);
    let iw = select(p.w, 2u * p.w, up);

    // The pixels this lane loads: row0 + lane + LANES·r (clamped into range).
    var pb: array<u32, MAX_R>;
    var py: array<i32, MAX_R>;
    var px: array<i32, MAX_R>;
    for (var r = 0u; r < R; r++) {
        let m = min(row0 + lane + LANES * r, m_total - 1u);
        let img = m / (p.ho * p.wo);
        let rem = m - img * (p.ho * p.wo);
        let oy = rem / p.wo;
        pb[r] = img * p.h * p.w;
        py[r] = i32(oy * p.stride) - i32(p.pad);
        px[r] = i32((rem - oy * p.wo) * p.stride) - i32(p.pad);
    }

    // acc{r}[l] / acc{r}b[l]: pixel row0 + LANES·r + l (r < R), columns col0..+4 / col0+4..+8.
    // Separate arrays, only ever indexed by constants, so they stay in registers.
    var acc0: array<vec4<f32>, LANES>;
    var acc0b: array<vec4<f32>, LANES>;
    var acc1: array<vec4<f32>, LANES>;
    var acc1b: array<vec4<f32>, LANES>;
    var acc2: array<vec4<f32>, LANES>;
    var acc2b: array<vec4<f32>, LANES>;
    var acc3: array<vec4<f32>, LANES>;
    var acc3b: array<vec4<f32>, LANES>;
    var acc4: array<vec4<f32>, LANES>;
    var acc4b: array<vec4<f32>, LANES>;
    var acc5: array<vec4<f32>, LANES>;
    var acc5b: array<vec4<f32>, LANES>;
    var acc6: array<vec4<f32>, LANES>;
    var acc6b: array<vec4<f32>, LANES>;
    var acc7: array<vec4<f32>, LANES>;
    var acc7b: array<vec4<f32>, LANES>;
    for (var ky = 0u; ky < p.kh; ky++) {
        for (var kx = 0u; kx < p.kw; kx++) {
            // Source pixel (clamped) and whether it is inside the image, per loaded pixel.
            var pix: array<u32, MAX_R>;
            var inside: array<bool, MAX_R>;
            for (var r = 0u; r < R; r++) {
                let yy = py[r] + i32(ky);
                let xx = px[r] + i32(kx);
                inside[r] = yy >= 0 && xx >= 0 && yy < i32(ih) && xx < i32(iw);
                // Nearest ×2 upsampling: the source pixel is half the coordinate.
                let sy = u32(clamp(yy, 0, i32(ih) - 1)) >> select(0u, 1u, up);
                let sx = u32(clamp(xx, 0, i32(iw) - 1)) >> select(0u, 1u, up);
                pix[r] = pb[r] + sy * p.w + sx;
            }
            let kbase = (ky * p.kw + kx) * cin;
            // Input channels of x1, then of x2 (virtual concat).
            for (var part = 0u; part < select(1u, 2u, HAS_X2); part++) {
                let cs = select(p.c1, p.c2, part == 1u);
                let kb = kbase + select(0u, p.c1, part == 1u);
                var xr: array<u32, MAX_R>;
                for (var r = 0u; r < R; r++) {
                    xr[r] = pix[r] * cs;
                }
                for (var ci = 0u; ci < cs; ci += 4u) {
                    // Weight rows ci..ci+4 as matrix columns: acc += W·x is 4 FMAs per
                    // column, with no inner loop for the compiler to unroll.
                    let k = kb + ci;
                    let wa = mat4x4<f32>(wrow(k, col0, p.cout), wrow(k + 1u, col0, p.cout), wrow(k + 2u, col0, p.cout), wrow(k + 3u, col0, p.cout));
                    let wb = mat4x4<f32>(wrow(k, col0 + 4u, p.cout), wrow(k + 1u, col0 + 4u, p.cout), wrow(k + 2u, col0 + 4u, p.cout), wrow(k + 3u, col0 + 4u, p.cout));
                    step(&acc0, &acc0b, load_x(part, xr[0] + ci, inside[0]), wa, wb);
                    if (R > 1u) {
                        step(&acc1, &acc1b, load_x(part, xr[1] + ci, inside[1]), wa, wb);
                    }
                    if (R > 2u) {
                        step(&acc2, &acc2b, load_x(part, xr[2] + ci, inside[2]), wa, wb);
                    }
                    if (R > 3u) {
                        step(&acc3, &acc3b, load_x(part, xr[3] + ci, inside[3]), wa, wb);
                    }
                    if (R > 4u) {
                        step(&acc4, &acc4b, load_x(part, xr[4] + ci, inside[4]), wa, wb);
                    }
                    if (R > 5u) {
                        step(&acc5, &acc5b, load_x(part, xr[5] + ci, inside[5]), wa, wb);
                    }
                    if (R > 6u) {
                        step(&acc6, &acc6b, load_x(part, xr[6] + ci, inside[6]), wa, wb);
                    }
                    if (R > 7u) {
                        step(&acc7, &acc7b, load_x(part, xr[7] + ci, inside[7]), wa, wb);
                    }
                }
            }
        }
    }

    store(&acc0, &acc0b, row0, col0);
    if (R > 1u) {
        store(&acc1, &acc1b, row0 + 1u * LANES, col0);
    }
    if (R > 2u) {
        store(&acc2, &acc2b, row0 + 2u * LANES, col0);
    }
    if (R > 3u) {
        store(&acc3, &acc3b, row0 + 3u * LANES, col0);
    }
    if (R > 4u) {
        store(&acc4, &acc4b, row0 + 4u * LANES, col0);
    }
    if (R > 5u) {
        store(&acc5, &acc5b, row0 + 5u * LANES, col0);
    }
    if (R > 6u) {
        store(&acc6, &acc6b, row0 + 6u * LANES, col0);
    }
    if (R > 7u) {
        store(&acc7, &acc7b, row0 + 7u * LANES, col0);
    }
}
