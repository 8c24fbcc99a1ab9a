//! A generation that fits the device: plan it ([`crate::plan`]) and pull the levers that fit
//! the adapter's limits and the caller's budget; if the device still runs out of memory at an
//! allocation (browsers do not say how much memory a GPU has, and other programs use it too),
//! fall back to the next smaller plan on the planner's ladder and run again, or stop with the
//! planner's error saying what would fit (fewer frames, a smaller size, q4 weights).
//! The CLI and the browser API both generate through [`generate_fitted`].

use super::generate::{GenerateParams, Hooks, Models, Output};
use super::load::{HostPipeline, Weights};
use crate::gpu::Gpu;
use crate::model::quant_policy::QuantScheme;
use crate::plan::{self, DeviceLimits, Plan, PlanError};
use crate::{Error, Result};

/// The GEMM weight format the planner must assume: a quantized file's own scheme, else what
/// was asked for at load.
pub fn planned_weights(host: &HostPipeline, requested: Weights) -> Weights {
    match host.quantized {
        Some(QuantScheme::Q8) => Weights::Q8,
        Some(QuantScheme::Q4) => Weights::Q4,
        None => requested,
    }
}

/// The adapter's buffer limits plus an optional total budget in bytes.
pub fn device_limits(gpu: &Gpu, budget: Option<u64>) -> DeviceLimits {
    let info = gpu.info();
    DeviceLimits { max_binding: info.max_storage_buffer_binding_size, max_buffer: info.max_buffer_size, budget, arena: gpu.arena_config() }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

/// One line for a chosen plan (`fallback`: why the previous one failed).
pub fn describe(plan: &Plan, fallback: Option<&str>) -> String {
    match fallback {
        None => format!("memory plan: peak {}; {}", mib(plan.peak_bytes), plan.levers),
        Some(why) => format!("{why}: retrying with a smaller plan: peak {}; {}", mib(plan.peak_bytes), plan.levers),
    }
}

/// Models on the GPU and what they were loaded from.
pub struct Loaded<'a> {
    pub models: &'a Models,
    pub host: &'a HostPipeline,
    /// The GEMM weight format asked for at load.
    pub weights: Weights,
}

/// Generate with the loaded models, planned for `limits`; `report` gets each plan chosen:
/// the first (`None`), then each fallback with why (`Some`: the out-of-memory error). `p`'s levers are
/// overwritten by the plan's. Runs the planner does not model (FreeNoise, context windows,
/// prompt travel, per-module motion effect) keep `p`'s levers, and an out-of-memory error is
/// returned as it is.
pub async fn generate_fitted(
    loaded: Loaded<'_>,
    gpu: &Gpu,
    mut limits: DeviceLimits,
    p: &mut GenerateParams,
    hooks: &mut Hooks<'_>,
    report: &mut dyn FnMut(&Plan, Option<&str>),
) -> Result<Output> {
    let Loaded { models, host, weights } = loaded;
    let Some(req) = plan::request_for(&host.components(), p, models.unet.dtype(), planned_weights(host, weights))? else {
        return models.generate_hooked(gpu, p, hooks).await;
    };
    let mut pl = plan::apply(&req, &limits, p)?;
    report(&pl, None);
    loop {
        gpu.reset_peak_memory();
        let err = match models.generate_hooked(gpu, p, hooks).await {
            Err(e) if e.is_out_of_memory() => e,
            done => return done,
        };
        // Every buffer of the failed attempt is dropped by now; the peak includes the
        // allocation that failed, so the device holds less than that: plan below it (and
        // below the failed plan's peak, so each retry is a strictly smaller plan).
        let demand = gpu.memory().peak_bytes;
        let below = demand.min(pl.peak_bytes).saturating_sub(1);
        limits.budget = Some(limits.budget.map_or(below, |b| b.min(below)));
        match plan::apply(&req, &limits, p) {
            Ok(next) => {
                report(&next, Some(&format!("{err} at {}", mib(demand))));
                pl = next;
            }
            Err(PlanError::DoesNotFit { request, need, levers, suggestion, .. }) => {
                let why = format!("the GPU ran out of memory at {demand} bytes: {err}");
                return Err(Error::Plan(PlanError::DoesNotFit { request, need, why, levers, suggestion }));
            }
            Err(e) => return Err(e.into()),
        }
    }
}
