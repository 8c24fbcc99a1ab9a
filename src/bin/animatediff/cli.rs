//! Command-line interface (native only).

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Instant;

use animatediff_wgpu::gpu::{ArenaConfig, Gpu, GpuOptions, KernelPreference};
use animatediff_wgpu::model::{MotionConfig, UNetConfig, UNetOptions};
use animatediff_wgpu::pipeline::sampler::make_sampler;
use animatediff_wgpu::pipeline::scheduler::SchedulerConfig;
use animatediff_wgpu::plan;
use animatediff_wgpu::selftest::{kernel_suite, linear_selftest};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "animatediff", version, about = "AnimateDiff (SD1.5 + motion modules) on your GPU via wgpu")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the GPU adapter, enabled features and limits.
    Info(DeviceArgs),
    /// Run a kernel on the GPU and check it against a CPU float64 reference.
    Selftest {
        #[command(flatten)]
        device: DeviceArgs,
        /// Rows of x.
        #[arg(long, default_value_t = 256)]
        m: usize,
        /// Output features (rows of w).
        #[arg(long, default_value_t = 256)]
        n: usize,
        /// Input features.
        #[arg(long, default_value_t = 256)]
        k: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// The memory plan of a request (no GPU needed): peak bytes (weights / activations /
    /// temporaries), largest buffer and binding, chosen levers.
    Plan(crate::plan::PlanArgs),
    /// Benchmarks (they print numbers; they are not tests).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Generate a video: any SD1.5 model + any AnimateDiff motion module → GIF.
    Generate(Box<crate::generate::GenerateArgs>),
    /// Quantize a pipeline (model + motion module) into one q8/q4 safetensors file that
    /// `generate --model FILE` loads directly (CPU only; same weights as quantizing on load).
    Quantize(Box<crate::quantize::QuantizeArgs>),
    /// What a weight file or model folder is: format, family/version, dtypes, tensor counts,
    /// detected config. Exit code 1 with the load error on bad input.
    Inspect {
        /// A .safetensors/.ckpt/.pt/.bin file, a diffusers pipeline or component folder.
        path: std::path::PathBuf,
    },
    /// Print the 77 CLIP token ids of a prompt (JSON array), as diffusers' tokenizer gives them.
    Tokenize {
        /// BPE merges file (`bpe_simple_vocab_16e6.txt[.gz]` or a Hub `merges.txt`); default: bundled.
        #[arg(long)]
        vocab: Option<std::path::PathBuf>,
        prompt: String,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Dense vs q8 vs q4 weights in the matmul / conv kernels on SD1.5 shapes (ms, TFLOP/s,
    /// weight MiB), and the GPU quantize kernel's load-time cost per weight.
    Quant {
        #[command(flatten)]
        device: DeviceArgs,
        /// `small` (seconds on a software adapter) or `sd` (SD1.5's 512×512 shapes).
        #[arg(long, value_enum, default_value = "small")]
        size: crate::bench::Size,
        /// f16 activations (and dense weights; needs shader-f16).
        #[arg(long)]
        f16: bool,
        /// Timed runs per op (after one warm-up run).
        #[arg(long, default_value_t = 3)]
        iters: usize,
    },
    /// Time a denoising step of the full-size SD1.5 UNet + v2 motion modules with random weights
    /// created on the device (no download): ms/step, TFLOP/s against the step's FLOP count, peak memory.
    Unet {
        #[command(flatten)]
        device: DeviceArgs,
        /// Required: the weights are random (timing only).
        #[arg(long)]
        random_weights: bool,
        #[arg(long, default_value_t = 16)]
        frames: usize,
        #[arg(long, default_value_t = 512)]
        width: usize,
        #[arg(long, default_value_t = 512)]
        height: usize,
        /// dense, q8 or q4.
        #[arg(long, default_value = "dense")]
        weights: String,
        /// f16 activations and dense weights (needs shader-f16).
        #[arg(long)]
        f16: bool,
        /// Timed steps (after one warm-up step).
        #[arg(long, default_value_t = 2)]
        steps: usize,
        /// Then one more step with pass timestamps: GPU time per kernel (needs timestamp-query).
        #[arg(long)]
        profile: bool,
    },
    /// Time every kernel family: ms, GFLOP/s, GB/s, peak GPU memory, and with `--peer` the
    /// ratio against burn-wgpu on the same adapter (build with `--features burn-peer`).
    Kernels {
        #[command(flatten)]
        device: DeviceArgs,
        /// `small` (seconds on a software adapter) or `sd` (SD1.5's real 512×512 shapes).
        #[arg(long, value_enum, default_value = "small")]
        size: crate::bench::Size,
        /// f16 storage (needs shader-f16).
        #[arg(long)]
        f16: bool,
        /// Timed runs per op (after one warm-up run).
        #[arg(long, default_value_t = 3)]
        iters: usize,
        /// Also time burn-wgpu on the same adapter.
        #[arg(long)]
        peer: bool,
        /// Only ops whose name contains this.
        #[arg(long)]
        only: Option<String>,
    },
}

#[derive(Args)]
pub struct DeviceArgs {
    /// Use the software/fallback adapter (lavapipe, WARP).
    #[arg(long)]
    fallback_adapter: bool,
    /// Do not enable shader-f16 even if the adapter offers it.
    #[arg(long)]
    no_f16: bool,
    /// Cap the storage-binding size in bytes (emulate a browser's 128 MiB default).
    #[arg(long)]
    max_binding: Option<u64>,
    /// GEMM kernel family: auto (tiled on GPUs, register-blocked on CPU adapters), registers, tiled.
    #[arg(long, value_enum, default_value = "auto")]
    kernels: Kernels,
    /// Refuse GPU allocations past this many live bytes, as a GPU with that much memory would
    /// (emulate a smaller device; `generate` then falls back to a smaller memory plan).
    #[arg(long, value_name = "BYTES")]
    memory_cap: Option<u64>,
    /// Size of a new activation arena chunk (0: no arena, one buffer per activation; default
    /// 16 MiB, or `ANIMATEDIFF_ARENA`).
    #[arg(long, value_name = "BYTES")]
    arena_chunk: Option<u64>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Kernels {
    Auto,
    Registers,
    Tiled,
}

impl DeviceArgs {
    pub fn options(&self) -> GpuOptions {
        GpuOptions {
            force_fallback_adapter: self.fallback_adapter,
            allow_f16: !self.no_f16,
            max_storage_binding_size: self.max_binding,
            memory_cap: self.memory_cap,
            kernels: match self.kernels {
                Kernels::Auto => KernelPreference::Auto,
                Kernels::Registers => KernelPreference::Registers,
                Kernels::Tiled => KernelPreference::Tiled,
            },
            arena: self.arena_chunk.map_or_else(ArenaConfig::from_env, |chunk_bytes| ArenaConfig { chunk_bytes }),
            ..GpuOptions::default()
        }
    }
}

/// Arguments from raw bytes, NUL-separated (non-UTF-8 allowed, as on Unix): the input format
/// of the `cli` fuzz target and of `tests/fuzz_corpus/cli/`.
#[allow(dead_code)] // used by the fuzz target and the tests, not by `main`
pub fn argv_from_bytes(data: &[u8]) -> Vec<OsString> {
    #[cfg(unix)]
    let arg = |b: &[u8]| -> OsString { <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b).to_owned() };
    #[cfg(not(unix))]
    let arg = |b: &[u8]| -> OsString { String::from_utf8_lossy(b).into_owned().into() };
    if data.is_empty() {
        return Vec::new();
    }
    data.split(|&b| b == 0).map(arg).collect()
}

/// Parse `args` (without the program name) as `main` does and, for `generate` and `plan`,
/// build and check everything the run would start from — generation parameters validated
/// against SD1.5 + a v2 motion module, the sampler, the memory plan — without reading a file
/// or touching a GPU. `Ok` or an error message, never a panic (the `cli` fuzz target and
/// `tests::fuzz_corpus_replays` call it on arbitrary arguments).
#[allow(dead_code)] // used by the fuzz target and the tests, not by `main`
pub fn check_args(args: &[OsString]) -> Result<(), String> {
    let argv = std::iter::once(OsString::from("animatediff")).chain(args.iter().cloned());
    let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    match cli.command {
        Command::Generate(a) => {
            let p = crate::generate::params(&a, &SchedulerConfig::animatediff_default(), UNetOptions::default()).map_err(|e| e.to_string())?;
            p.validate(&UNetConfig::sd15(), Some(&MotionConfig::sd15_v2())).map_err(|e| e.to_string())?;
            make_sampler(&p.scheduler, p.scheduler_kind, p.steps).map_err(|e| e.to_string())?;
            let _ = a.device.options();
        }
        Command::Plan(a) => {
            let (req, limits) = crate::plan::request(&a).map_err(|e| e.to_string())?;
            plan::plan_for(&req, plan::Levers::none(req.frames), &limits).map_err(|e| e.to_string())?;
        }
        _ => {}
    }
    Ok(())
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cli.command {
        Command::Quantize(args) => {
            crate::quantize::run(*args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate(args) => {
            crate::generate::run(*args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan(args) => {
            crate::plan::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect { path } => {
            crate::inspect::run(&path)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tokenize { vocab, prompt } => {
            crate::tokenize::run(vocab.as_deref(), &prompt)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Info(dev) => {
            let gpu = pollster::block_on(Gpu::new(dev.options()))?;
            print!("{}", gpu.info());
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Quant { device, size, f16, iters }) => {
            let gpu = pollster::block_on(Gpu::new(device.options()))?;
            print!("{}", gpu.info());
            crate::bench::run_quant(&gpu, size, f16, iters)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Unet { device, random_weights, frames, width, height, weights, f16, steps, profile }) => {
            if !random_weights {
                return Err("bench unet needs --random-weights (the only weight source it has)".into());
            }
            let weights = match weights.as_str() {
                "dense" => animatediff_wgpu::pipeline::load::Weights::Dense,
                "q8" => animatediff_wgpu::pipeline::load::Weights::Q8,
                "q4" => animatediff_wgpu::pipeline::load::Weights::Q4,
                other => return Err(format!("--weights {other}: expected dense, q8 or q4").into()),
            };
            let gpu = pollster::block_on(Gpu::new(device.options()))?;
            print!("{}", gpu.info());
            crate::bench::unet::run(&gpu, frames, width, height, weights, f16, steps, profile)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Kernels { device, size, f16, iters, peer, only }) => {
            let gpu = pollster::block_on(Gpu::new(device.options()))?;
            print!("{}", gpu.info());
            crate::bench::run(&gpu, size, f16, iters, peer, only.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Selftest { device, m, n, k, seed } => {
            let gpu = pollster::block_on(Gpu::new(device.options()))?;
            print!("{}", gpu.info());
            // First run compiles the pipelines; time the second.
            pollster::block_on(linear_selftest(&gpu, m.min(8), n.min(8), k.min(8), seed))?;
            let t = Instant::now();
            let r = pollster::block_on(linear_selftest(&gpu, m, n, k, seed))?;
            let secs = t.elapsed().as_secs_f64();
            println!(
                "linear {m}x{n}x{k}: rel L2 error {:.2e} (tolerance {:.0e}), max abs error {:.2e}, {:.3} s incl. upload/readback ({:.2} GFLOP/s) — {}",
                r.rel_l2_error,
                r.tolerance,
                r.max_abs_error,
                secs,
                r.flops as f64 / secs / 1e9,
                if r.passed { "PASS" } else { "FAIL" }
            );
            let checks = pollster::block_on(kernel_suite(&gpu, seed))?;
            let failed = checks.iter().filter(|c| !c.passed).count();
            for c in &checks {
                println!(
                    "{:<4} {:<46} {:>4}  rel L2 error {:.2e} (tolerance {:.0e})",
                    if c.passed { "ok" } else { "FAIL" },
                    c.name,
                    c.dtype.name(),
                    c.rel_l2_error,
                    c.tolerance
                );
            }
            println!("kernel checks: {} passed, {failed} failed", checks.len() - failed);
            let mem = gpu.memory();
            println!("GPU memory: {} bytes live, peak {} bytes", mem.live_bytes, mem.peak_bytes);
            Ok(if r.passed && failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays `tests/fuzz_corpus/cli/` (findings of the `cli` fuzz target and hand-made
    /// hostile argument lists): each must come back `Ok` or as an error, never a panic.
    #[test]
    fn fuzz_corpus_replays() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus/cli");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = e.unwrap().path();
            let r = check_args(&argv_from_bytes(&std::fs::read(&path).unwrap()));
            eprintln!("{}: {}", path.display(), r.as_ref().err().map(|e| e.lines().next().unwrap_or("").to_string()).unwrap_or_else(|| "ok".into()));
            n += 1;
        }
        assert!(n >= 10, "only {n} corpus files in {}", dir.display());
    }

    #[test]
    fn valid_and_invalid_generate_arguments() {
        let args = |s: &str| argv_from_bytes(s.replace(' ', "\0").as_bytes());
        check_args(&args("generate --model m --prompt a --frames 16 --width 512 --height 512")).unwrap();
        check_args(&args("plan --frames 16 --width 512 --height 512 --weights q4")).unwrap();
        for (bad, says) in [
            ("generate --model m --prompt a --width 500", "width"),
            ("generate --model m --prompt a --frames 0", "frames"),
            ("generate --model m --prompt a --frames 40", "positions"),
            ("generate --model m --prompt a --steps 0", "steps"),
            ("generate --model m --prompt a --guidance NaN", "guidance"),
            ("generate --model m --prompt 99:a", "frame"),
            ("generate --model m --prompt a --frames 99999999999999 --context-length 16", "frames"),
            ("generate --model m --prompt a --width 18446744073709551615", "width"),
            ("plan --width 100", "size"),
            ("generate --prompt a", "--model"),
        ] {
            let e = check_args(&args(bad)).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
