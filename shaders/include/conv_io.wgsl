// Parameters and the bias / residual / output bindings shared by the convolution kernels
// (shaders/conv2d.wgsl, shaders/conv2d_sg.wgsl; host side: src/ops/conv2d.rs).

struct Params {
    n: u32,
    h: u32,
    w: u32,
    c1: u32,
    c2: u32,
    ho: u32,
    wo: u32,
    cout: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    tiles_n: u32,
    tiles: u32,
    // Runtime flags for conv2d_sg.wgsl (fewer pipelines of that large kernel to compile:
    // lavapipe takes ~2 s each); conv2d.wgsl has the UPSAMPLE / HAS_RESIDUAL specialisations.
    upsample: u32,
    has_residual: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> bias: array<T>;
@group(0) @binding(5) var<storage, read> residual: array<T>;
@group(0) @binding(6) var<storage, read_write> y: array<T>;
