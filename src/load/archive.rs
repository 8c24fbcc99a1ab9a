//! One view over every weight-file format: a [`TensorArchive`] lists entries (name, file
//! dtype, shape, absolute byte range in its [`ByteSource`]) and reads one tensor at a time,
//! converting it to f32 on the host.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::source::{check_range, read_vec, ByteSource};
use super::{HostTensor, LoadError, LoadResult, WeightSource};

/// Element type as stored in the file (little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileDType {
    F64,
    F32,
    F16,
    BF16,
    /// float8 e4m3fn (no infinities; 0x7f/0xff are NaN).
    F8E4M3,
    /// float8 e5m2 (the top byte of an f16).
    F8E5M2,
    I64,
    I32,
    I16,
    I8,
    U64,
    U32,
    U16,
    U8,
    Bool,
}

impl FileDType {
    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            FileDType::F64 | FileDType::I64 | FileDType::U64 => 8,
            FileDType::F32 | FileDType::I32 | FileDType::U32 => 4,
            FileDType::F16 | FileDType::BF16 | FileDType::I16 | FileDType::U16 => 2,
            FileDType::F8E4M3 | FileDType::F8E5M2 | FileDType::I8 | FileDType::U8 | FileDType::Bool => 1,
        }
    }

    /// The safetensors spelling (`F32`, `BF16`, `F8_E4M3`, …).
    pub fn safetensors_name(self) -> &'static str {
        match self {
            FileDType::F64 => "F64",
            FileDType::F32 => "F32",
            FileDType::F16 => "F16",
            FileDType::BF16 => "BF16",
            FileDType::F8E4M3 => "F8_E4M3",
            FileDType::F8E5M2 => "F8_E5M2",
            FileDType::I64 => "I64",
            FileDType::I32 => "I32",
            FileDType::I16 => "I16",
            FileDType::I8 => "I8",
            FileDType::U64 => "U64",
            FileDType::U32 => "U32",
            FileDType::U16 => "U16",
            FileDType::U8 => "U8",
            FileDType::Bool => "BOOL",
        }
    }

    pub fn from_safetensors_name(s: &str) -> Option<FileDType> {
        Some(match s {
            "F64" => FileDType::F64,
            "F32" => FileDType::F32,
            "F16" => FileDType::F16,
            "BF16" => FileDType::BF16,
            "F8_E4M3" => FileDType::F8E4M3,
            "F8_E5M2" => FileDType::F8E5M2,
            "I64" => FileDType::I64,
            "I32" => FileDType::I32,
            "I16" => FileDType::I16,
            "I8" => FileDType::I8,
            "U64" => FileDType::U64,
            "U32" => FileDType::U32,
            "U16" => FileDType::U16,
            "U8" => FileDType::U8,
            "BOOL" => FileDType::Bool,
            _ => return None,
        })
    }

    pub fn is_float(self) -> bool {
        matches!(self, FileDType::F64 | FileDType::F32 | FileDType::F16 | FileDType::BF16 | FileDType::F8E4M3 | FileDType::F8E5M2)
    }
}

impl std::fmt::Display for FileDType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.safetensors_name())
    }
}

/// Convert little-endian elements of `dtype` to f32. `bytes.len()` must be a multiple of the
/// element size (the caller checked numel × size).
pub fn convert_to_f32(dtype: FileDType, bytes: &[u8]) -> Vec<f32> {
    fn chunks<const N: usize>(b: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        b.chunks_exact(N).map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            a
        })
    }
    match dtype {
        FileDType::F32 => chunks::<4>(bytes).map(f32::from_le_bytes).collect(),
        FileDType::F16 => chunks::<2>(bytes).map(|a| half::f16::from_le_bytes(a).to_f32()).collect(),
        FileDType::BF16 => chunks::<2>(bytes).map(|a| half::bf16::from_le_bytes(a).to_f32()).collect(),
        FileDType::F64 => chunks::<8>(bytes).map(|a| f64::from_le_bytes(a) as f32).collect(),
        FileDType::F8E5M2 => bytes.iter().map(|&b| half::f16::from_bits(u16::from(b) << 8).to_f32()).collect(),
        FileDType::F8E4M3 => bytes.iter().map(|&b| f8e4m3_to_f32(b)).collect(),
        FileDType::I64 => chunks::<8>(bytes).map(|a| i64::from_le_bytes(a) as f32).collect(),
        FileDType::I32 => chunks::<4>(bytes).map(|a| i32::from_le_bytes(a) as f32).collect(),
        FileDType::I16 => chunks::<2>(bytes).map(|a| f32::from(i16::from_le_bytes(a))).collect(),
        FileDType::I8 => bytes.iter().map(|&b| f32::from(b as i8)).collect(),
        FileDType::U64 => chunks::<8>(bytes).map(|a| u64::from_le_bytes(a) as f32).collect(),
        FileDType::U32 => chunks::<4>(bytes).map(|a| u32::from_le_bytes(a) as f32).collect(),
        FileDType::U16 => chunks::<2>(bytes).map(|a| f32::from(u16::from_le_bytes(a))).collect(),
        FileDType::U8 => bytes.iter().map(|&b| f32::from(b)).collect(),
        FileDType::Bool => bytes.iter().map(|&b| if b != 0 { 1.0 } else { 0.0 }).collect(),
    }
}

fn f8e4m3_to_f32(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0f32 } else { 1.0 };
    let exp = i32::from((b >> 3) & 0x0f);
    let man = f32::from(b & 0x07);
    if exp == 0x0f && b & 0x07 == 0x07 {
        return f32::NAN;
    }
    if exp == 0 {
        sign * man / 8.0 * 2f32.powi(-6)
    } else {
        sign * (1.0 + man / 8.0) * 2f32.powi(exp - 7)
    }
}

/// One tensor in an archive.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorEntry {
    /// The name in the file (`model.diffusion_model.input_blocks.0.0.weight`).
    pub name: String,
    pub dtype: FileDType,
    pub shape: Vec<usize>,
    /// Absolute byte offset in the source.
    pub offset: u64,
    /// Byte length (= numel × dtype size, checked when the archive was opened).
    pub len: u64,
}

impl TensorEntry {
    pub fn numel(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }
}

/// Shape product × element size as u64, `None` on overflow. The product of the non-zero
/// dimensions must fit too: code downstream multiplies dimensions in any order (row sizes,
/// `[1..]` products), so an empty `[2^32, 2^32, 0]` would overflow there.
pub(crate) fn byte_len(shape: &[u64], dtype: FileDType) -> Option<u64> {
    let nonzero = shape.iter().filter(|&&d| d != 0).try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))?;
    Some(if shape.contains(&0) { 0 } else { nonzero })
}

/// The container a [`TensorArchive`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    Safetensors,
    /// PyTorch `torch.save` zip (`.ckpt`, `.pt`, `.pth`, `.bin`).
    TorchZip,
}

impl std::fmt::Display for ArchiveFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ArchiveFormat::Safetensors => "safetensors",
            ArchiveFormat::TorchZip => "PyTorch zip (torch.save)",
        })
    }
}

/// A weight file: its tensors (in file order) and how to read them.
pub struct TensorArchive {
    source: Arc<dyn ByteSource>,
    format: ArchiveFormat,
    entries: Vec<TensorEntry>,
    index: HashMap<String, usize>,
    metadata: BTreeMap<String, String>,
}

impl std::fmt::Debug for TensorArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorArchive")
            .field("source", &self.source.name())
            .field("format", &self.format)
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl TensorArchive {
    /// Build from already validated entries (the format readers call this). Entries must lie
    /// inside the source; duplicates are an error.
    pub fn new(
        source: Arc<dyn ByteSource>,
        format: ArchiveFormat,
        entries: Vec<TensorEntry>,
        metadata: BTreeMap<String, String>,
    ) -> LoadResult<TensorArchive> {
        let name = source.name();
        let fmt: &'static str = match format {
            ArchiveFormat::Safetensors => "safetensors",
            ArchiveFormat::TorchZip => "PyTorch zip",
        };
        let mut index = HashMap::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            check_range(&name, fmt, source.len(), e.offset, e.len)?;
            if index.insert(e.name.clone(), i).is_some() {
                return Err(LoadError::Corrupt { file: name, format: fmt, message: format!("tensor `{}` appears twice", e.name) });
            }
        }
        Ok(TensorArchive { source, format, entries, index, metadata })
    }

    /// Open a safetensors or PyTorch zip file, told apart by their first bytes.
    pub fn open(source: Arc<dyn ByteSource>) -> LoadResult<TensorArchive> {
        let mut head = [0u8; 9];
        let n = source.len().min(9) as usize;
        source.read_at(0, &mut head[..n])?;
        if n >= 4 && (head[..4] == *b"PK\x03\x04" || head[..4] == *b"PK\x05\x06") {
            return super::ckpt::read_torch_zip(source);
        }
        if n == 9 && head[8] == b'{' {
            return super::safetensors::read_safetensors(source);
        }
        if n >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1]) {
            return Err(LoadError::Unsupported {
                file: source.name(),
                message: "legacy (pre-1.6, non-zip) PyTorch pickle file; re-save it with a current torch.save or convert it to safetensors".into(),
            });
        }
        if n < 9 {
            return Err(LoadError::Corrupt { file: source.name(), format: "weights", message: format!("file is only {} bytes", source.len()) });
        }
        // Most likely a safetensors file with a broken header: let its reader say what's wrong.
        super::safetensors::read_safetensors(source)
    }

    /// Open a file from disk (positioned reads; nothing but the header is read now).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open_path(path: impl AsRef<std::path::Path>) -> LoadResult<TensorArchive> {
        TensorArchive::open(Arc::new(super::source::FileSource::open(path)?))
    }

    pub fn source(&self) -> &Arc<dyn ByteSource> {
        &self.source
    }

    /// The file name used in error messages.
    pub fn origin(&self) -> String {
        self.source.name()
    }

    pub fn format(&self) -> ArchiveFormat {
        self.format
    }

    /// safetensors `__metadata__` (empty for other formats).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Entries in file order.
    pub fn entries(&self) -> &[TensorEntry] {
        &self.entries
    }

    pub fn entry(&self, name: &str) -> Option<&TensorEntry> {
        self.index.get(name).and_then(|&i| self.entries.get(i))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Names in file order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// How many tensors of each file dtype.
    pub fn dtype_counts(&self) -> BTreeMap<FileDType, usize> {
        let mut m = BTreeMap::new();
        for e in &self.entries {
            *m.entry(e.dtype).or_insert(0) += 1;
        }
        m
    }

    /// Total tensor bytes.
    pub fn total_bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.len).sum()
    }

    fn get(&self, name: &str) -> LoadResult<&TensorEntry> {
        self.entry(name).ok_or_else(|| LoadError::MissingTensor { file: self.origin(), tensor: name.to_string() })
    }

    /// The tensor's bytes exactly as stored (little-endian, file dtype).
    pub fn read_raw(&self, name: &str) -> LoadResult<Vec<u8>> {
        let e = self.get(name)?;
        read_vec(self.source.as_ref(), e.offset, e.len, "weights")
    }

    /// The tensor converted to f32 (from any float or integer dtype).
    pub fn read_f32(&self, name: &str) -> LoadResult<HostTensor> {
        let e = self.get(name)?;
        let bytes = read_vec(self.source.as_ref(), e.offset, e.len, "weights")?;
        let numel = usize::try_from(e.numel()).ok();
        let data = convert_to_f32(e.dtype, &bytes);
        if numel != Some(data.len()) {
            return Err(LoadError::Corrupt {
                file: self.origin(),
                format: "weights",
                message: format!("tensor `{name}`: {} bytes do not hold {:?} × {}", e.len, e.shape, e.dtype),
            });
        }
        Ok(HostTensor::new(e.shape.clone(), data))
    }
}

/// File names as tensor names (no key mapping).
impl WeightSource for TensorArchive {
    fn tensor(&self, name: &str) -> LoadResult<HostTensor> {
        self.read_f32(name)
    }

    fn contains(&self, name: &str) -> bool {
        TensorArchive::contains(self, name)
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.entry(name).map(|e| e.shape.clone())
    }

    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.entries.iter().map(|e| e.name.clone()).collect();
        v.sort();
        v
    }

    fn origin(&self) -> String {
        TensorArchive::origin(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        let f16s: Vec<u8> = [1.5f32, -2.0, 65504.0].iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect();
        assert_eq!(convert_to_f32(FileDType::F16, &f16s), vec![1.5, -2.0, 65504.0]);
        let bf: Vec<u8> = [1.5f32, -3.0e38].iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect();
        let out = convert_to_f32(FileDType::BF16, &bf);
        assert_eq!(out[0], 1.5);
        assert_eq!(out[1], half::bf16::from_f32(-3.0e38).to_f32());
        assert_eq!(convert_to_f32(FileDType::F64, &0.25f64.to_le_bytes()), vec![0.25]);
        assert_eq!(convert_to_f32(FileDType::I64, &(-7i64).to_le_bytes()), vec![-7.0]);
        assert_eq!(convert_to_f32(FileDType::I32, &(77i32).to_le_bytes()), vec![77.0]);
        assert_eq!(convert_to_f32(FileDType::U8, &[255]), vec![255.0]);
        assert_eq!(convert_to_f32(FileDType::I8, &[255]), vec![-1.0]);
        assert_eq!(convert_to_f32(FileDType::Bool, &[0, 3]), vec![0.0, 1.0]);
        // e4m3fn: 0x38 = 1.0, 0x7e = 448 (max), 0x01 = 2^-9, 0xb8 = -1.0.
        assert_eq!(convert_to_f32(FileDType::F8E4M3, &[0x38, 0x7e, 0x01, 0xb8]), vec![1.0, 448.0, 2f32.powi(-9), -1.0]);
        assert!(convert_to_f32(FileDType::F8E4M3, &[0x7f])[0].is_nan());
        // e5m2: 0x3c = 1.0.
        assert_eq!(convert_to_f32(FileDType::F8E5M2, &[0x3c]), vec![1.0]);
    }

    #[test]
    fn dtype_names_round_trip() {
        for d in [
            FileDType::F64,
            FileDType::F32,
            FileDType::F16,
            FileDType::BF16,
            FileDType::F8E4M3,
            FileDType::F8E5M2,
            FileDType::I64,
            FileDType::I32,
            FileDType::I16,
            FileDType::I8,
            FileDType::U64,
            FileDType::U32,
            FileDType::U16,
            FileDType::U8,
            FileDType::Bool,
        ] {
            assert_eq!(FileDType::from_safetensors_name(d.safetensors_name()), Some(d));
        }
        assert_eq!(FileDType::from_safetensors_name("F4"), None);
    }

    #[test]
    fn byte_len_overflow() {
        assert_eq!(byte_len(&[2, 3], FileDType::F16), Some(12));
        assert_eq!(byte_len(&[], FileDType::F32), Some(4));
        assert_eq!(byte_len(&[u64::MAX, 2], FileDType::U8), None);
        // Empty, but its other dimensions multiply past u64 (a `[1..]` product would overflow).
        assert_eq!(byte_len(&[0, 1 << 40, 1 << 40], FileDType::F32), None);
        assert_eq!(byte_len(&[0, 1 << 20, 1 << 20], FileDType::F32), Some(0));
    }
}
