//! GPU memory accounting: every buffer the runtime allocates is counted while it lives.
//!
//! The memory planner (quantization/memory issue) promises "planned peak == measured peak";
//! these counters are the measurement side of that promise.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live / peak byte counters shared by all buffers of one [`super::Gpu`].
#[derive(Debug, Default)]
pub struct MemoryStats {
    live: AtomicU64,
    peak: AtomicU64,
    buffers: AtomicU64,
    total_allocated: AtomicU64,
}

/// A point-in-time copy of [`MemoryStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemorySnapshot {
    /// Bytes in buffers that are alive now.
    pub live_bytes: u64,
    /// Largest `live_bytes` seen since creation or the last [`MemoryStats::reset_peak`].
    pub peak_bytes: u64,
    /// Number of live buffers.
    pub live_buffers: u64,
    /// Bytes ever allocated (a churn indicator for leak hunting).
    pub total_allocated_bytes: u64,
}

impl MemoryStats {
    pub(crate) fn on_alloc(&self, bytes: u64) {
        let live = self.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(live, Ordering::Relaxed);
        self.buffers.fetch_add(1, Ordering::Relaxed);
        self.total_allocated.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn on_free(&self, bytes: u64) {
        self.live.fetch_sub(bytes, Ordering::Relaxed);
        self.buffers.fetch_sub(1, Ordering::Relaxed);
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
