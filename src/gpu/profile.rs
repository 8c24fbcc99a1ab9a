//! Per-kernel GPU time from pass timestamp queries, for benchmarks (`bench unet --profile`):
//! while a profile runs, every dispatch's compute pass writes a timestamp at its beginning and
//! end; each batch resolves its queries into a small buffer before it is submitted, and
//! [`Gpu::take_profile`] reads them all back and sums the time per kernel (shader) name.
//!
//! Needs the adapter's `timestamp-query` feature. The query buffers are not counted in
//! [`super::MemoryStats`] (a few KiB per batch), and a batch with more dispatches than one
//! query set holds is submitted in parts; so profile separately from memory measurements.

use std::collections::HashMap;
use std::sync::Mutex;

use super::context::Gpu;
use super::error::{GpuError, GpuResult};

/// Queries in one query set (WebGPU allows at most 4096): two per dispatch.
pub(crate) const QUERIES_PER_SET: u32 = 4096;

/// GPU time spent in one kernel over a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelTime {
    /// The kernel's shader name (`matmul`, `conv2d_sg`, …): specialisations are summed.
    pub name: &'static str,
    pub dispatches: u64,
    /// Summed time between each dispatch's pass-begin and pass-end timestamps.
    pub nanoseconds: f64,
}

/// Resolved timestamps waiting to be read: (staging buffer, kernel name per dispatch).
#[derive(Default)]
pub(crate) struct Profile {
    pending: Vec<(wgpu::Buffer, Vec<&'static str>)>,
}

/// The query set of one command encoder while a profile runs.
pub(crate) struct EncoderQueries {
    pub(crate) set: wgpu::QuerySet,
    pub(crate) names: Vec<&'static str>,
}

impl EncoderQueries {
    pub(crate) fn new(gpu: &Gpu) -> EncoderQueries {
        let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor { label: Some("profile"), ty: wgpu::QueryType::Timestamp, count: QUERIES_PER_SET });
        EncoderQueries { set, names: Vec::new() }
    }

    /// Whether another dispatch's two timestamps fit.
    pub(crate) fn has_room(&self) -> bool {
        (self.names.len() as u32 + 1) * 2 <= QUERIES_PER_SET
    }

    /// The pass timestamps of the next dispatch, of kernel `name`.
    pub(crate) fn next(&mut self, name: &'static str) -> wgpu::ComputePassTimestampWrites<'_> {
        let i = self.names.len() as u32 * 2;
        self.names.push(name);
        wgpu::ComputePassTimestampWrites { query_set: &self.set, beginning_of_pass_write_index: Some(i), end_of_pass_write_index: Some(i + 1) }
    }

    /// Record the resolve of this encoder's timestamps (before it is finished) and hand them
    /// to the profile.
    pub(crate) fn resolve(self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder) {
        if self.names.is_empty() {
            return;
        }
        let bytes = self.names.len() as u64 * 2 * 8;
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile.resolve"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile.staging"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        encoder.resolve_query_set(&self.set, 0..self.names.len() as u32 * 2, &resolve, 0);
        encoder.copy_buffer_to_buffer(&resolve, 0, &staging, 0, bytes);
        if let Some(p) = lock(&gpu.profile).as_mut() {
            p.pending.push((staging, self.names));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Gpu {
    /// Start timing every dispatch recorded from now on (until [`Gpu::take_profile`]), also in
    /// batches already started.
    pub fn start_profile(&self) -> GpuResult<()> {
        if !self.info().timestamp_query {
            return Err(GpuError::MissingFeature { what: "profiling (Gpu::start_profile)".into(), feature: "timestamp-query" });
        }
        *lock(&self.profile) = Some(Profile::default());
        Ok(())
    }

    /// Whether a profile is running (dispatches write timestamps).
    pub(crate) fn profiling(&self) -> bool {
        lock(&self.profile).is_some()
    }

    /// Stop the profile: wait for the submitted work and return the time per kernel, most
    /// first. Dispatches of batches not yet submitted are not counted.
    pub async fn take_profile(&self) -> GpuResult<Vec<KernelTime>> {
        let Some(profile) = lock(&self.profile).take() else {
            return Err(GpuError::Readback("no profile is running (call Gpu::start_profile first)".into()));
        };
        self.sync().await?;
        let period = f64::from(self.queue.get_timestamp_period());
        let mut totals: HashMap<&'static str, (u64, f64)> = HashMap::new();
        for (staging, names) in profile.pending {
            let stamps: Vec<u64> = self.map_read(&staging, bytemuck::pod_collect_to_vec).await?;
            for (name, pair) in names.iter().zip(stamps.chunks_exact(2)) {
                let e = totals.entry(name).or_default();
                e.0 += 1;
                // Some drivers' timestamps are not monotonic across passes: count 0, not a wrap.
                e.1 += pair[1].saturating_sub(pair[0]) as f64 * period;
            }
        }
        let mut out: Vec<KernelTime> = totals.into_iter().map(|(name, (dispatches, nanoseconds))| KernelTime { name, dispatches, nanoseconds }).collect();
        out.sort_by(|a, b| b.nanoseconds.total_cmp(&a.nanoseconds).then(a.name.cmp(b.name)));
        Ok(out)
    }
}
