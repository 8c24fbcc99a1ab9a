//! Every scheduler as one linear update the generation loop can run on the GPU:
//!
//! ```text
//! unet input = model_input_scale(i) · x          (at timestep timesteps()[i])
//! x_next     = sample · x + eps · ε + noise · z  (z: fresh torch randn, only where noise ≠ 0)
//! ```
//!
//! - **DDIM** (η = 0): [`Ddim`], see `scheduler.rs`.
//! - **Euler discrete** (`schedulers/scheduling_euler_discrete.py`; AnimateDiff-Lightning uses
//!   `timestep_spacing="trailing"`): `σ_t = √((1−ᾱ_t)/ᾱ_t)` (f32, as torch), interpolated at
//!   the timesteps with `np.interp` (f64, then f32), `σ_N = 0`; `init_noise_sigma = max σ`
//!   (`linspace`/`trailing`) or `√(max σ² + 1)` (`leading`); model input `x / √(σ_i² + 1)`;
//!   step `x + (σ_{i+1} − σ_i)·ε`. Timesteps: `linspace` = `np.linspace(0, T−1, N)` in f32
//!   (fractional: the UNet gets e.g. 665.667), `leading` = `arange(N)·(T//N)` reversed
//!   `+ steps_offset`, `trailing` = `round(arange(T, 0, −T/N)) − 1`.
//! - **LCM** (`schedulers/scheduling_lcm.py`; AnimateLCM): timesteps
//!   `k·(1..=n_orig) − 1` (k = T // n_orig, n_orig = `original_inference_steps` = 50)
//!   reversed, picked at `floor(linspace(0, n_orig, N, endpoint=False))` (4 steps → 999, 759,
//!   499, 259); `c_skip = 0.25/((10t)² + 0.25)`, `c_out = 10t/√((10t)² + 0.25)`;
//!   `x̂₀ = (x − √(1−ᾱ_t)·ε)/√ᾱ_t`, **denoised** `= c_out·x̂₀ + c_skip·x`; the next sample is
//!   `√ᾱ_prev·denoised + √(1−ᾱ_prev)·z` with ᾱ_prev at the *next listed* timestep (not
//!   `t − T/N`), and on the last step just `denoised` (no noise). The UNet gets the integer
//!   timestep. `z` is drawn by diffusers from the pipeline's generator right after the
//!   initial latents (`randn_tensor(model_output.shape, generator)`), so with a seeded
//!   [`TorchGenerator`](super::rng::TorchGenerator) the whole chain reproduces diffusers.
//!
//! The coefficients are computed in f64 from the f32 tables and rounded once; the exact
//! f32 sequences of diffusers are in [`Euler::step_cpu`] / [`Lcm::step_cpu`] (tests).

use super::scheduler::{alphas_cumprod, spacing_timesteps, BetaSchedule, Ddim, FinalSigmasType, InterpolationType, SchedulerConfig, SchedulerError, SchedulerResult, TimestepSpacing};

/// Which scheduler to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SchedulerKind {
    /// DDIM, η = 0 (AnimateDiff's own).
    #[default]
    Ddim,
    /// Euler discrete (AnimateDiff-Lightning: `timestep_spacing = trailing`).
    Euler,
    /// Latent consistency (AnimateLCM).
    Lcm,
}

impl SchedulerKind {
    pub const ALL: [SchedulerKind; 3] = [SchedulerKind::Ddim, SchedulerKind::Euler, SchedulerKind::Lcm];

    /// The short name (`ddim`, `euler`, `lcm`).
    pub fn name(self) -> &'static str {
        match self {
            SchedulerKind::Ddim => "ddim",
            SchedulerKind::Euler => "euler",
            SchedulerKind::Lcm => "lcm",
        }
    }

    /// diffusers' class name.
    pub fn class_name(self) -> &'static str {
        match self {
            SchedulerKind::Ddim => "DDIMScheduler",
            SchedulerKind::Euler => "EulerDiscreteScheduler",
            SchedulerKind::Lcm => "LCMScheduler",
        }
    }

    /// `DDIMScheduler` / `EulerDiscreteScheduler` / `LCMScheduler` → the kind.
    pub fn from_class_name(class: &str) -> Option<SchedulerKind> {
        SchedulerKind::ALL.into_iter().find(|k| k.class_name() == class)
    }
}

impl std::fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SchedulerKind {
    type Err = SchedulerError;

    /// `ddim`, `euler` (also `euler-discrete`, `euler_discrete`), `lcm`, or a diffusers class name;
    /// case-insensitive.
    fn from_str(s: &str) -> SchedulerResult<SchedulerKind> {
        let l = s.trim().to_ascii_lowercase();
        match l.as_str() {
            "ddim" | "ddimscheduler" => Ok(SchedulerKind::Ddim),
            "euler" | "euler-discrete" | "euler_discrete" | "eulerdiscretescheduler" => Ok(SchedulerKind::Euler),
            "lcm" | "lcmscheduler" => Ok(SchedulerKind::Lcm),
            _ => Err(SchedulerError::Unsupported { field: "scheduler", value: format!("`{s}` (expected ddim, euler or lcm)") }),
        }
    }
}

/// One step as `x_next = sample·x + eps·ε + noise·z`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepCoefficients {
    pub sample: f32,
    pub eps: f32,
    /// Weight of fresh Gaussian noise (0 for deterministic steps).
    pub noise: f32,
}

/// A scheduler prepared for `N` steps.
pub trait Sampler: std::fmt::Debug + Send + Sync {
    fn kind(&self) -> SchedulerKind;
    /// The timesteps the UNet is called with, in order (may be fractional for Euler `linspace`).
    fn timesteps(&self) -> &[f32];
    /// The initial latents are `randn · init_noise_sigma`.
    fn init_noise_sigma(&self) -> f32;
    /// The UNet input at step `i` is `model_input_scale(i) · x`.
    fn model_input_scale(&self, i: usize) -> f32;
    /// Step `i`'s update.
    fn step(&self, i: usize) -> SchedulerResult<StepCoefficients>;
    fn len(&self) -> usize {
        self.timesteps().len()
    }
    fn is_empty(&self) -> bool {
        self.timesteps().is_empty()
    }
}

/// `kind` prepared for `steps` steps from a (diffusers) config.
pub fn make_sampler(cfg: &SchedulerConfig, kind: SchedulerKind, steps: usize) -> SchedulerResult<Box<dyn Sampler>> {
    Ok(match kind {
        SchedulerKind::Ddim => Box::new(DdimSampler::new(cfg, steps)?),
        SchedulerKind::Euler => Box::new(Euler::new(cfg, steps)?),
        SchedulerKind::Lcm => Box::new(Lcm::new(cfg, steps)?),
    })
}

fn index_error(i: usize, n: usize) -> SchedulerError {
    SchedulerError::Length { what: "step index", expected: n, found: i }
}

/// Betas and ᾱ with the checks every scheduler shares (ε-prediction, no thresholding).
fn tables(cfg: &SchedulerConfig, steps: usize) -> SchedulerResult<Vec<f32>> {
    cfg.validate()?;
    let train = cfg.num_train_timesteps;
    if steps == 0 || steps > train {
        return Err(SchedulerError::Steps { steps, train });
    }
    Ok(alphas_cumprod(&cfg.betas()?))
}

// ---------------------------------------------------------------------------------------------
// DDIM

/// [`Ddim`] as a [`Sampler`].
#[derive(Debug, Clone)]
pub struct DdimSampler {
    ddim: Ddim,
    timesteps: Vec<f32>,
}

impl DdimSampler {
    pub fn new(cfg: &SchedulerConfig, steps: usize) -> SchedulerResult<Self> {
        let ddim = Ddim::new(cfg, steps)?;
        if cfg.clip_sample {
            return Err(SchedulerError::NotLinear);
        }
        let timesteps = ddim.timesteps().iter().map(|&t| t as f32).collect();
        Ok(Self { ddim, timesteps })
    }

    pub fn ddim(&self) -> &Ddim {
        &self.ddim
    }
}

impl Sampler for DdimSampler {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Ddim
    }
    fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }
    fn init_noise_sigma(&self) -> f32 {
        self.ddim.init_noise_sigma()
    }
    fn model_input_scale(&self, _i: usize) -> f32 {
        1.0
    }
    fn step(&self, i: usize) -> SchedulerResult<StepCoefficients> {
        let t = *self.ddim.timesteps().get(i).ok_or_else(|| index_error(i, self.timesteps.len()))?;
        let c = self.ddim.coefficients(t)?;
        Ok(StepCoefficients { sample: c.sample, eps: c.noise, noise: 0.0 })
    }
}

// ---------------------------------------------------------------------------------------------
// Euler discrete

/// `np.interp(x, arange(len(fp)), fp)` in f64 (numpy's `arr_interp` for a unit grid).
fn interp_unit_grid(x: f64, fp: &[f32]) -> f64 {
    let n = fp.len();
    if n == 0 {
        return f64::NAN;
    }
    let last = (n - 1) as f64;
    if x.is_nan() {
        return x;
    }
    if x <= 0.0 {
        return fp[0] as f64;
    }
    if x >= last {
        return fp[n - 1] as f64;
    }
    let j = x.floor() as usize;
    if j as f64 == x {
        return fp[j] as f64;
    }
    let (y0, y1) = (fp[j] as f64, fp[j + 1] as f64);
    let slope = y1 - y0; // dx = 1
    slope * (x - j as f64) + y0
}

/// Euler discrete (ε-prediction, no churn), diffusers' arithmetic.
#[derive(Debug, Clone)]
pub struct Euler {
    timesteps: Vec<f32>,
    /// `N + 1` values, the last one 0 (or σ_min).
    sigmas: Vec<f32>,
    init_noise_sigma: f32,
    alphas_cumprod: Vec<f32>,
}

impl Euler {
    /// `EulerDiscreteScheduler(**config)` + `set_timesteps(steps)`.
    pub fn new(cfg: &SchedulerConfig, steps: usize) -> SchedulerResult<Self> {
        let ac = tables(cfg, steps)?;
        let unsupported = |field: &'static str| Err(SchedulerError::Unsupported { field, value: "true".into() });
        if cfg.use_karras_sigmas == Some(true) {
            return unsupported("use_karras_sigmas");
        }
        if cfg.use_exponential_sigmas == Some(true) {
            return unsupported("use_exponential_sigmas");
        }
        if cfg.use_beta_sigmas == Some(true) {
            return unsupported("use_beta_sigmas");
        }
        if cfg.interpolation_type != InterpolationType::Linear {
            return Err(SchedulerError::Unsupported { field: "interpolation_type", value: "log_linear".into() });
        }
        let train = cfg.num_train_timesteps;
        // ((1 - ᾱ) / ᾱ) ** 0.5 in f32.
        let full: Vec<f32> = ac.iter().map(|&a| ((1.0f32 - a) / a).sqrt()).collect();
        let timesteps: Vec<f32> = match cfg.timestep_spacing {
            TimestepSpacing::Linspace => {
                let stop = (train - 1) as f64;
                let mut v: Vec<f64> = if steps == 1 { vec![0.0] } else { (0..steps).map(|k| k as f64 * (stop / (steps - 1) as f64)).collect() };
                if steps > 1 {
                    v[steps - 1] = stop;
                }
                v.iter().rev().map(|&x| x as f32).collect()
            }
            TimestepSpacing::Leading => {
                // (arange(N)·(T//N)).round()[::-1].astype(f32) + steps_offset (f32 add)
                spacing_timesteps(TimestepSpacing::Leading, train, steps, 0).into_iter().map(|t| t as f32 + cfg.steps_offset as f32).collect()
            }
            TimestepSpacing::Trailing => spacing_timesteps(TimestepSpacing::Trailing, train, steps, 0).into_iter().map(|t| t as f32).collect(),
        };
        if let Some(&t) = timesteps.iter().find(|&&t| !(t >= 0.0 && t <= (train - 1) as f32)) {
            return Err(SchedulerError::Timestep { t: t as i64, train });
        }
        let mut sigmas: Vec<f32> = timesteps.iter().map(|&t| interp_unit_grid(t as f64, &full) as f32).collect();
        let last = match cfg.final_sigmas_type {
            FinalSigmasType::Zero => 0.0,
            FinalSigmasType::SigmaMin => ((1.0f32 - ac[0]) / ac[0]).sqrt(),
        };
        sigmas.push(last);
        let max = sigmas.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let init_noise_sigma = match cfg.timestep_spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max,
            TimestepSpacing::Leading => (max * max + 1.0).sqrt(),
        };
        Ok(Self { timesteps, sigmas, init_noise_sigma, alphas_cumprod: ac })
    }

    /// `scheduler.sigmas` (`N + 1` values).
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod
    }

    fn sigma(&self, i: usize) -> SchedulerResult<(f32, f32)> {
        match (self.sigmas.get(i), self.sigmas.get(i + 1)) {
            (Some(&s), Some(&n)) => Ok((s, n)),
            _ => Err(index_error(i, self.timesteps.len())),
        }
    }

    /// `√(σ_i² + 1)` as diffusers computes it (f32); the model input is `x` divided by it.
    pub fn model_input_divisor(&self, i: usize) -> SchedulerResult<f32> {
        let (s, _) = self.sigma(i)?;
        Ok((s * s + 1.0).sqrt())
    }

    /// `scale_model_input`: `x / √(σ_i² + 1)` elementwise in f32.
    pub fn scale_model_input_cpu(&self, i: usize, x: &[f32]) -> SchedulerResult<Vec<f32>> {
        let d = self.model_input_divisor(i)?;
        Ok(x.iter().map(|v| v / d).collect())
    }

    /// diffusers' `step` in f32: `x̂₀ = x − σ·ε`, `d = (x − x̂₀)/σ`, `x + d·(σ_next − σ)`.
    pub fn step_cpu(&self, i: usize, eps: &[f32], x: &[f32]) -> SchedulerResult<Vec<f32>> {
        if eps.len() != x.len() {
            return Err(SchedulerError::Length { what: "model output", expected: x.len(), found: eps.len() });
        }
        let (s, n) = self.sigma(i)?;
        let dt = n - s;
        Ok(x.iter()
            .zip(eps)
            .map(|(&xv, &e)| {
                let x0 = xv - s * e;
                let d = (xv - x0) / s;
                xv + d * dt
            })
            .collect())
    }
}

impl Sampler for Euler {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Euler
    }
    fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }
    fn init_noise_sigma(&self) -> f32 {
        self.init_noise_sigma
    }
    fn model_input_scale(&self, i: usize) -> f32 {
        self.model_input_divisor(i).map_or(1.0, |d| (1.0 / d as f64) as f32)
    }
    fn step(&self, i: usize) -> SchedulerResult<StepCoefficients> {
        let (s, n) = self.sigma(i)?;
        Ok(StepCoefficients { sample: 1.0, eps: n - s, noise: 0.0 })
    }
}

// ---------------------------------------------------------------------------------------------
// LCM

/// Latent consistency model multistep sampling (ε-prediction), diffusers' arithmetic.
#[derive(Debug, Clone)]
pub struct Lcm {
    timesteps: Vec<f32>,
    timesteps_int: Vec<usize>,
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    timestep_scaling: f32,
    clip: Option<f32>,
}

impl Lcm {
    /// `LCMScheduler(**config)` + `set_timesteps(steps)`.
    pub fn new(cfg: &SchedulerConfig, steps: usize) -> SchedulerResult<Self> {
        let ac = tables(cfg, steps)?;
        let train = cfg.num_train_timesteps;
        let orig = cfg.original_inference_steps;
        if orig == 0 || orig > train {
            return Err(SchedulerError::Unsupported { field: "original_inference_steps", value: format!("{orig} (must be in 1..={train})") });
        }
        if steps > orig {
            return Err(SchedulerError::Steps { steps, train: orig });
        }
        let k = train / orig;
        // lcm_origin_timesteps = arange(1, orig + 1)·k − 1, reversed.
        let origin: Vec<usize> = (1..=orig).rev().map(|i| i * k - 1).collect();
        // floor(np.linspace(0, orig, N, endpoint=False)): k·(orig/N) in f64.
        let step = orig as f64 / steps as f64;
        let mut ts = Vec::with_capacity(steps);
        for j in 0..steps {
            let idx = (j as f64 * step).floor() as usize;
            let t = *origin.get(idx).ok_or(SchedulerError::Steps { steps, train: orig })?;
            ts.push(t);
        }
        if let Some(&t) = ts.iter().find(|&&t| t >= train) {
            return Err(SchedulerError::Timestep { t: t as i64, train });
        }
        let final_alpha_cumprod = if cfg.set_alpha_to_one { 1.0 } else { ac[0] };
        let clip = cfg.clip_sample.then_some(cfg.clip_sample_range as f32);
        Ok(Self {
            timesteps: ts.iter().map(|&t| t as f32).collect(),
            timesteps_int: ts,
            alphas_cumprod: ac,
            final_alpha_cumprod,
            timestep_scaling: cfg.timestep_scaling as f32,
            clip,
        })
    }

    /// The integer timesteps.
    pub fn timesteps_int(&self) -> &[usize] {
        &self.timesteps_int
    }

    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod
    }

    fn t(&self, i: usize) -> SchedulerResult<usize> {
        self.timesteps_int.get(i).copied().ok_or_else(|| index_error(i, self.timesteps_int.len()))
    }

    /// `(c_skip, c_out)` at step `i`, as torch computes them in f32
    /// (`0.25 / x` is `reciprocal(x)·0.25` for a tensor `x`).
    pub fn scalings(&self, i: usize) -> SchedulerResult<(f32, f32)> {
        let s = self.t(i)? as f32 * self.timestep_scaling;
        let d = s * s + 0.25f32;
        Ok(((1.0f32 / d) * 0.25f32, s / d.sqrt()))
    }

    /// ᾱ at the next listed timestep (the step's target), `final_alpha_cumprod` never (LCM's
    /// timesteps are ≥ 0), and `None` on the last step (which returns `denoised`).
    pub fn alpha_prev(&self, i: usize) -> SchedulerResult<Option<f32>> {
        self.t(i)?;
        Ok(self.timesteps_int.get(i + 1).map(|&p| self.alphas_cumprod.get(p).copied().unwrap_or(self.final_alpha_cumprod)))
    }

    /// diffusers' `step` in f32: returns `(prev_sample, denoised)`. `noise` is used on every
    /// step but the last (where it may be empty).
    pub fn step_cpu(&self, i: usize, eps: &[f32], x: &[f32], noise: &[f32]) -> SchedulerResult<(Vec<f32>, Vec<f32>)> {
        if eps.len() != x.len() {
            return Err(SchedulerError::Length { what: "model output", expected: x.len(), found: eps.len() });
        }
        let t = self.t(i)?;
        let a = self.alphas_cumprod[t];
        let (c_skip, c_out) = self.scalings(i)?;
        let (sa, sb) = (a.sqrt(), (1.0f32 - a).sqrt());
        let denoised: Vec<f32> = x
            .iter()
            .zip(eps)
            .map(|(&xv, &e)| {
                let mut x0 = (xv - sb * e) / sa;
                if let Some(r) = self.clip {
                    x0 = x0.clamp(-r, r);
                }
                c_out * x0 + c_skip * xv
            })
            .collect();
        let prev = match self.alpha_prev(i)? {
            None => denoised.clone(),
            Some(ap) => {
                if noise.len() != x.len() {
                    return Err(SchedulerError::Length { what: "noise", expected: x.len(), found: noise.len() });
                }
                let (sp, sn) = (ap.sqrt(), (1.0f32 - ap).sqrt());
                denoised.iter().zip(noise).map(|(&d, &z)| sp * d + sn * z).collect()
            }
        };
        Ok((prev, denoised))
    }
}

impl Sampler for Lcm {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Lcm
    }
    fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }
    fn init_noise_sigma(&self) -> f32 {
        1.0
    }
    fn model_input_scale(&self, _i: usize) -> f32 {
        1.0
    }
    fn step(&self, i: usize) -> SchedulerResult<StepCoefficients> {
        if self.clip.is_some() {
            return Err(SchedulerError::NotLinear);
        }
        let t = self.t(i)?;
        let a = self.alphas_cumprod[t] as f64;
        let (c_skip, c_out) = self.scalings(i)?;
        let (c_skip, c_out) = (c_skip as f64, c_out as f64);
        // denoised = (c_out/√a + c_skip)·x − c_out·√(1−a)/√a·ε
        let ds = c_out / a.sqrt() + c_skip;
        let de = -c_out * (1.0 - a).sqrt() / a.sqrt();
        Ok(match self.alpha_prev(i)? {
            None => StepCoefficients { sample: ds as f32, eps: de as f32, noise: 0.0 },
            Some(ap) => {
                let r = (ap as f64).sqrt();
                StepCoefficients { sample: (r * ds) as f32, eps: (r * de) as f32, noise: (1.0 - ap as f64).sqrt() as f32 }
            }
        })
    }
}

/// The usual few-step recipes on top of a model's scheduler config: AnimateDiff-Lightning's
/// `EulerDiscreteScheduler.from_config(cfg, timestep_spacing="trailing", beta_schedule="linear")`
/// and AnimateLCM's `LCMScheduler.from_config(cfg, beta_schedule="linear")`; DDIM unchanged.
pub fn recipe_config(cfg: &SchedulerConfig, kind: SchedulerKind) -> SchedulerConfig {
    let mut c = cfg.clone();
    match kind {
        SchedulerKind::Ddim => {}
        SchedulerKind::Euler => {
            c.timestep_spacing = TimestepSpacing::Trailing;
            c.beta_schedule = BetaSchedule::Linear;
        }
        SchedulerKind::Lcm => c.beta_schedule = BetaSchedule::Linear,
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SchedulerConfig {
        let mut c = SchedulerConfig::animatediff_default();
        c.set_alpha_to_one = false;
        c
    }

    #[test]
    fn kinds_parse() {
        assert_eq!("DDIM".parse::<SchedulerKind>().unwrap(), SchedulerKind::Ddim);
        assert_eq!("euler".parse::<SchedulerKind>().unwrap(), SchedulerKind::Euler);
        assert_eq!("EulerDiscreteScheduler".parse::<SchedulerKind>().unwrap(), SchedulerKind::Euler);
        assert_eq!(" lcm ".parse::<SchedulerKind>().unwrap(), SchedulerKind::Lcm);
        assert!(matches!("dpm++".parse::<SchedulerKind>(), Err(SchedulerError::Unsupported { field: "scheduler", .. })));
        for k in SchedulerKind::ALL {
            assert_eq!(k.name().parse::<SchedulerKind>().unwrap(), k);
            assert_eq!(SchedulerKind::from_class_name(k.class_name()), Some(k));
        }
    }

    #[test]
    fn euler_trailing_and_lcm_timesteps() {
        let e = Euler::new(&recipe_config(&cfg(), SchedulerKind::Euler), 4).unwrap();
        assert_eq!(e.timesteps(), &[999.0, 749.0, 499.0, 249.0]);
        assert_eq!(e.sigmas().len(), 5);
        assert_eq!(e.sigmas()[4], 0.0);
        assert_eq!(e.init_noise_sigma(), e.sigmas()[0]);
        let l = Lcm::new(&recipe_config(&cfg(), SchedulerKind::Lcm), 4).unwrap();
        assert_eq!(l.timesteps_int(), &[999, 759, 499, 259]);
        assert!(l.step(3).unwrap().noise == 0.0 && l.step(0).unwrap().noise > 0.0);
        assert!(matches!(Lcm::new(&cfg(), 51), Err(SchedulerError::Steps { .. })));
        assert!(matches!(l.step(4), Err(SchedulerError::Length { .. })));
    }

    #[test]
    fn coefficients_match_cpu_steps() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let e: Vec<f32> = (0..64).map(|i| (i as f32 * 0.91).cos()).collect();
        let z: Vec<f32> = (0..64).map(|i| (i as f32 * 1.3).sin()).collect();
        let eu = Euler::new(&recipe_config(&cfg(), SchedulerKind::Euler), 4).unwrap();
        for i in 0..4 {
            let want = eu.step_cpu(i, &e, &x).unwrap();
            let c = eu.step(i).unwrap();
            for k in 0..64 {
                let got = c.sample * x[k] + c.eps * e[k];
                assert!((got - want[k]).abs() < 1e-4 * (1.0 + want[k].abs()), "euler step {i}");
            }
        }
        let l = Lcm::new(&recipe_config(&cfg(), SchedulerKind::Lcm), 4).unwrap();
        for i in 0..4 {
            let (want, _) = l.step_cpu(i, &e, &x, &z).unwrap();
            let c = l.step(i).unwrap();
            for k in 0..64 {
                let got = c.sample * x[k] + c.eps * e[k] + c.noise * z[k];
                assert!((got - want[k]).abs() < 1e-4 * (1.0 + want[k].abs()), "lcm step {i}: {got} vs {}", want[k]);
            }
        }
    }
}
