//! Buffers and tensors.
//!
//! A [`Tensor`] is a view (`offset`, `shape`, `dtype`) into a reference-counted
//! [`GpuBuffer`]; several tensors can share one arena buffer (the memory planner places them).
//! Offsets of tensors that are bound to shaders must be multiples of
//! `min_storage_buffer_offset_alignment` (256 on WebGPU).

use std::fmt;
use std::sync::Arc;

use super::arena::ArenaSlot;
use super::memory::MemoryStats;

/// Alignment of tensor offsets inside shared buffers (WebGPU's binding offset alignment).
pub const TENSOR_ALIGN: u64 = 256;

/// Element / storage types.
///
/// `Q8` and `Q4` describe *packed weight values* only (int8 = 4 per `u32`, int4 = 8 per
/// `u32`, grouped along the reduction dimension); their scales are a separate `F16`/`F32`
/// tensor of shape `[rows, K / group]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    U32,
    Q8 { group: u32 },
    Q4 { group: u32 },
}

impl DType {
    /// Bytes used to store `numel` elements (packed types round up to whole `u32` words).
    pub fn storage_bytes(self, numel: u64) -> u64 {
        match self {
            DType::F32 | DType::U32 => numel * 4,
            // f16 tensors are bound as array<u32> (packed pairs) when shader-f16 is absent.
            DType::F16 => numel.div_ceil(2) * 4,
            DType::Q8 { .. } => numel.div_ceil(4) * 4,
            DType::Q4 { .. } => numel.div_ceil(8) * 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::U32 => "u32",
            DType::Q8 { .. } => "q8",
            DType::Q4 { .. } => "q4",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DType::Q8 { group } | DType::Q4 { group } => write!(f, "{}(group {group})", self.name()),
            _ => f.write_str(self.name()),
        }
    }
}

/// A tensor shape (row-major, last dimension contiguous).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shape(Vec<usize>);

impl Shape {
    pub fn new(dims: impl Into<Vec<usize>>) -> Shape {
        Shape(dims.into())
    }

    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// Number of elements (1 for a scalar).
    pub fn numel(&self) -> u64 {
        self.0.iter().map(|&d| d as u64).product()
    }

    /// Dimension `i`, counting from the end when negative (`-1` = last).
    pub fn dim(&self, i: isize) -> Option<usize> {
        let idx = if i < 0 { self.0.len().checked_sub(i.unsigned_abs())? } else { i as usize };
        self.0.get(idx).copied()
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(d: [usize; N]) -> Shape {
        Shape(d.to_vec())
    }
}

impl From<&[usize]> for Shape {
    fn from(d: &[usize]) -> Shape {
        Shape(d.to_vec())
    }
}

impl From<Vec<usize>> for Shape {
    fn from(d: Vec<usize>) -> Shape {
        Shape(d)
    }
}

/// A device allocation: a buffer of its own, counted in the owning context's
/// [`MemoryStats`] while it lives, or a 256-byte aligned range of an arena chunk
/// (`super::arena`), returned to the arena when dropped.
pub struct GpuBuffer {
    buffer: wgpu::Buffer,
    /// Offset of this allocation in `buffer` (0 unless sub-allocated).
    base: u64,
    size: u64,
    label: String,
    owner: Owner,
    /// Kernels of this device declare every storage binding `read_write` (arena on): tensors
    /// of one buffer may then be bound together when their ranges do not overlap.
    rw_bindings: bool,
}

enum Owner {
    Dedicated(Arc<MemoryStats>),
    Arena(ArenaSlot),
}

impl GpuBuffer {
    pub(crate) fn new(buffer: wgpu::Buffer, size: u64, label: String, stats: Arc<MemoryStats>, rw_bindings: bool) -> Self {
        stats.on_alloc(size);
        GpuBuffer { buffer, base: 0, size, label, owner: Owner::Dedicated(stats), rw_bindings }
    }

    pub(crate) fn sub(slot: ArenaSlot, size: u64, label: String) -> Self {
        GpuBuffer { buffer: slot.chunk.buffer.clone(), base: slot.offset, size, label, owner: Owner::Arena(slot), rw_bindings: true }
    }

    /// The device buffer (shared by every allocation of an arena chunk).
    pub fn raw(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// Offset of this allocation in [`GpuBuffer::raw`].
    pub fn base(&self) -> u64 {
        self.base
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// `(arena chunk index, offset)` when this allocation is sub-allocated from the arena.
    pub fn arena_placement(&self) -> Option<(usize, u64)> {
        match &self.owner {
            Owner::Arena(s) => Some((s.index, s.offset)),
            Owner::Dedicated(_) => None,
        }
    }

    /// Identifies the device buffer: allocations of one arena chunk share it.
    pub(crate) fn raw_key(&self) -> usize {
        match &self.owner {
            Owner::Arena(s) => Arc::as_ptr(&s.chunk) as usize,
            Owner::Dedicated(_) => self as *const GpuBuffer as usize,
        }
    }

    pub(crate) fn rw_bindings(&self) -> bool {
        self.rw_bindings
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        match &self.owner {
            // `destroy()` rather than only dropping the handle: browsers free a GPUBuffer's
            // memory when the JS object is garbage-collected (wgpu's WebGPU backend does
            // nothing on drop), which may be long after thousands of newer buffers were
            // created — the memory plan would then not be what the device holds. Destroying
            // here is safe: a `Batch` holds every buffer it records until it is submitted (so
            // the last handle drops only after submission; readback copies are submitted
            // while their tensors are borrowed), and WebGPU and wgpu free a destroyed buffer
            // only once the submitted work using it has completed.
            Owner::Dedicated(stats) => {
                self.buffer.destroy();
                stats.on_free(self.size);
            }
            // The range goes back to the arena (reusing it in later dispatches is safe: WebGPU
            // orders dispatches and their memory effects, and a `Batch` holds this allocation
            // until it submits the commands that bind it). The chunk is destroyed once its
            // last allocation is gone (`ArenaChunk::drop`, right after this).
            Owner::Arena(s) => s.arena.free(s.index, s.offset, s.reserved),
        }
    }
}

impl fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.owner {
            Owner::Arena(s) => write!(f, "GpuBuffer({:?}, {} bytes at arena chunk {} + {})", self.label, self.size, s.index, s.offset),
            Owner::Dedicated(_) => write!(f, "GpuBuffer({:?}, {} bytes)", self.label, self.size),
        }
    }
}

/// A typed, shaped view into a [`GpuBuffer`].
#[derive(Clone)]
pub struct Tensor {
    buffer: Arc<GpuBuffer>,
    offset: u64,
    shape: Shape,
    dtype: DType,
}

impl Tensor {
    /// View `shape`/`dtype` at `offset` in `buffer`. `None` if it does not fit or the offset
    /// is not [`TENSOR_ALIGN`]-aligned.
    pub fn view(buffer: Arc<GpuBuffer>, offset: u64, shape: impl Into<Shape>, dtype: DType) -> Option<Tensor> {
        let shape = shape.into();
        let bytes = dtype.storage_bytes(shape.numel());
        let end = offset.checked_add(bytes)?;
        if !offset.is_multiple_of(TENSOR_ALIGN) || end > buffer.size() {
            return None;
        }
        Some(Tensor { buffer, offset, shape, dtype })
    }

    pub fn buffer(&self) -> &Arc<GpuBuffer> {
        &self.buffer
    }

    /// Byte offset in [`Tensor::buffer`] (the allocation).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Byte offset in the device buffer ([`GpuBuffer::raw`]): copies and bindings use it.
    pub fn device_offset(&self) -> u64 {
        self.buffer.base + self.offset
    }

    /// Bytes a binding of this tensor covers in the device buffer.
    pub(crate) fn device_range(&self) -> (u64, u64) {
        let start = self.device_offset();
        (start, start + self.size_bytes().max(4))
    }

    /// Whether `self` and `other` cover overlapping bytes of one device buffer.
    pub fn overlaps(&self, other: &Tensor) -> bool {
        if self.buffer.raw_key() != other.buffer.raw_key() {
            return false;
        }
        let (a, b) = (self.device_range(), other.device_range());
        a.0 < b.1 && b.0 < a.1
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn numel(&self) -> u64 {
        self.shape.numel()
    }

    /// Bytes this tensor occupies in its buffer.
    pub fn size_bytes(&self) -> u64 {
        self.dtype.storage_bytes(self.numel())
    }

    /// The tensor as a shader binding (offset + size inside its buffer).
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buffer.raw(),
            offset: self.device_offset(),
            size: wgpu::BufferSize::new(self.size_bytes().max(4)),
        })
    }

    /// Bytes per element for sliceable (unpacked) types.
    fn element_bytes(&self) -> Option<u64> {
        match self.dtype {
            DType::F32 | DType::U32 => Some(4),
            DType::F16 => Some(2),
            DType::Q8 { .. } | DType::Q4 { .. } => None,
        }
    }

    /// Rows `[start, start + count)` of this tensor seen as `units` equal rows. The result
    /// keeps the inner dimensions when `units` equals the leading dimension, otherwise it is
    /// `[count, numel / units]`. `None` when the rows do not divide the tensor, the range is
    /// out of bounds, or the slice would start at an offset that is not [`TENSOR_ALIGN`]ed.
    pub fn slice_units(&self, start: u64, count: u64, units: u64) -> Option<Tensor> {
        let per = (units > 0 && self.numel().is_multiple_of(units)).then(|| self.numel() / units)?;
        if start.checked_add(count)? > units {
            return None;
        }
        let offset = self.offset + start * per * self.element_bytes()?;
        let dims = self.shape.dims();
        let shape = if dims.first().map(|&d| d as u64) == Some(units) {
            let mut d = dims.to_vec();
            d[0] = count as usize;
            Shape::new(d)
        } else {
            Shape::new(vec![count as usize, per as usize])
        };
        Tensor::view(self.buffer.clone(), offset, shape, self.dtype)
    }

    /// Same storage, new shape with the same number of elements.
    pub fn reshape(&self, shape: impl Into<Shape>) -> Option<Tensor> {
        let shape = shape.into();
        (shape.numel() == self.numel()).then(|| Tensor { shape, ..self.clone() })
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor({} {} @ {:?}+{})", self.dtype, self.shape, self.buffer.label(), self.offset)?;
        match self.buffer.arena_placement() {
            Some((chunk, at)) => write!(f, " [arena chunk {chunk} + {at}]"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_bytes_pack() {
        assert_eq!(DType::F32.storage_bytes(3), 12);
        assert_eq!(DType::F16.storage_bytes(3), 8);
        assert_eq!(DType::Q8 { group: 32 }.storage_bytes(5), 8);
        assert_eq!(DType::Q4 { group: 32 }.storage_bytes(9), 8);
    }

    #[test]
    fn shape_helpers() {
        let s = Shape::from([2, 3, 4]);
        assert_eq!(s.numel(), 24);
        assert_eq!(s.dim(-1), Some(4));
        assert_eq!(s.dim(-4), None);
        assert_eq!(s.to_string(), "[2, 3, 4]");
    }
}
