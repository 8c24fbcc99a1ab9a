//! GPU memory accounting: every buffer the runtime allocates is counted while it lives.
//!
//! The memory planner (quantization/memory issue) promises "planned peak == measured peak";
//! these counters are the measurement side of that promise.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Default of [`MemoryStats::batch_flush_bytes`]: 64 MiB.
pub const DEFAULT_BATCH_FLUSH_BYTES: u64 = 64 << 20;

/// Live / peak byte counters shared by all buffers of one [`super::Gpu`].
#[derive(Debug, Default)]
pub struct MemoryStats {
    /// 0 = [`DEFAULT_BATCH_FLUSH_BYTES`].
    flush_bytes: AtomicU64,
    /// 0 = feed-forwards are not chunked.
    ff_chunk_bytes: AtomicU64,
    /// Live bytes past which allocations are refused as out of memory; 0 = no cap.
    cap: AtomicU64,
    live: AtomicU64,
    peak: AtomicU64,
    buffers: AtomicU64,
    total_allocated: AtomicU64,
    tracing: AtomicBool,
    /// Allocation (+bytes) / free (−bytes) events while tracing (planner debugging).
    trace: Mutex<Vec<i64>>,
}

/// A point-in-time copy of [`MemoryStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemorySnapshot {
    /// Bytes in buffers that are alive now.
    pub live_bytes: u64,
    /// Largest `live_bytes` seen since creation or the last [`MemoryStats::reset_peak`].
    /// An allocation that failed for lack of memory counts too (it was asked for): a real
    /// one is created invalid and counted until dropped, one refused by the cap is added here.
    pub peak_bytes: u64,
    /// Number of live buffers.
    pub live_buffers: u64,
    /// Bytes of every allocation ever made: buffers of their own and activation arena ranges
    /// (not the arena's chunks). A churn indicator for leak hunting, and what a cancelled run
    /// did not queue.
    pub total_allocated_bytes: u64,
}

impl MemoryStats {
    /// A device buffer of its own (`bytes` also count as allocated).
    pub(crate) fn on_alloc(&self, bytes: u64) {
        self.on_buffer(bytes);
        self.total_allocated.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A device buffer: live, peak, buffer count and trace.
    pub(crate) fn on_buffer(&self, bytes: u64) {
        let live = self.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(live, Ordering::Relaxed);
        self.buffers.fetch_add(1, Ordering::Relaxed);
        self.record(bytes as i64);
    }

    /// A range sub-allocated from an arena chunk (counted in the device bytes with its chunk,
    /// [`MemoryStats::on_buffer`]).
    pub(crate) fn on_sub_alloc(&self, bytes: u64) {
        self.total_allocated.fetch_add(bytes, Ordering::Relaxed);
    }

    fn record(&self, event: i64) {
        if self.tracing.load(Ordering::Relaxed) {
            if let Ok(mut t) = self.trace.lock() {
                t.push(event);
            }
        }
    }

    /// Start recording every allocation (+bytes) and free (−bytes), for comparing the
    /// runtime's sequence with the memory plan's ([`crate::plan`]).
    pub fn start_trace(&self) {
        if let Ok(mut t) = self.trace.lock() {
            t.clear();
        }
        self.tracing.store(true, Ordering::Relaxed);
    }

    /// Stop recording and return the events.
    pub fn take_trace(&self) -> Vec<i64> {
        self.tracing.store(false, Ordering::Relaxed);
        self.trace.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default()
    }

    pub(crate) fn on_free(&self, bytes: u64) {
        self.live.fetch_sub(bytes, Ordering::Relaxed);
        self.buffers.fetch_sub(1, Ordering::Relaxed);
        self.record(-(bytes as i64));
    }

    /// A [`super::Batch`] submits what it has recorded so far once the buffers only it still
    /// holds (dropped by their owners, kept alive for the pending commands) exceed this many
    /// bytes: without that, a long batch keeps every temporary of every layer alive.
    pub fn batch_flush_bytes(&self) -> u64 {
        match self.flush_bytes.load(Ordering::Relaxed) {
            0 => DEFAULT_BATCH_FLUSH_BYTES,
            b => b,
        }
    }

    /// Set [`MemoryStats::batch_flush_bytes`] (0: back to [`DEFAULT_BATCH_FLUSH_BYTES`]; the
    /// memory plan must use the same value).
    pub fn set_batch_flush_bytes(&self, bytes: u64) {
        self.flush_bytes.store(bytes, Ordering::Relaxed);
    }

    /// A GEGLU feed-forward whose `[tokens, 4·C]` intermediate exceeds this many bytes runs
    /// over chunks of tokens through one intermediate buffer of at most this size
    /// (`model::nn::GegluFeedForward`; identical results). 0 (the default): never chunked.
    /// A memory lever set per run by `Models::generate` (`crate::plan` mirrors it).
    pub fn ff_chunk_bytes(&self) -> u64 {
        self.ff_chunk_bytes.load(Ordering::Relaxed)
    }

    /// Set [`MemoryStats::ff_chunk_bytes`] (0: off).
    pub fn set_ff_chunk_bytes(&self, bytes: u64) {
        self.ff_chunk_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Refuse allocations that would take the live bytes past `cap` (`None`: no cap): a
    /// device with that much memory, for emulating a smaller GPU and for testing what happens
    /// when one runs out ([`super::GpuError::OutOfMemory`], as a real failed allocation).
    pub fn set_memory_cap(&self, cap: Option<u64>) {
        self.cap.store(cap.map_or(0, |c| c.max(1)), Ordering::Relaxed);
    }

    pub fn memory_cap(&self) -> Option<u64> {
        Some(self.cap.load(Ordering::Relaxed)).filter(|&c| c > 0)
    }

    /// May `bytes` more be allocated under the cap? `Err((live, cap))` when not; the refused
    /// demand (`live + bytes`) is counted in the peak.
    pub(crate) fn admit(&self, bytes: u64) -> Result<(), (u64, u64)> {
        let Some(cap) = self.memory_cap() else { return Ok(()) };
        let live = self.live.load(Ordering::Relaxed);
        if live.saturating_add(bytes) <= cap {
            return Ok(());
        }
        self.peak.fetch_max(live.saturating_add(bytes), Ordering::Relaxed);
        Err((live, cap))
    }

    /// Start a new peak measurement from the current live size.
    pub fn reset_peak(&self) {
        self.peak.store(self.live.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> MemorySnapshot {
        MemorySnapshot {
            live_bytes: self.live.load(Ordering::Relaxed),
            peak_bytes: self.peak.load(Ordering::Relaxed),
            live_buffers: self.buffers.load(Ordering::Relaxed),
            total_allocated_bytes: self.total_allocated.load(Ordering::Relaxed),
        }
    }
}
