//! DDIM (η = 0) with diffusers' exact arithmetic, on the CPU in f32.
//!
//! Rules (see `model-spec.md` §3; diffusers `schedulers/scheduling_ddim.py`):
//! - `betas`: `linear` = `torch.linspace(beta_start, beta_end, T, dtype=float32)`; `scaled_linear`
//!   = `torch.linspace(√beta_start, √beta_end, T, dtype=float32) ** 2`. PyTorch's CPU linspace
//!   computes `step = (end − start) / (T − 1)` in f32 and element `i` as `start + step·i` for
//!   `i < T/2`, else `end − step·(T − 1 − i)`, each as one fused multiply-add in the x86 wheels
//!   (GCC contracts the C++ expression; without the FMA 111 of the 1000 linear betas differ by
//!   an ulp). Reproduced here with `mul_add`, bit-exact against diffusers/torch.
//! - `alphas_cumprod = cumprod(1 − betas)`: PyTorch's CPU cumprod accumulates f32 inputs in f64
//!   and rounds each prefix product to f32.
//! - Timesteps (`set_timesteps`): `leading` `arange(N)·(T//N)`, reversed, `+ steps_offset`;
//!   `linspace` `round(linspace(0, T−1, N))` reversed (numpy, round half to even); `trailing`
//!   `round(arange(T, 0, −T/N)) − 1` (numpy's float arange).
//! - Step: `prev_t = t − T//N` for **every** spacing; `ᾱ_prev = ᾱ[prev_t]`, or
//!   `final_alpha_cumprod` (1 with `set_alpha_to_one`, else `ᾱ[0]`) when `prev_t < 0`;
//!   `x0 = (x − √(1−ᾱ_t)·ε) / √ᾱ_t`, optionally clamped (`clip_sample`), then
//!   `x_prev = √ᾱ_prev·x0 + √(1−ᾱ_prev)·ε`, every operation rounded to f32 in that order.
//!   Against diffusers 0.42.1 / torch 2.15 (x86) this is bit-exact on 3 of the 4 fixture steps;
//!   at t = 999 torch's `(1 − ᾱ_t) ** 0.5` comes out one ulp above the correctly rounded square
//!   root (0.73 ulp error: x86 torch routes `sqrt` through MKL's vector math), which moves about
//!   40% of that step's outputs by 1–64 ulp (max 1.9e-6, cancellation in `x − √(1−ᾱ)·ε`). We
//!   keep the correctly rounded `sqrt`.

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq)]
pub enum SchedulerError {
    #[error("scheduler config: {0}")]
    Config(String),
    #[error("scheduler config: {field} = {value} is not supported")]
    Unsupported { field: &'static str, value: String },
    #[error("{steps} inference steps: must be between 1 and num_train_timesteps ({train})")]
    Steps { steps: usize, train: usize },
    #[error("timestep {t} is outside 0..{train}")]
    Timestep { t: i64, train: usize },
    #[error("length mismatch: {what} has {found} values, expected {expected}")]
    Length { what: &'static str, expected: usize, found: usize },
    #[error("clip_sample makes the DDIM step non-linear: no (sample, noise) coefficients")]
    NotLinear,
}

pub type SchedulerResult<T> = Result<T, SchedulerError>;

/// Largest `num_train_timesteps` accepted (real models: 1000).
pub const MAX_TRAIN_TIMESTEPS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    Linear,
    ScaledLinear,
    #[serde(rename = "squaredcos_cap_v2")]
    SquaredcosCapV2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    Linspace,
    Leading,
    Trailing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    Epsilon,
    VPrediction,
    Sample,
}

/// Euler's sigma interpolation between training timesteps (`interpolation_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterpolationType {
    Linear,
    LogLinear,
}

/// Euler's last sigma (`final_sigmas_type`): 0, or the smallest training sigma.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalSigmasType {
    Zero,
    SigmaMin,
}

/// diffusers `scheduler_config.json` (the fields of DDIM, Euler discrete and LCM). Absent
/// fields take the class defaults of the file's `_class_name` (`DDIMScheduler` when there is
/// none or another class), as `<Class>.from_pretrained` does; unknown fields are ignored.
/// Fields another class does not know keep their (class-independent) defaults, so a DDIM
/// config can drive Euler or LCM the way diffusers' `<Class>.from_config(ddim_config)` does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    /// `_class_name` of the file (`DDIMScheduler`, `EulerDiscreteScheduler`, `LCMScheduler`, …).
    #[serde(rename = "_class_name", skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    /// Explicit betas (overrides the schedule), as `torch.tensor(trained_betas, dtype=float32)`.
    pub trained_betas: Option<Vec<f64>>,
    pub steps_offset: usize,
    pub clip_sample: bool,
    pub clip_sample_range: f64,
    pub set_alpha_to_one: bool,
    pub timestep_spacing: TimestepSpacing,
    pub prediction_type: PredictionType,
    pub thresholding: bool,
    pub rescale_betas_zero_snr: bool,
    /// Euler: sigma interpolation (only `linear` is implemented).
    pub interpolation_type: InterpolationType,
    /// Euler: Karras / exponential / beta sigma schedules (not implemented; `null` = off).
    pub use_karras_sigmas: Option<bool>,
    pub use_exponential_sigmas: Option<bool>,
    pub use_beta_sigmas: Option<bool>,
    /// Euler: the sigma after the last step.
    pub final_sigmas_type: FinalSigmasType,
    /// LCM: the distillation schedule's step count (timesteps are picked from
    /// `k·(1..=original_inference_steps) − 1`, `k = T / original_inference_steps`).
    pub original_inference_steps: usize,
    /// LCM: `c_skip`/`c_out` use `timestep · timestep_scaling`.
    pub timestep_scaling: f64,
}

impl Default for SchedulerConfig {
    /// `DDIMScheduler()`'s class defaults (β 0.0001→0.02 linear, clip_sample on): what a config
    /// file's missing keys fall back to, with the Euler/LCM-only fields at their classes'
    /// defaults. Not what AnimateDiff wants: see [`SchedulerConfig::animatediff_default`].
    fn default() -> Self {
        Self {
            class_name: None,
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: BetaSchedule::Linear,
            trained_betas: None,
            steps_offset: 0,
            clip_sample: true,
            clip_sample_range: 1.0,
            set_alpha_to_one: true,
            timestep_spacing: TimestepSpacing::Leading,
            prediction_type: PredictionType::Epsilon,
            thresholding: false,
            rescale_betas_zero_snr: false,
            interpolation_type: InterpolationType::Linear,
            use_karras_sigmas: None,
            use_exponential_sigmas: None,
            use_beta_sigmas: None,
            final_sigmas_type: FinalSigmasType::Zero,
            original_inference_steps: 50,
            timestep_scaling: 10.0,
        }
    }
}

impl SchedulerConfig {
    /// The scheduler AnimateDiff was trained and released with, used when a checkpoint brings
    /// no `scheduler_config.json` (single files): `linear` β 0.00085→0.012, `steps_offset` 1,
    /// `clip_sample` off, `leading` spacing and `set_alpha_to_one = true`. This is the original
    /// repo's `DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear",
    /// steps_offset=1, clip_sample=False)` under diffusers 0.11 defaults, and diffusers' own
    /// AnimateDiff slow test (25 steps → 961, 921, …, 1). The diffusers docs recipe differs:
    /// `linspace` spacing and `set_alpha_to_one = false` (inherited from SD 1.5's config).
    pub fn animatediff_default() -> Self {
        Self { beta_start: 0.00085, beta_end: 0.012, steps_offset: 1, clip_sample: false, ..Self::default() }
    }

    /// The class defaults of a diffusers scheduler class: `EulerDiscreteScheduler()` (β
    /// 0.0001→0.02 linear, `linspace`, offset 0), `LCMScheduler()` (β 0.00085→0.012
    /// `scaled_linear`, `leading`, offset 0, `set_alpha_to_one`, no clipping), anything else
    /// `DDIMScheduler()` ([`Default`]).
    pub fn class_default(class_name: Option<&str>) -> Self {
        let mut c = Self::default();
        match class_name {
            Some("EulerDiscreteScheduler") => {
                c.clip_sample = false;
                c.timestep_spacing = TimestepSpacing::Linspace;
            }
            Some("LCMScheduler") => {
                c.beta_start = 0.00085;
                c.beta_end = 0.012;
                c.beta_schedule = BetaSchedule::ScaledLinear;
                c.clip_sample = false;
            }
            _ => {}
        }
        c.class_name = class_name.map(str::to_string);
        c
    }

    /// Parses a diffusers `scheduler_config.json`: the keys present over the defaults of its
    /// `_class_name` (see [`Self::class_default`]).
    pub fn from_json(text: &str) -> SchedulerResult<Self> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| SchedulerError::Config(e.to_string()))?;
        let obj = v.as_object().ok_or_else(|| SchedulerError::Config("not a JSON object".into()))?;
        let class = obj.get("_class_name").and_then(|c| c.as_str());
        let mut base = serde_json::to_value(Self::class_default(class)).map_err(|e| SchedulerError::Config(e.to_string()))?;
        if let Some(b) = base.as_object_mut() {
            for (k, val) in obj {
                b.insert(k.clone(), val.clone());
            }
        }
        serde_json::from_value(base).map_err(|e| SchedulerError::Config(e.to_string()))
    }

    /// The scheduler the file's `_class_name` names, when it is one of ours.
    pub fn kind(&self) -> Option<super::sampler::SchedulerKind> {
        self.class_name.as_deref().and_then(super::sampler::SchedulerKind::from_class_name)
    }

    /// Rejects settings this DDIM does not implement.
    pub fn validate(&self) -> SchedulerResult<()> {
        let unsupported = |field, value: String| Err(SchedulerError::Unsupported { field, value });
        // SD1.5 trains with 1000; the cap keeps a hostile config (a quantized file's metadata,
        // a scheduler_config.json) from making us allocate per-timestep tables of any size.
        if !(2..=MAX_TRAIN_TIMESTEPS).contains(&self.num_train_timesteps) {
            return unsupported("num_train_timesteps", self.num_train_timesteps.to_string());
        }
        if self.trained_betas.is_none() && self.beta_schedule == BetaSchedule::SquaredcosCapV2 {
            return unsupported("beta_schedule", "squaredcos_cap_v2".into());
        }
        if let Some(b) = &self.trained_betas {
            if b.len() != self.num_train_timesteps {
                return Err(SchedulerError::Length {
                    what: "trained_betas",
                    expected: self.num_train_timesteps,
                    found: b.len(),
                });
            }
        }
        if self.prediction_type != PredictionType::Epsilon {
            let v = if self.prediction_type == PredictionType::VPrediction { "v_prediction" } else { "sample" };
            return unsupported("prediction_type", v.into());
        }
        if self.thresholding {
            return unsupported("thresholding", "true".into());
        }
        if self.rescale_betas_zero_snr {
            return unsupported("rescale_betas_zero_snr", "true".into());
        }
        Ok(())
    }

    /// `scheduler.betas` (f32, PyTorch CPU arithmetic).
    pub fn betas(&self) -> SchedulerResult<Vec<f32>> {
        self.validate()?;
        let n = self.num_train_timesteps;
        if let Some(b) = &self.trained_betas {
            return Ok(b.iter().map(|&v| v as f32).collect());
        }
        Ok(match self.beta_schedule {
            BetaSchedule::Linear => torch_linspace_f32(self.beta_start as f32, self.beta_end as f32, n),
            BetaSchedule::ScaledLinear => {
                torch_linspace_f32(self.beta_start.sqrt() as f32, self.beta_end.sqrt() as f32, n)
                    .into_iter()
                    .map(|b| b * b)
                    .collect()
            }
            BetaSchedule::SquaredcosCapV2 => {
                return Err(SchedulerError::Unsupported { field: "beta_schedule", value: "squaredcos_cap_v2".into() })
            }
        })
    }
}

/// `torch.linspace(start, end, steps, dtype=torch.float32)` on the CPU (x86 wheels: FMA).
pub fn torch_linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    match steps {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (end - start) / (steps - 1) as f32;
            let halfway = steps / 2;
            (0..steps)
                .map(|i| {
                    if i < halfway {
                        step.mul_add(i as f32, start)
                    } else {
                        (-step).mul_add((steps - i - 1) as f32, end)
                    }
                })
                .collect()
        }
    }
}

/// `torch.cumprod(1 − betas)` for f32 on the CPU (f64 accumulator, each prefix rounded to f32).
pub fn alphas_cumprod(betas: &[f32]) -> Vec<f32> {
    let mut acc = 1.0f64;
    betas
        .iter()
        .map(|&b| {
            acc *= (1.0f32 - b) as f64;
            acc as f32
        })
        .collect()
}

/// Inference timesteps of diffusers' `set_timesteps` for a spacing (before validation).
pub fn spacing_timesteps(spacing: TimestepSpacing, train: usize, steps: usize, steps_offset: usize) -> Vec<i64> {
    if steps == 0 {
        return Vec::new();
    }
    match spacing {
        TimestepSpacing::Leading => {
            let ratio = (train / steps) as i64;
            (0..steps as i64).rev().map(|i| i * ratio + steps_offset as i64).collect()
        }
        TimestepSpacing::Linspace => {
            // np.linspace(0, T-1, N): k·step with step = (T-1)/(N-1), last = T-1 exactly.
            let stop = (train - 1) as f64;
            let mut v: Vec<f64> = if steps == 1 {
                vec![0.0]
            } else {
                let step = stop / (steps - 1) as f64;
                (0..steps).map(|k| k as f64 * step).collect()
            };
            if steps > 1 {
                v[steps - 1] = stop;
            }
            v.iter().rev().map(|x| x.round_ties_even() as i64).collect()
        }
        TimestepSpacing::Trailing => {
            // np.round(np.arange(T, 0, -T/N)) - 1, with numpy's float arange:
            // len = ceil((0 - T) / -r), values start + i·delta, delta = (start - r) - start.
            let start = train as f64;
            let r = train as f64 / steps as f64;
            let len = ((0.0 - start) / -r).ceil().max(0.0) as usize;
            let delta = (start + -r) - start;
            (0..len)
                .map(|i| {
                    let x = if i == 0 {
                        start
                    } else if i == 1 {
                        start + -r
                    } else {
                        start + i as f64 * delta
                    };
                    x.round_ties_even() as i64 - 1
                })
                .collect()
        }
    }
}

/// `x_prev = sample · x + noise · ε`: the DDIM step (η = 0, no clipping) as one axpby, for the GPU.
/// Computed in f64 from the f32 ᾱ values and rounded once, so it can differ from
/// [`Ddim::step`]'s f32 sequence in the last bits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DdimCoefficients {
    pub sample: f32,
    pub noise: f32,
}

/// DDIM sampler state for one generation.
#[derive(Debug, Clone)]
pub struct Ddim {
    config: SchedulerConfig,
    num_inference_steps: usize,
    timesteps: Vec<usize>,
    betas: Vec<f32>,
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
}

impl Ddim {
    /// `DDIMScheduler(**config)` + `set_timesteps(steps)`.
    pub fn new(config: &SchedulerConfig, steps: usize) -> SchedulerResult<Self> {
        config.validate()?;
        let train = config.num_train_timesteps;
        if steps == 0 || steps > train {
            return Err(SchedulerError::Steps { steps, train });
        }
        let betas = config.betas()?;
        let alphas_cumprod = alphas_cumprod(&betas);
        let final_alpha_cumprod = if config.set_alpha_to_one { 1.0 } else { alphas_cumprod[0] };
        let raw = spacing_timesteps(config.timestep_spacing, train, steps, config.steps_offset);
        let timesteps = raw
            .into_iter()
            .map(|t| usize::try_from(t).ok().filter(|&u| u < train).ok_or(SchedulerError::Timestep { t, train }))
            .collect::<SchedulerResult<Vec<_>>>()?;
        Ok(Self {
            config: config.clone(),
            num_inference_steps: steps,
            timesteps,
            betas,
            alphas_cumprod,
            final_alpha_cumprod,
        })
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    pub fn num_inference_steps(&self) -> usize {
        self.num_inference_steps
    }

    /// The timesteps to run the UNet at, in order (descending).
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    pub fn betas(&self) -> &[f32] {
        &self.betas
    }

    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod
    }

    pub fn final_alpha_cumprod(&self) -> f32 {
        self.final_alpha_cumprod
    }

    /// DDIM's `init_noise_sigma` (initial latents are plain `randn`).
    pub fn init_noise_sigma(&self) -> f32 {
        1.0
    }

    /// `t − T//N` (may be negative: then the step uses `final_alpha_cumprod`).
    pub fn prev_timestep(&self, t: usize) -> i64 {
        t as i64 - (self.config.num_train_timesteps / self.num_inference_steps) as i64
    }

    fn alpha_t(&self, t: usize) -> SchedulerResult<f32> {
        self.alphas_cumprod
            .get(t)
            .copied()
            .ok_or(SchedulerError::Timestep { t: t as i64, train: self.config.num_train_timesteps })
    }

    /// ᾱ at `prev_timestep(t)`, or `final_alpha_cumprod` below 0.
    pub fn alpha_prev(&self, t: usize) -> SchedulerResult<f32> {
        let prev = self.prev_timestep(t);
        if prev < 0 {
            Ok(self.final_alpha_cumprod)
        } else {
            self.alpha_t(prev as usize)
        }
    }

    /// One DDIM step on the CPU: `x_prev` from the model output `eps` at timestep `t`.
    pub fn step(&self, eps: &[f32], t: usize, x: &[f32]) -> SchedulerResult<Vec<f32>> {
        let mut out = x.to_vec();
        self.step_in_place(eps, t, &mut out)?;
        Ok(out)
    }

    /// [`Self::step`] writing into `x`.
    pub fn step_in_place(&self, eps: &[f32], t: usize, x: &mut [f32]) -> SchedulerResult<()> {
        if eps.len() != x.len() {
            return Err(SchedulerError::Length { what: "model output", expected: x.len(), found: eps.len() });
        }
        let a_t = self.alpha_t(t)?;
        let a_prev = self.alpha_prev(t)?;
        let sqrt_a = a_t.sqrt();
        let sqrt_b = (1.0f32 - a_t).sqrt();
        let sqrt_a_prev = a_prev.sqrt();
        let dir = (1.0f32 - a_prev).sqrt();
        let clip = self.config.clip_sample.then_some(self.config.clip_sample_range as f32);
        for (xv, &e) in x.iter_mut().zip(eps) {
            let mut x0 = (*xv - sqrt_b * e) / sqrt_a;
            if let Some(r) = clip {
                x0 = x0.clamp(-r, r);
            }
            *xv = sqrt_a_prev * x0 + dir * e;
        }
        Ok(())
    }

    /// The step as `x_prev = sample·x + noise·ε` (see [`DdimCoefficients`]).
    pub fn coefficients(&self, t: usize) -> SchedulerResult<DdimCoefficients> {
        if self.config.clip_sample {
            return Err(SchedulerError::NotLinear);
        }
        let a_t = self.alpha_t(t)? as f64;
        let a_prev = self.alpha_prev(t)? as f64;
        let ratio = (a_prev / a_t).sqrt();
        Ok(DdimCoefficients {
            sample: ratio as f32,
            noise: ((1.0 - a_prev).sqrt() - ratio * (1.0 - a_t).sqrt()) as f32,
        })
    }

    /// `add_noise(x0, noise, t) = √ᾱ_t·x0 + √(1−ᾱ_t)·noise` (FreeInit, video-to-video).
    pub fn add_noise(&self, original: &[f32], noise: &[f32], t: usize) -> SchedulerResult<Vec<f32>> {
        if noise.len() != original.len() {
            return Err(SchedulerError::Length { what: "noise", expected: original.len(), found: noise.len() });
        }
        let a_t = self.alpha_t(t)?;
        let s = a_t.sqrt();
        let n = (1.0f32 - a_t).sqrt();
        Ok(original.iter().zip(noise).map(|(&x, &e)| s * x + n * e).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_timesteps_match_spec() {
        let d = Ddim::new(&SchedulerConfig::animatediff_default(), 25).unwrap();
        assert_eq!(d.timesteps().len(), 25);
        assert_eq!(d.timesteps()[0], 961);
        assert_eq!(d.timesteps()[24], 1);
        let d = Ddim::new(&SchedulerConfig::animatediff_default(), 4).unwrap();
        assert_eq!(d.timesteps(), &[751, 501, 251, 1]);
        assert_eq!(d.prev_timestep(1), -249);
        assert_eq!(d.alpha_prev(1).unwrap(), 1.0);
    }

    #[test]
    fn linspace_and_trailing_timesteps() {
        let mut cfg = SchedulerConfig::animatediff_default();
        cfg.timestep_spacing = TimestepSpacing::Linspace;
        assert_eq!(Ddim::new(&cfg, 4).unwrap().timesteps(), &[999, 666, 333, 0]);
        assert_eq!(Ddim::new(&cfg, 25).unwrap().timesteps()[1], 957);
        assert_eq!(Ddim::new(&cfg, 3).unwrap().timesteps(), &[999, 500, 0]); // 499.5 → 500 (half to even)
        assert_eq!(Ddim::new(&cfg, 1).unwrap().timesteps(), &[0]);
        cfg.timestep_spacing = TimestepSpacing::Trailing;
        assert_eq!(Ddim::new(&cfg, 4).unwrap().timesteps(), &[999, 749, 499, 249]);
        assert_eq!(Ddim::new(&cfg, 3).unwrap().timesteps(), &[999, 666, 332]);
        // linspace at 4 steps: the step from 999 uses ᾱ[749], not ᾱ[666].
        cfg.timestep_spacing = TimestepSpacing::Linspace;
        let d = Ddim::new(&cfg, 4).unwrap();
        assert_eq!(d.prev_timestep(999), 749);
    }

    #[test]
    fn betas_and_alphas() {
        let cfg = SchedulerConfig::animatediff_default();
        let betas = cfg.betas().unwrap();
        assert_eq!(betas.len(), 1000);
        assert_eq!(betas[0], 0.00085f32);
        assert_eq!(betas[999], 0.012f32);
        let ac = alphas_cumprod(&betas);
        assert_eq!(ac[0], 0.99915f32);
        assert!(ac.windows(2).all(|w| w[1] < w[0]));
        let mut sl = cfg.clone();
        sl.beta_schedule = BetaSchedule::ScaledLinear;
        let b = sl.betas().unwrap();
        assert!((b[0] - 0.00085).abs() < 1e-9 && (b[999] - 0.012).abs() < 1e-8);
    }

    #[test]
    fn step_and_coefficients_agree() {
        let d = Ddim::new(&SchedulerConfig::animatediff_default(), 25).unwrap();
        let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin() * 1.5).collect();
        let e: Vec<f32> = (0..64).map(|i| (i as f32 * 0.91).cos()).collect();
        for &t in d.timesteps() {
            let stepped = d.step(&e, t, &x).unwrap();
            let c = d.coefficients(t).unwrap();
            for i in 0..64 {
                let lin = c.sample * x[i] + c.noise * e[i];
                assert!((lin - stepped[i]).abs() < 1e-5 * (1.0 + stepped[i].abs()), "t={t}");
            }
        }
        // Last step with ᾱ_prev = 1: x_prev = x0.
        let c = d.coefficients(1).unwrap();
        let a = d.alphas_cumprod()[1] as f64;
        assert!((c.sample as f64 - 1.0 / a.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn add_noise_at_t() {
        let d = Ddim::new(&SchedulerConfig::animatediff_default(), 10).unwrap();
        let y = d.add_noise(&[1.0, 0.0], &[0.0, 1.0], 999).unwrap();
        let a = d.alphas_cumprod()[999];
        assert_eq!(y, vec![a.sqrt(), (1.0 - a).sqrt()]);
    }

    #[test]
    fn config_parsing_and_errors() {
        let sd15 = r#"{"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
            "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null,
            "clip_sample": false}"#;
        let cfg = SchedulerConfig::from_json(sd15).unwrap();
        assert_eq!(cfg.beta_schedule, BetaSchedule::ScaledLinear);
        assert_eq!(cfg.timestep_spacing, TimestepSpacing::Leading);
        assert!(!cfg.set_alpha_to_one);
        let d = Ddim::new(&cfg, 50).unwrap();
        assert_eq!(d.final_alpha_cumprod(), d.alphas_cumprod()[0]);

        assert!(matches!(
            SchedulerConfig::from_json("{\"beta_schedule\": \"cosine\"}"),
            Err(SchedulerError::Config(_))
        ));
        let v = SchedulerConfig::from_json("{\"prediction_type\": \"v_prediction\"}").unwrap();
        assert!(matches!(Ddim::new(&v, 10), Err(SchedulerError::Unsupported { field: "prediction_type", .. })));
        let cfg = SchedulerConfig::animatediff_default();
        assert!(matches!(Ddim::new(&cfg, 0), Err(SchedulerError::Steps { .. })));
        assert!(matches!(Ddim::new(&cfg, 1001), Err(SchedulerError::Steps { .. })));
        // leading + offset 1 at 1000 steps asks for ᾱ[1000].
        assert!(matches!(Ddim::new(&cfg, 1000), Err(SchedulerError::Timestep { t: 1000, .. })));
        let d = Ddim::new(&cfg, 10).unwrap();
        assert!(matches!(d.step(&[0.0], 901, &[0.0, 1.0]), Err(SchedulerError::Length { .. })));
        assert!(matches!(d.step(&[0.0], 5000, &[0.0]), Err(SchedulerError::Timestep { .. })));
        let mut clip = cfg.clone();
        clip.clip_sample = true;
        assert_eq!(Ddim::new(&clip, 10).unwrap().coefficients(901), Err(SchedulerError::NotLinear));
    }
}
