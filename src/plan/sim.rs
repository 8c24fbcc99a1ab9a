//! The allocation simulator: plays the runtime's sequence of buffer allocations without a
//! GPU. Simulated tensors free their buffer when the last handle is dropped, exactly like
//! [`crate::gpu::GpuBuffer`], so the model walk in [`super::walk`] (written in the same
//! shape as the runtime code, same shadowing and scopes) frees buffers at the same points
//! the runtime does. A [`SimBatch`] holds every buffer bound in it until `submit`, as
//! [`crate::gpu::Batch`] does (and as wgpu does: an unsubmitted command buffer keeps its
//! buffers alive). Activations are placed in the activation arena by the runtime's own
//! [`ArenaLayout`], so the arena chunks (the device buffers) are planned exactly.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

use crate::gpu::{ArenaLayout, DType, TENSOR_ALIGN};

/// What a buffer holds (for the weights / activations / temporaries split).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Weight,
    Activation,
}

/// `(chunk, offset, reserved bytes)` of an allocation placed in the activation arena.
pub type Slot = (usize, u64, u64);

/// One allocation's life in the simulation.
#[derive(Debug, Clone)]
pub struct Interval {
    pub label: &'static str,
    pub bytes: u64,
    pub kind: Kind,
    /// Allocation event index.
    pub start: usize,
    /// Free event index (`usize::MAX` while alive / never freed).
    pub end: usize,
    /// Batch counter at allocation (buffers made in the batch in progress are temporaries).
    pub batch: usize,
    /// `(chunk, offset, reserved bytes)` when placed in the activation arena.
    pub slot: Option<Slot>,
}

/// Live / peak counters plus every buffer's interval.
///
/// `live`, `peak` and `trace` count *device buffers*, as `MemoryStats` does: weights (and,
/// without the arena, activations) each in a buffer of their own, activations in arena chunks
/// created and destroyed by [`ArenaLayout`] — the runtime's own placement code.
#[derive(Debug, Default)]
pub struct State {
    pub live: u64,
    pub peak: u64,
    /// Peak since the last [`Sim::take_phase_peak`].
    pub phase_peak: u64,
    /// `(weights, activations, temporaries)` tensor bytes live at the peak (with the arena,
    /// the rest of the peak is free space in its chunks).
    pub peak_split: (u64, u64, u64),
    /// Non-weight tensors live at the peak: label → (count, bytes), largest first.
    pub peak_buffers: Vec<(&'static str, usize, u64)>,
    /// Arena chunk sizes at the peak.
    pub peak_arena: Vec<u64>,
    /// Most arena chunks alive at once.
    pub max_arena_chunks: usize,
    /// Label and size of the largest device buffer allocated (an arena chunk is `"arena"`).
    pub largest: (u64, &'static str),
    /// Size of the largest tensor (its binding, unless an op splits it).
    pub largest_tensor: u64,
    /// The largest binding an op could not split below the binding limit (the runtime
    /// refuses that op; 0: none).
    pub unsplittable: u64,
    pub intervals: Vec<Interval>,
    /// Floating-point operations of the GEMMs, convolutions and attentions walked (2 per
    /// multiply-add; elementwise ops and norms not counted).
    pub flops: f64,
    /// Every device allocation (+bytes) and free (−bytes), in order (as `MemoryStats` traces
    /// them).
    pub trace: Vec<i64>,
    events: usize,
    /// Counter of started batches; the batch in progress.
    batch: usize,
    in_batch: bool,
    /// `MemoryStats::batch_flush_bytes` of the device being planned (0: the default).
    pub flush_bytes: u64,
    /// The device's activation arena (`None`: one buffer per activation).
    pub arena: Option<ArenaLayout>,
    live_ids: Vec<usize>,
    /// Buffers of repetitions not walked ([`State::repeat_since`]).
    repeated_buffers: usize,
}

/// Everything that decides what the next allocations of a walk do, without buffer ids: two
/// equal snapshots around a repeated piece of work (a VAE decode chunk) mean every further
/// repetition replays it exactly.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    live: u64,
    in_batch: bool,
    /// `(bytes, kind, arena slot)` of the live buffers, sorted.
    buffers: Vec<(u64, bool, Option<Slot>)>,
    arena: Option<ArenaLayout>,
}

/// Where the state's records stood at a [`Snapshot`] (to repeat what came after).
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    trace: usize,
    events: usize,
    batch: usize,
    buffers: usize,
    flops: f64,
}

impl State {
    /// See [`Snapshot`].
    pub fn snapshot(&self) -> Snapshot {
        let mut buffers: Vec<_> = self.live_ids.iter().map(|&i| &self.intervals[i]).map(|iv| (iv.bytes, iv.kind == Kind::Weight, iv.slot)).collect();
        buffers.sort_unstable();
        Snapshot { live: self.live, in_batch: self.in_batch, buffers, arena: self.arena.clone() }
    }

    pub fn mark(&self) -> Mark {
        Mark { trace: self.trace.len(), events: self.events, batch: self.batch, buffers: self.buffer_count(), flops: self.flops }
    }

    /// Account for `times` more repetitions of what happened since `m`, which left the state
    /// as it found it (equal [`Snapshot`]s): the device trace, the event / batch counters, the
    /// buffer count and the FLOPs grow as if walked; the peak, the live set and the arena are
    /// those of one repetition already.
    pub fn repeat_since(&mut self, m: Mark, times: usize) {
        let piece = self.trace[m.trace..].to_vec();
        for _ in 0..times {
            self.trace.extend_from_slice(&piece);
        }
        self.events += (self.events - m.events) * times;
        self.batch += (self.batch - m.batch) * times;
        self.repeated_buffers += (self.buffer_count() - m.buffers) * times;
        self.flops += (self.flops - m.flops) * times as f64;
    }

    /// Number of buffers allocated so far (walked or accounted for by [`State::repeat_since`]).
    pub fn buffer_count(&self) -> usize {
        self.repeated_buffers + self.intervals.len()
    }

    fn alloc(&mut self, bytes: u64, label: &'static str, kind: Kind) -> usize {
        // Gpu::create_buffer / create_activation round to whole words, at least 4 bytes.
        let bytes = bytes.max(4).next_multiple_of(4);
        let id = self.intervals.len();
        self.events += 1;
        let placed = match (&mut self.arena, kind) {
            (Some(arena), Kind::Activation) => arena.place(bytes),
            _ => None,
        };
        let slot = placed.map(|p| (p.chunk, p.offset, p.reserved));
        self.intervals.push(Interval { label, bytes, kind, start: self.events, end: usize::MAX, batch: if self.in_batch { self.batch } else { 0 }, slot });
        self.live_ids.push(id);
        self.largest_tensor = self.largest_tensor.max(bytes);
        match placed {
            Some(p) => {
                if let Some(size) = p.created {
                    self.device_alloc(size, "arena");
                }
            }
            // A buffer of its own (also an activation too large for any arena chunk: the
            // runtime refuses it as over max_buffer_size, the plan reports it so).
            None => self.device_alloc(bytes, label),
        }
        id
    }

    fn device_alloc(&mut self, bytes: u64, label: &'static str) {
        self.trace.push(bytes as i64);
        self.live += bytes;
        self.phase_peak = self.phase_peak.max(self.live);
        if bytes > self.largest.0 {
            self.largest = (bytes, label);
        }
        let chunks = self.arena.as_ref().map(|a| a.chunk_sizes()).unwrap_or_default();
        self.max_arena_chunks = self.max_arena_chunks.max(chunks.len());
        if self.live > self.peak {
            self.peak = self.live;
            self.peak_arena = chunks;
            let mut split = (0, 0, 0);
            for &i in &self.live_ids {
                let iv = &self.intervals[i];
                match iv.kind {
                    Kind::Weight => split.0 += iv.bytes,
                    Kind::Activation if self.in_batch && iv.batch == self.batch => split.2 += iv.bytes,
                    Kind::Activation => split.1 += iv.bytes,
                }
            }
            self.peak_split = split;
            let mut by: Vec<(&'static str, usize, u64)> = Vec::new();
            for &i in &self.live_ids {
                let iv = &self.intervals[i];
                if iv.kind == Kind::Weight {
                    continue;
                }
                match by.iter_mut().find(|b| b.0 == iv.label) {
                    Some(b) => {
                        b.1 += 1;
                        b.2 += iv.bytes;
                    }
                    None => by.push((iv.label, 1, iv.bytes)),
                }
            }
            by.sort_by_key(|b| std::cmp::Reverse(b.2));
            self.peak_buffers = by;
        }
    }

    fn device_free(&mut self, bytes: u64) {
        self.trace.push(-(bytes as i64));
        self.live -= bytes;
    }

    fn free(&mut self, id: usize) {
        self.events += 1;
        let iv = &mut self.intervals[id];
        iv.end = self.events;
        let (bytes, slot) = (iv.bytes, iv.slot);
        if let Some(p) = self.live_ids.iter().rposition(|&i| i == id) {
            self.live_ids.swap_remove(p);
        }
        match (slot, &mut self.arena) {
            (Some((chunk, offset, reserved)), Some(arena)) => {
                if let Some(size) = arena.release(chunk, offset, reserved) {
                    self.device_free(size);
                }
            }
            _ => self.device_free(bytes),
        }
    }
}

/// A simulated buffer; frees itself in the [`State`] when dropped.
pub struct Buf {
    state: Rc<RefCell<State>>,
    id: usize,
}

impl Drop for Buf {
    fn drop(&mut self) {
        self.state.borrow_mut().free(self.id);
    }
}

/// A simulated tensor: shape + dtype on a shared buffer (clones share it, like
/// [`crate::gpu::Tensor`]).
#[derive(Clone)]
pub struct T {
    buf: Rc<Buf>,
    pub dims: Vec<usize>,
    pub dtype: DType,
}

impl T {
    pub fn numel(&self) -> u64 {
        self.dims.iter().map(|&d| d as u64).product()
    }

    pub fn size_bytes(&self) -> u64 {
        self.dtype.storage_bytes(self.numel())
    }

    pub fn reshape(&self, dims: Vec<usize>) -> T {
        T { dims, ..self.clone() }
    }
}

/// The simulated device.
#[derive(Clone, Default)]
pub struct Sim {
    pub state: Rc<RefCell<State>>,
}

impl Sim {
    pub fn alloc(&self, dims: &[usize], dtype: DType, label: &'static str) -> T {
        self.alloc_kind(dims, dtype, label, Kind::Activation)
    }

    pub fn weight(&self, dims: &[usize], dtype: DType, label: &'static str) -> T {
        self.alloc_kind(dims, dtype, label, Kind::Weight)
    }

    fn alloc_kind(&self, dims: &[usize], dtype: DType, label: &'static str, kind: Kind) -> T {
        let bytes = dtype.storage_bytes(dims.iter().map(|&d| d as u64).product());
        let id = self.state.borrow_mut().alloc(bytes, label, kind);
        T { buf: Rc::new(Buf { state: self.state.clone(), id }), dims: dims.to_vec(), dtype }
    }

    pub fn batch(&self) -> SimBatch {
        let mut s = self.state.borrow_mut();
        s.batch += 1;
        s.in_batch = true;
        SimBatch { sim: self.clone(), held: Vec::new(), ids: HashSet::new(), alive: Vec::new(), dead_bytes: 0 }
    }

    pub fn live(&self) -> u64 {
        self.state.borrow().live
    }

    pub fn peak(&self) -> u64 {
        self.state.borrow().peak
    }

    pub fn add_flops(&self, f: f64) {
        self.state.borrow_mut().flops += f;
    }

    pub fn reset_peak(&self) {
        let mut s = self.state.borrow_mut();
        s.peak = s.live;
        s.phase_peak = s.live;
    }

    /// The peak since the previous call (or [`Sim::reset_peak`]); starts the next phase.
    pub fn take_phase_peak(&self) -> u64 {
        let mut s = self.state.borrow_mut();
        let p = s.phase_peak;
        s.phase_peak = s.live;
        p
    }
}

/// A simulated command batch: keeps every bound buffer until [`SimBatch::submit`].
pub struct SimBatch {
    pub sim: Sim,
    held: Vec<Rc<Buf>>,
    /// Buffer ids in `held` (membership without a scan).
    ids: HashSet<usize>,
    /// Indices into `held` of buffers someone else still held at the last check: only the
    /// batch can hold a dead buffer, so a dead one never comes back to life and
    /// `dead_bytes` only grows until a flush (keeps a walk of thousands of split
    /// dispatches linear, not quadratic).
    alive: Vec<usize>,
    dead_bytes: u64,
}

impl SimBatch {
    /// Record a dispatch/copy binding `tensors` (first submitting what was recorded when the
    /// buffers only this batch holds exceed the flush threshold, as `Batch::flush_dead`).
    pub fn bind(&mut self, tensors: &[&T]) {
        self.release();
        for t in tensors {
            if self.ids.insert(t.buf.id) {
                self.alive.push(self.held.len());
                self.held.push(t.buf.clone());
            }
        }
    }

    pub fn alloc(&self, dims: &[usize], dtype: DType, label: &'static str) -> T {
        self.sim.alloc(dims, dtype, label)
    }

    /// `Batch::release` (also the start of every dispatch): submit what was recorded when the
    /// buffers only this batch holds exceed the flush threshold.
    pub fn release(&mut self) {
        let st = self.sim.state.borrow();
        let (held, dead) = (&self.held, &mut self.dead_bytes);
        self.alive.retain(|&i| {
            let b = &held[i];
            let now_dead = Rc::strong_count(b) == 1;
            if now_dead {
                *dead += st.intervals[b.id].bytes;
            }
            !now_dead
        });
        drop(st);
        let dead = self.dead_bytes;
        let limit = match self.sim.state.borrow().flush_bytes {
            0 => crate::gpu::DEFAULT_BATCH_FLUSH_BYTES,
            b => b,
        };
        if dead > limit {
            self.held.clear();
            self.ids.clear();
            self.alive.clear();
            self.dead_bytes = 0;
        }
    }

    pub fn submit(self) {
        self.sim.state.borrow_mut().in_batch = false;
        drop(self.held);
    }
}

/// Chunk sizes `split_units` (ops/util.rs) cuts `units` blocks of tensors of `bytes` into
/// so every view fits in `limit` bytes; `Err(bytes)` where it refuses because one aligned
/// group of blocks is already larger (that many bytes).
pub fn split_counts(limit: u64, units: u64, bytes: &[u64]) -> Result<Vec<u64>, u64> {
    if units == 0 {
        return Ok(Vec::new());
    }
    if bytes.iter().all(|&b| b <= limit) {
        return Ok(vec![units]);
    }
    let mut step = 1u64;
    let mut max_units = units;
    for &b in bytes {
        let unit_bytes = b / units;
        if unit_bytes == 0 {
            continue;
        }
        let align = TENSOR_ALIGN / gcd(unit_bytes, TENSOR_ALIGN);
        step = step / gcd(step, align) * align;
        max_units = max_units.min(limit / unit_bytes);
    }
    let per = max_units / step * step;
    if per == 0 {
        return Err(bytes.iter().map(|&b| b / units * step).max().unwrap_or(0));
    }
    let mut out = Vec::new();
    let mut start = 0;
    while start < units {
        let c = per.min(units - start);
        out.push(c);
        start += c;
    }
    Ok(out)
}

use crate::ops::util::gcd;
