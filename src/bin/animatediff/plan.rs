//! `animatediff plan`: the memory plan of a request (no GPU needed): peak bytes split into
//! weights / activations / temporaries and by phase, the largest buffer and binding, the
//! chosen levers (the cheapest that fit the limits and `--budget`), and the peak with every
//! lever pulled.

use animatediff_wgpu::gpu::{ArenaConfig, DType};
use animatediff_wgpu::pipeline::load::Weights;
use animatediff_wgpu::plan::{self, DeviceLimits, Request};

#[derive(clap::Args)]
pub struct PlanArgs {
    #[arg(long, default_value_t = 16)]
    frames: usize,
    #[arg(long, default_value_t = 512)]
    width: usize,
    #[arg(long, default_value_t = 512)]
    height: usize,
    /// Weight format: f16 / f32 (dense in that precision), q8 or q4 (f16 activations).
    #[arg(long, default_value = "f16")]
    weights: String,
    /// Storage-binding limit (WebGPU default 128 MiB).
    #[arg(long, default_value_t = plan::DEFAULT_MAX_BINDING)]
    max_binding: u64,
    /// Largest single buffer (WebGPU default 256 MiB).
    #[arg(long, default_value_t = plan::DEFAULT_MAX_BUFFER)]
    max_buffer: u64,
    /// Total device bytes the run may use.
    #[arg(long)]
    budget: Option<u64>,
    /// Guidance scale 1 (no classifier-free guidance: one video per step).
    #[arg(long)]
    no_cfg: bool,
    /// Activation precision with q8/q4 weights.
    #[arg(long, default_value = "f16")]
    precision: String,
    /// Size of a new activation arena chunk in bytes (0: no arena, one buffer per activation,
    /// as `ANIMATEDIFF_ARENA=0` runs).
    #[arg(long)]
    arena_chunk: Option<u64>,
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

/// The request and limits the arguments describe.
pub fn request(a: &PlanArgs) -> Result<(Request, DeviceLimits), Box<dyn std::error::Error>> {
    let (precision, weights) = match a.weights.as_str() {
        "f16" => (DType::F16, Weights::Dense),
        "f32" => (DType::F32, Weights::Dense),
        "q8" | "q4" => {
            let p = match a.precision.as_str() {
                "f16" => DType::F16,
                "f32" => DType::F32,
                other => return Err(format!("--precision {other}: expected f16 or f32").into()),
            };
            (p, if a.weights == "q8" { Weights::Q8 } else { Weights::Q4 })
        }
        other => return Err(format!("--weights {other}: expected f16, f32, q8 or q4").into()),
    };
    let mut req = Request::sd15(a.frames, a.width, a.height, precision, weights);
    req.cfg = !a.no_cfg;
    let arena = a.arena_chunk.map_or_else(ArenaConfig::from_env, |chunk_bytes| ArenaConfig { chunk_bytes });
    Ok((req, DeviceLimits { max_binding: a.max_binding, max_buffer: a.max_buffer, budget: a.budget, arena }))
}

pub fn run(a: &PlanArgs) -> Result<(), Box<dyn std::error::Error>> {
    let (req, limits) = request(a)?;
    let precision = req.precision;
    let p = plan::choose(&req, &limits)?;
    println!("SD1.5 + AnimateDiff v2 motion module, {} frames {}×{}, {} weights, {} activations, CFG {}", a.frames, a.width, a.height, a.weights, precision, if req.cfg { "on" } else { "off" });
    println!("levers:            {}", p.levers);
    let unet = p.weight_bytes - p.clip_bytes - p.vae_bytes;
    println!("weights:           {:>14} bytes ({}: UNet + motion {}, text encoder {}, VAE decoder {})", p.weight_bytes, mib(p.weight_bytes), mib(unet), mib(p.clip_bytes), mib(p.vae_bytes));
    println!("peak:              {:>14} bytes ({}, {:.3} GB)", p.peak_bytes, mib(p.peak_bytes), p.peak_bytes as f64 / 1e9);
    println!("  weights          {:>14} bytes ({})", p.peak_weights, mib(p.peak_weights));
    println!("  activations      {:>14} bytes ({})", p.peak_activations, mib(p.peak_activations));
    println!("  temporaries      {:>14} bytes ({})", p.peak_temporaries, mib(p.peak_temporaries));
    if p.arena_chunk_bytes > 0 {
        let slack = p.peak_bytes - p.peak_weights - p.peak_activations - p.peak_temporaries;
        println!("  arena free space {:>14} bytes ({}: unused ranges of the arena chunks)", slack, mib(slack));
    }
    println!("phase peaks:       prompts {} · denoising {} · VAE decode {}", mib(p.encode_peak_bytes), mib(p.denoise_peak_bytes), mib(p.decode_peak_bytes));
    let all = plan::smallest_levers(&req);
    if all != p.levers {
        let s = plan::plan_for(&req, all, &limits)?;
        println!("every lever:       {:>14} bytes ({}, {:.3} GB; {all})", s.peak_bytes, mib(s.peak_bytes), s.peak_bytes as f64 / 1e9);
    }
    println!("peak while loading {:>14} bytes ({})", p.load_peak_bytes, mib(p.load_peak_bytes));
    println!("largest buffer:    {:>14} bytes ({}, `{}`; limit {})", p.largest_buffer, mib(p.largest_buffer), p.largest_buffer_label, mib(a.max_buffer));
    println!("largest binding:   {:>14} bytes ({}; limit {})", p.largest_binding, mib(p.largest_binding), mib(a.max_binding));
    if p.arena_chunk_bytes > 0 {
        let sizes: Vec<String> = p.peak_arena.iter().map(|&b| mib(b)).collect();
        println!(
            "activation arena:  {} chunk buffer(s) at the peak, {} bytes ({}): [{}]; new chunks {} (larger tensors get one of their size), at most {} alive at once",
            p.peak_arena.len(),
            p.peak_arena.iter().sum::<u64>(),
            mib(p.peak_arena.iter().sum()),
            sizes.join(", "),
            mib(p.arena_chunk_bytes),
            p.max_arena_chunks
        );
    } else {
        println!("activation arena:  off (one buffer per activation)");
    }
    println!("tensors allocated: {}", p.buffers);
    let videos = if req.cfg { 2 } else { 1 };
    println!("UNet FLOPs / step: {:.2} TFLOP (batch {}: GEMMs, convolutions, attention)", plan::unet_flops(&req, videos) / 1e12, videos * a.frames);
    println!("live at the peak (besides weights):");
    for (label, n, bytes) in p.peak_buffers.iter().take(12) {
        println!("  {label:<20} ×{n:<4} {}", mib(*bytes));
    }
    Ok(())
}
