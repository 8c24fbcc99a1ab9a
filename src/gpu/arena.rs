//! The activation arena: activations are sub-allocated at 256-byte aligned offsets from a few
//! large device buffers ("chunks") instead of one buffer each.
//!
//! [`ArenaLayout`] is the placement algorithm — first fit over the chunks in order, free
//! ranges coalesced, a new chunk when nothing fits, a chunk destroyed when its last range is
//! freed — and the only one: the runtime ([`Arena`]) and the memory planner's simulation
//! (`crate::plan::sim`) both run it on the same allocation / free sequence, so the planned
//! chunks (and the device bytes they add up to) are the runtime's by construction.
//!
//! Chunk size: a new chunk has [`ArenaLayout::chunk_bytes`] (≤ `max_buffer_size`), or exactly
//! the (aligned) tensor when that is larger, so a large activation never wastes a chunk's
//! tail. Destroying a chunk as soon as it is empty returns its memory to the device between
//! phases (text encoder → denoising → VAE) as separate buffers did.
//!
//! Binding several ranges of one buffer in one dispatch needs every storage binding declared
//! `read_write` (WebGPU/wgpu reject one buffer bound read-only and writable in a dispatch),
//! and no two writable bindings may overlap (Dawn validates it): see `Gpu::kernel` and
//! `Batch::dispatch_at`.

use std::sync::{Arc, Mutex};

use super::memory::MemoryStats;
use super::tensor::TENSOR_ALIGN;

/// Default size of an arena chunk: 16 MiB (within every WebGPU device's 256 MiB
/// `max_buffer_size`). Small enough that a half-used chunk wastes little at the peak, large
/// enough that the thousands of small activations of a step share a handful of buffers.
pub const DEFAULT_ARENA_CHUNK_BYTES: u64 = 16 << 20;

/// How a device allocates activations: `chunk_bytes` 0 = one buffer per activation (no arena).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArenaConfig {
    pub chunk_bytes: u64,
}

impl ArenaConfig {
    /// The arena with [`DEFAULT_ARENA_CHUNK_BYTES`] chunks.
    pub const DEFAULT: ArenaConfig = ArenaConfig { chunk_bytes: DEFAULT_ARENA_CHUNK_BYTES };
    /// No arena: every activation in its own buffer.
    pub const OFF: ArenaConfig = ArenaConfig { chunk_bytes: 0 };

    pub fn enabled(&self) -> bool {
        self.chunk_bytes > 0
    }

    /// The default, or off when the environment variable `ANIMATEDIFF_ARENA` is `0` (natively;
    /// in the browser always the default).
    pub fn from_env() -> ArenaConfig {
        match std::env::var("ANIMATEDIFF_ARENA").ok().as_deref().map(str::trim) {
            Some("0") | Some("off") | Some("false") => ArenaConfig::OFF,
            Some(s) => s.parse::<u64>().ok().filter(|&b| b >= TENSOR_ALIGN).map_or(ArenaConfig::DEFAULT, |chunk_bytes| ArenaConfig { chunk_bytes }),
            None => ArenaConfig::DEFAULT,
        }
    }

    /// The layout of a device whose buffers hold at most `max_buffer` bytes (`None` when off).
    pub fn layout(&self, max_buffer: u64) -> Option<ArenaLayout> {
        self.enabled().then(|| ArenaLayout::new(self.chunk_bytes, max_buffer))
    }
}

impl Default for ArenaConfig {
    fn default() -> Self {
        ArenaConfig::DEFAULT
    }
}

/// Where [`ArenaLayout::place`] put an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub chunk: usize,
    pub offset: u64,
    /// Bytes reserved (the request rounded up to [`TENSOR_ALIGN`]).
    pub reserved: u64,
    /// Size of the chunk created for it, if one was.
    pub created: Option<u64>,
}

#[derive(Debug, Clone)]
struct ChunkLayout {
    size: u64,
    /// Free `[start, end)` ranges, sorted and coalesced.
    free: Vec<(u64, u64)>,
    /// Live allocations.
    used: usize,
}

/// The arena's placement state: chunks (by index; a destroyed chunk's index is reused first)
/// and their free ranges.
#[derive(Debug, Clone)]
pub struct ArenaLayout {
    chunk_bytes: u64,
    max_buffer: u64,
    chunks: Vec<Option<ChunkLayout>>,
}

impl ArenaLayout {
    /// Chunks of `chunk_bytes` (at most `max_buffer`, at least [`TENSOR_ALIGN`]).
    pub fn new(chunk_bytes: u64, max_buffer: u64) -> ArenaLayout {
        let max_buffer = max_buffer / TENSOR_ALIGN * TENSOR_ALIGN;
        let chunk_bytes = chunk_bytes.min(max_buffer).max(TENSOR_ALIGN) / TENSOR_ALIGN * TENSOR_ALIGN;
        ArenaLayout { chunk_bytes, max_buffer, chunks: Vec::new() }
    }

    pub fn chunk_bytes(&self) -> u64 {
        self.chunk_bytes
    }

    /// Place `bytes` (first fit: the lowest free range of the first chunk that has one large
    /// enough, else a new chunk). `None` when the aligned size exceeds `max_buffer`.
    pub fn place(&mut self, bytes: u64) -> Option<Placement> {
        let reserved = bytes.max(1).checked_next_multiple_of(TENSOR_ALIGN)?;
        if reserved > self.max_buffer {
            return None;
        }
        for (i, c) in self.chunks.iter_mut().enumerate() {
            let Some(c) = c else { continue };
            if let Some(j) = c.free.iter().position(|&(s, e)| e - s >= reserved) {
                let (s, e) = c.free[j];
                if e - s == reserved {
                    c.free.remove(j);
                } else {
                    c.free[j].0 = s + reserved;
                }
                c.used += 1;
                return Some(Placement { chunk: i, offset: s, reserved, created: None });
            }
        }
        let size = self.chunk_bytes.max(reserved);
        let chunk = ChunkLayout { size, free: if size > reserved { vec![(reserved, size)] } else { Vec::new() }, used: 1 };
        let i = match self.chunks.iter().position(Option::is_none) {
            Some(i) => {
                self.chunks[i] = Some(chunk);
                i
            }
            None => {
                self.chunks.push(Some(chunk));
                self.chunks.len() - 1
            }
        };
        Some(Placement { chunk: i, offset: 0, reserved, created: Some(size) })
    }

    /// Free a placement; returns the chunk's size when that emptied (and destroyed) it.
    pub fn release(&mut self, chunk: usize, offset: u64, reserved: u64) -> Option<u64> {
        let slot = self.chunks.get_mut(chunk)?;
        let c = slot.as_mut()?;
        c.used = c.used.saturating_sub(1);
        if c.used == 0 {
            let size = c.size;
            *slot = None;
            while matches!(self.chunks.last(), Some(None)) {
                self.chunks.pop();
            }
            return Some(size);
        }
        let end = offset + reserved;
        let j = c.free.partition_point(|&(s, _)| s < offset);
        let joins_prev = j > 0 && c.free[j - 1].1 == offset;
        let joins_next = j < c.free.len() && c.free[j].0 == end;
        match (joins_prev, joins_next) {
            (true, true) => {
                c.free[j - 1].1 = c.free[j].1;
                c.free.remove(j);
            }
            (true, false) => c.free[j - 1].1 = end,
            (false, true) => c.free[j].0 = offset,
            (false, false) => c.free.insert(j, (offset, end)),
        }
        None
    }

    /// Sizes of the live chunks, in index order.
    pub fn chunk_sizes(&self) -> Vec<u64> {
        self.chunks.iter().flatten().map(|c| c.size).collect()
    }

    /// Bytes of all live chunks.
    pub fn bytes(&self) -> u64 {
        self.chunks.iter().flatten().map(|c| c.size).sum()
    }
}

/// One arena chunk on the device, counted in [`MemoryStats`] while it lives.
pub(crate) struct ArenaChunk {
    pub(crate) buffer: wgpu::Buffer,
    size: u64,
    stats: Arc<MemoryStats>,
}

impl Drop for ArenaChunk {
    fn drop(&mut self) {
        // As `GpuBuffer::drop`: safe because a `Batch` holds every sub-allocation it binds
        // (and so the chunk) until it is submitted.
        self.buffer.destroy();
        self.stats.on_free(self.size);
    }
}

/// The runtime arena of one `Gpu`: the layout plus the chunks' device buffers.
pub(crate) struct Arena {
    state: Mutex<ArenaState>,
}

struct ArenaState {
    layout: ArenaLayout,
    chunks: Vec<Option<Arc<ArenaChunk>>>,
}

/// A live sub-allocation (held by its `GpuBuffer`).
pub(crate) struct ArenaSlot {
    pub(crate) arena: Arc<Arena>,
    pub(crate) chunk: Arc<ArenaChunk>,
    pub(crate) index: usize,
    pub(crate) offset: u64,
    pub(crate) reserved: u64,
}

impl Arena {
    pub(crate) fn new(chunk_bytes: u64, max_buffer: u64) -> Arena {
        Arena { state: Mutex::new(ArenaState { layout: ArenaLayout::new(chunk_bytes, max_buffer), chunks: Vec::new() }) }
    }

    /// Sub-allocate `bytes`. `create(size)` makes a new chunk's buffer (counted, or refused:
    /// then nothing is placed). `Ok(None)` when `bytes` exceeds `max_buffer_size`.
    pub(crate) fn alloc<E>(self: &Arc<Self>, bytes: u64, create: impl FnOnce(u64) -> Result<(wgpu::Buffer, Arc<MemoryStats>), E>) -> Result<Option<ArenaSlot>, E> {
        let mut st = match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        let Some(p) = st.layout.place(bytes) else { return Ok(None) };
        let chunk = match p.created {
            Some(size) => match create(size) {
                Ok((buffer, stats)) => {
                    stats.on_buffer(size);
                    let c = Arc::new(ArenaChunk { buffer, size, stats });
                    if st.chunks.len() <= p.chunk {
                        st.chunks.resize_with(p.chunk + 1, || None);
                    }
                    st.chunks[p.chunk] = Some(c.clone());
                    c
                }
                Err(e) => {
                    st.layout.release(p.chunk, p.offset, p.reserved);
                    return Err(e);
                }
            },
            None => match st.chunks.get(p.chunk).and_then(Option::clone) {
                Some(c) => c,
                None => unreachable!("arena layout and chunks out of step"),
            },
        };
        Ok(Some(ArenaSlot { arena: self.clone(), chunk, index: p.chunk, offset: p.offset, reserved: p.reserved }))
    }

    pub(crate) fn free(&self, index: usize, offset: u64, reserved: u64) {
        let mut st = match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if st.layout.release(index, offset, reserved).is_some() {
            // The slot being dropped holds the last other handle: the chunk is destroyed
            // right after this.
            if let Some(c) = st.chunks.get_mut(index) {
                *c = None;
            }
            while matches!(st.chunks.last(), Some(None)) {
                st.chunks.pop();
            }
        }
    }

    /// A copy of the placement state (what the planner continues from).
    pub(crate) fn layout(&self) -> ArenaLayout {
        match self.state.lock() {
            Ok(s) => s.layout.clone(),
            Err(p) => p.into_inner().layout.clone(),
        }
    }

    /// Sizes of the live chunks.
    pub(crate) fn chunk_sizes(&self) -> Vec<u64> {
        self.state.lock().map(|s| s.layout.chunk_sizes()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_coalesces_and_destroys_empty_chunks() {
        let mut l = ArenaLayout::new(4096, 1 << 20);
        let a = l.place(100).unwrap();
        assert_eq!((a.chunk, a.offset, a.reserved, a.created), (0, 0, 256, Some(4096)));
        let b = l.place(1000).unwrap();
        assert_eq!((b.chunk, b.offset, b.reserved, b.created), (0, 256, 1024, None));
        let c = l.place(256).unwrap();
        assert_eq!(c.offset, 1280);
        // Free a and b: one coalesced hole [0, 1280) takes a 1280-byte request.
        assert_eq!(l.release(0, a.offset, a.reserved), None);
        assert_eq!(l.release(0, b.offset, b.reserved), None);
        let d = l.place(1280).unwrap();
        assert_eq!((d.chunk, d.offset), (0, 0));
        // Too big for the rest of chunk 0: a second chunk, exactly its size when above 4096.
        let e = l.place(10_000).unwrap();
        assert_eq!((e.chunk, e.offset, e.created), (1, 0, Some(10_240)));
        assert_eq!(l.chunk_sizes(), vec![4096, 10_240]);
        assert_eq!(l.release(1, e.offset, e.reserved), Some(10_240));
        assert_eq!(l.release(0, c.offset, c.reserved), None);
        assert_eq!(l.release(0, d.offset, d.reserved), Some(4096));
        assert_eq!(l.bytes(), 0);
        assert!(l.place((1 << 20) + 1).is_none());
    }
}
