//! `animatediff quantize`: any SD1.5 model + motion module → one quantized pipeline file
//! (packed q8/q4 GEMM weights + scales, dense f16/f32 rest, configs in the metadata) that
//! `generate --model FILE` and the web page load directly. Runs on the CPU (no GPU needed);
//! the result is bit-identical to quantizing on load.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use animatediff_wgpu::model::quant_policy::{QuantPolicy, QuantScheme};
use animatediff_wgpu::pipeline::load::open_pipeline;
use animatediff_wgpu::pipeline::quantized::{write_quantized, DenseDType};
use clap::{Args, ValueEnum};

use crate::generate::ModelArgs;

#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Q8,
    Q4,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DenseArg {
    F16,
    F32,
}

#[derive(Args)]
pub struct QuantizeArgs {
    #[command(flatten)]
    pub models: ModelArgs,
    /// Weight format of the quantized layers (see the policy table in
    /// src/model/quant_policy.rs: q4 keeps a few small layers at q8).
    #[arg(long, value_enum)]
    pub format: FormatArg,
    /// Storage of the tensors that stay dense (norms, biases, embeddings, VAE, …).
    #[arg(long, value_enum, default_value = "f16")]
    pub dense: DenseArg,
    /// Output file (safetensors).
    #[arg(long)]
    pub out: PathBuf,
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

pub fn run(args: QuantizeArgs) -> Result<(), Box<dyn std::error::Error>> {
    // LoRAs are merged before quantizing: a quantized file cannot take them later.
    let paths = args.models.paths();
    let no_motion = paths.motion.as_os_str().is_empty();
    let host = match open_pipeline(&paths) {
        Ok(h) => h,
        Err(e) if no_motion => return Err(format!("{e}\n{}: no motion module: pass one with --motion", paths.model.display()).into()),
        Err(e) => return Err(e.into()),
    };
    if let Some(s) = host.quantized {
        return Err(format!("{} is already a {}-quantized pipeline file", paths.model.display(), s.name()).into());
    }
    for line in &host.description {
        println!("{line}");
    }
    let scheme = match args.format {
        FormatArg::Q8 => QuantScheme::Q8,
        FormatArg::Q4 => QuantScheme::Q4,
    };
    let dense = match args.dense {
        DenseArg::F16 => DenseDType::F16,
        DenseArg::F32 => DenseDType::F32,
    };
    let policy = QuantPolicy::new(scheme);
    let t = Instant::now();
    let mut last = usize::MAX;
    // In place on a terminal, a line each (every 10 %) in a log or pipe.
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let report = write_quantized(&host, &policy, dense, &args.out, &mut |done, total| {
        let pct = done * 100 / total.max(1);
        if pct / 10 != last / 10 || done == total {
            last = pct;
            let line = format!("quantizing: {pct:3}% ({done}/{total} tensors)");
            if tty {
                print!("\r{line}");
            } else {
                println!("{line}");
            }
            let _ = std::io::stdout().flush();
        }
    })?;
    if tty {
        println!();
    }
    let f16_bytes = (report.quantized_params + report.dense_params) * 2;
    println!(
        "{}: {} layers quantized ({} q4, {} q8; {:.1} M weights), {} tensors dense ({:.1} M values, {}); {:.1} MiB ({:.0} % of the same tensors in f16) in {:.1} s",
        args.out.display(),
        report.quantized_layers,
        report.q4_layers,
        report.q8_layers,
        report.quantized_params as f64 / 1e6,
        report.dense_tensors,
        report.dense_params as f64 / 1e6,
        match dense {
            DenseDType::F16 => "f16",
            DenseDType::F32 => "f32",
        },
        mib(report.file_bytes),
        report.file_bytes as f64 * 100.0 / f16_bytes.max(1) as f64,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
