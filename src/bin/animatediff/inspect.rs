//! `animatediff inspect <file|dir>`: what a weight file or model folder is (format,
//! family/version, dtypes, tensor counts, detected config). Bad input: the typed load error,
//! exit code 1.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use animatediff_wgpu::load::archive::{FileDType, TensorArchive};
use animatediff_wgpu::load::component::{
    component_weight_files, diffusers_component, open_diffusers_dir, open_motion, open_single_file_archive, ComponentSource, OpenOptions,
};
use animatediff_wgpu::load::config::{
    infer_clip_config, infer_unet_config, infer_vae_config, parse_clip_config, parse_unet_config, parse_vae_config,
};
use animatediff_wgpu::load::detect::{classify_archive, detect_path, ArchiveKind, ComponentKind, Detected};
use animatediff_wgpu::load::{LoadError, LoadResult, WeightSource};

fn dtypes(m: &BTreeMap<FileDType, usize>) -> String {
    m.iter().map(|(d, n)| format!("{d} ×{n}")).collect::<Vec<_>>().join(", ")
}

fn component(out: &mut String, name: &str, c: &ComponentSource) {
    let _ = writeln!(out, "{name}: {} tensors ({})", c.len(), dtypes(&c.dtype_counts()));
}

fn cfg(out: &mut String, name: &str, c: &dyn std::fmt::Debug) {
    let _ = writeln!(out, "  {name} config: {c:?}");
}

fn bytes(n: u64) -> String {
    if n >= 1 << 30 {
        format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    }
}

/// The report for `path`.
pub fn report(path: &Path) -> LoadResult<String> {
    let mut out = String::new();
    let _ = writeln!(out, "path: {}", path.display());
    match detect_path(path)? {
        Detected::File { .. } => file(&mut out, path)?,
        Detected::DiffusersPipeline { components } => {
            let _ = writeln!(out, "format: diffusers pipeline folder ({})", components.join(", "));
            let m = open_diffusers_dir(path)?;
            component(&mut out, "unet", &m.unet);
            cfg(&mut out, "unet", &m.unet_config);
            component(&mut out, "vae", &m.vae);
            cfg(&mut out, "vae", &m.vae_config);
            component(&mut out, "text_encoder", &m.text_encoder);
            cfg(&mut out, "text_encoder", &m.clip_config);
            let _ = writeln!(out, "scheduler config: {}", if m.scheduler_config.is_some() { "present" } else { "absent" });
            if let Some(mm) = &m.motion {
                let _ = writeln!(out, "motion modules: AnimateDiff {}", mm.version);
                component(&mut out, "motion", &mm.source);
                cfg(&mut out, "motion", &mm.config);
            }
        }
        Detected::DiffusersComponent { kind, class } => {
            let _ = writeln!(out, "format: diffusers component folder ({class})");
            match kind {
                ComponentKind::MotionAdapter => motion(&mut out, path)?,
                ComponentKind::Scheduler => {
                    let _ = writeln!(out, "scheduler config only (no weights)");
                }
                kind => {
                    let cfg_path = path.join("config.json");
                    let text = std::fs::read_to_string(&cfg_path).map_err(|source| LoadError::Io { file: cfg_path.display().to_string(), source })?;
                    let cfg_name = cfg_path.display().to_string();
                    let files = component_weight_files(path, None)?;
                    let archives = files.iter().map(|f| TensorArchive::open_path(f).map(Arc::new)).collect::<LoadResult<Vec<_>>>()?;
                    let _ = writeln!(out, "weights: {}", files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "));
                    let c = diffusers_component(kind, archives)?;
                    component(&mut out, "tensors", &c);
                    match kind {
                        ComponentKind::Unet | ComponentKind::UnetMotion => {
                            let p = parse_unet_config(&cfg_name, &text)?;
                            let c = c.filter(|k| !k.contains("motion_modules."));
                            cfg(&mut out, "unet", &infer_unet_config(&c, Some(&p))?);
                        }
                        ComponentKind::Vae => {
                            let p = parse_vae_config(&cfg_name, &text)?;
                            cfg(&mut out, "vae", &infer_vae_config(&c, Some(&p))?);
                        }
                        _ => {
                            let p = parse_clip_config(&cfg_name, &text)?;
                            cfg(&mut out, "text_encoder", &infer_clip_config(&c, Some(&p))?);
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

fn motion(out: &mut String, path: &Path) -> LoadResult<()> {
    let m = open_motion(path)?;
    let _ = writeln!(
        out,
        "family: AnimateDiff motion module {} ({} naming)",
        m.version,
        if m.original_naming { "original" } else { "diffusers MotionAdapter" }
    );
    component(out, "motion", &m.source);
    let label = if path.is_dir() { "motion" } else { "motion (heads/groups assumed SD1.5)" };
    cfg(out, label, &m.config);
    Ok(())
}

fn file(out: &mut String, path: &Path) -> LoadResult<()> {
    let a = Arc::new(TensorArchive::open_path(path)?);
    let kind = classify_archive(&a)?;
    let _ = writeln!(out, "format: {}", a.format());
    let _ = writeln!(out, "tensors: {} ({}), {}", a.len(), dtypes(&a.dtype_counts()), bytes(a.total_bytes()));
    match kind.clone() {
        ArchiveKind::LdmCheckpoint(info) => {
            let _ = writeln!(out, "family: {}", kind.describe());
            let m = open_single_file_archive(a.clone(), &OpenOptions::default())?;
            if info.has_ema() {
                let _ = writeln!(out, "EMA weights: present ({} keys); serving the non-EMA UNet", info.ema_keys);
            }
            if info.other_keys > 0 {
                let _ = writeln!(out, "other keys (ignored): {}", info.other_keys);
            }
            component(out, "unet", &m.unet);
            cfg(out, "unet (heads/groups assumed SD1.5)", &m.unet_config);
            match (&m.vae, &m.vae_config) {
                (Some(v), Some(c)) => {
                    component(out, "vae", v);
                    cfg(out, "vae", c);
                }
                _ => {
                    let _ = writeln!(out, "vae: none (use a separate VAE, e.g. the stock SD1.5 one)");
                }
            }
            match (&m.text_encoder, &m.clip_config) {
                (Some(t), Some(c)) => {
                    component(out, "text_encoder", t);
                    cfg(out, "text_encoder (heads: hidden/64, or SD1.5's 12)", c);
                }
                _ => {
                    let _ = writeln!(out, "text_encoder: none");
                }
            }
        }
        ArchiveKind::MotionModule(info) => {
            motion(out, path)?;
            let _ = writeln!(
                out,
                "  modules: {}, levels: {}, mid block: {}, stored PE length: {}",
                info.modules,
                info.levels,
                info.has_mid_block,
                info.pe_len.map_or("none".to_string(), |l| l.to_string())
            );
        }
        ArchiveKind::DiffusersUnet { motion_modules } => {
            let _ = writeln!(out, "family: {}", kind.describe());
            let c = ComponentSource::identity(a.clone()).filter(|k| !k.contains("motion_modules."));
            cfg(out, "unet (heads/groups assumed SD1.5)", &infer_unet_config(&c, None)?);
            if motion_modules {
                motion(out, path)?;
            }
        }
        ArchiveKind::DiffusersVae => {
            let _ = writeln!(out, "family: {}", kind.describe());
            cfg(out, "vae (groups assumed SD1.5)", &infer_vae_config(a.as_ref() as &dyn WeightSource, None)?);
        }
        ArchiveKind::DiffusersTextEncoder => {
            let _ = writeln!(out, "family: {}", kind.describe());
            let c = diffusers_component(ComponentKind::TextEncoder, vec![a.clone()])?;
            cfg(out, "text_encoder", &infer_clip_config(&c, None)?);
        }
    }
    Ok(())
}

pub fn run(path: &Path) -> LoadResult<()> {
    print!("{}", report(path)?);
    Ok(())
}
