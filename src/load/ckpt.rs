//! PyTorch `torch.save` files (`.ckpt`, `.pt`, `.pth`, diffusers/transformers `.bin`): a zip
//! archive holding `<prefix>/data.pkl` (the pickled object) and one `<prefix>/data/<key>` entry
//! per storage. Read with:
//!
//! * a minimal zip central-directory reader (stored entries only, zip64 for > 4 GB files);
//! * a minimal, **safe** unpickler: it understands the opcodes `torch.save` emits and builds
//!   plain values; `GLOBAL`s resolve only against an allow-list (`collections.OrderedDict`,
//!   `torch._utils._rebuild_tensor_v2`/`_rebuild_parameter`, `torch.*Storage`, `torch.Size`),
//!   and calling anything else is an error. No code from the file is ever executed.
//!
//! Tensors become [`TensorEntry`]s pointing straight into the stored storage entries, so
//! nothing but the pickle is read up front.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;

use super::archive::{byte_len, ArchiveFormat, FileDType, TensorArchive, TensorEntry};
use super::source::{read_vec, ByteSource};
use super::{LoadError, LoadResult};

/// `data.pkl` larger than this is refused (a state dict's pickle is ~100 bytes per tensor).
pub const MAX_PICKLE_BYTES: u64 = 100 << 20;
/// Central directories larger than this are refused.
pub const MAX_CENTRAL_DIRECTORY_BYTES: u64 = 256 << 20;

const ZIP: &str = "zip";
const PICKLE: &str = "pickle";

// ---------------------------------------------------------------------------------------------
// Zip

/// One entry of a zip central directory.
#[derive(Debug, Clone, PartialEq)]
pub struct ZipEntry {
    pub name: String,
    /// 0 = stored, 8 = deflate, …
    pub method: u16,
    pub flags: u16,
    pub compressed_size: u64,
    pub size: u64,
    pub local_header_offset: u64,
}

/// Bounds-checked little-endian reads from a byte slice.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Cursor<'a> {
        Cursor { buf, pos: 0 }
    }
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn arr<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.arr::<1>()?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.arr().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.arr().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.arr().map(u64::from_le_bytes)
    }
    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }
}

fn zip_err(file: &str, message: impl Into<String>) -> LoadError {
    LoadError::Corrupt { file: file.to_string(), format: ZIP, message: message.into() }
}

/// Read the central directory of a zip file (zip64 aware).
pub fn read_zip_directory(src: &dyn ByteSource) -> LoadResult<Vec<ZipEntry>> {
    let file = src.name();
    let total = src.len();
    if total < 22 {
        return Err(zip_err(&file, format!("file is only {total} bytes (no end-of-central-directory record)")));
    }
    // The EOCD record is the last 22 bytes plus an up-to-64 KiB comment.
    let tail_len = total.min(22 + 0xffff);
    let tail = read_vec(src, total - tail_len, tail_len, ZIP)?;
    let pos = (0..=tail.len() - 22)
        .rev()
        .find(|&i| tail.get(i..i + 4) == Some(b"PK\x05\x06"))
        .ok_or_else(|| zip_err(&file, "no end-of-central-directory record (truncated file?)"))?;
    let eocd_abs = total - tail_len + pos as u64;
    let mut c = Cursor::new(tail.get(pos + 4..).unwrap_or_default());
    let bad = || zip_err(&file, "truncated end-of-central-directory record");
    let _disk = c.u16().ok_or_else(bad)?;
    let _cd_disk = c.u16().ok_or_else(bad)?;
    let _n_disk = c.u16().ok_or_else(bad)?;
    let mut n_entries = u64::from(c.u16().ok_or_else(bad)?);
    let mut cd_size = u64::from(c.u32().ok_or_else(bad)?);
    let mut cd_offset = u64::from(c.u32().ok_or_else(bad)?);
    if n_entries == 0xffff || cd_size == 0xffff_ffff || cd_offset == 0xffff_ffff {
        // zip64: a locator sits right before the EOCD and points at the zip64 EOCD record.
        let loc_off = eocd_abs.checked_sub(20).ok_or_else(|| zip_err(&file, "zip64 locator missing"))?;
        let loc = read_vec(src, loc_off, 20, ZIP)?;
        let mut c = Cursor::new(&loc);
        if c.bytes(4) != Some(b"PK\x06\x07") {
            return Err(zip_err(&file, "zip64 end-of-central-directory locator missing"));
        }
        let _disk = c.u32();
        let rec_off = c.u64().ok_or_else(|| zip_err(&file, "truncated zip64 locator"))?;
        let rec = read_vec(src, rec_off, 56, ZIP)?;
        let mut c = Cursor::new(&rec);
        if c.bytes(4) != Some(b"PK\x06\x06") {
            return Err(zip_err(&file, "zip64 end-of-central-directory record missing"));
        }
        let bad64 = || zip_err(&file, "truncated zip64 end-of-central-directory record");
        c.bytes(20).ok_or_else(bad64)?; // size, versions, disk numbers
        let _n_disk = c.u64().ok_or_else(bad64)?;
        n_entries = c.u64().ok_or_else(bad64)?;
        cd_size = c.u64().ok_or_else(bad64)?;
        cd_offset = c.u64().ok_or_else(bad64)?;
    }
    if cd_size > MAX_CENTRAL_DIRECTORY_BYTES {
        return Err(zip_err(&file, format!("central directory of {cd_size} bytes exceeds the limit")));
    }
    if n_entries > cd_size / 46 + 1 {
        return Err(zip_err(&file, format!("{n_entries} entries cannot fit a {cd_size}-byte central directory")));
    }
    let cd = read_vec(src, cd_offset, cd_size, ZIP)?;
    let mut c = Cursor::new(&cd);
    let mut entries = Vec::with_capacity(n_entries.min(1 << 16) as usize);
    for i in 0..n_entries {
        let bad = || zip_err(&file, format!("central directory entry {i} is truncated"));
        if c.bytes(4) != Some(b"PK\x01\x02") {
            return Err(zip_err(&file, format!("central directory entry {i} has a bad signature")));
        }
        let _made_by = c.u16().ok_or_else(bad)?;
        let _needed = c.u16().ok_or_else(bad)?;
        let flags = c.u16().ok_or_else(bad)?;
        let method = c.u16().ok_or_else(bad)?;
        let _time = c.u32().ok_or_else(bad)?;
        let _crc = c.u32().ok_or_else(bad)?;
        let mut compressed_size = u64::from(c.u32().ok_or_else(bad)?);
        let mut size = u64::from(c.u32().ok_or_else(bad)?);
        let name_len = c.u16().ok_or_else(bad)? as usize;
        let extra_len = c.u16().ok_or_else(bad)? as usize;
        let comment_len = c.u16().ok_or_else(bad)? as usize;
        let _disk = c.u16().ok_or_else(bad)?;
        let _iattr = c.u16().ok_or_else(bad)?;
        let _eattr = c.u32().ok_or_else(bad)?;
        let mut local_header_offset = u64::from(c.u32().ok_or_else(bad)?);
        let name = String::from_utf8_lossy(c.bytes(name_len).ok_or_else(bad)?).into_owned();
        let extra = c.bytes(extra_len).ok_or_else(bad)?;
        c.bytes(comment_len).ok_or_else(bad)?;
        // zip64 extended information: the u64 versions of the fields saturated above, in order.
        let mut e = Cursor::new(extra);
        while !e.at_end() {
            let (Some(id), Some(len)) = (e.u16(), e.u16()) else { break };
            let Some(data) = e.bytes(len as usize) else { break };
            if id == 0x0001 {
                let mut z = Cursor::new(data);
                let bad = || zip_err(&file, format!("entry `{name}`: truncated zip64 extra field"));
                if size == 0xffff_ffff {
                    size = z.u64().ok_or_else(bad)?;
                }
                if compressed_size == 0xffff_ffff {
                    compressed_size = z.u64().ok_or_else(bad)?;
                }
                if local_header_offset == 0xffff_ffff {
                    local_header_offset = z.u64().ok_or_else(bad)?;
                }
            }
        }
        entries.push(ZipEntry { name, method, flags, compressed_size, size, local_header_offset });
    }
    Ok(entries)
}

/// Absolute offset of an entry's data (after its local header), checked to lie in the file.
pub fn zip_entry_data_offset(src: &dyn ByteSource, e: &ZipEntry) -> LoadResult<u64> {
    let file = src.name();
    let h = read_vec(src, e.local_header_offset, 30, ZIP)?;
    let mut c = Cursor::new(&h);
    if c.bytes(4) != Some(b"PK\x03\x04") {
        return Err(zip_err(&file, format!("entry `{}`: bad local header signature", e.name)));
    }
    c.bytes(22);
    let bad = || zip_err(&file, format!("entry `{}`: truncated local header", e.name));
    let n = u64::from(c.u16().ok_or_else(bad)?);
    let x = u64::from(c.u16().ok_or_else(bad)?);
    let off = e.local_header_offset + 30 + n + x;
    match off.checked_add(e.compressed_size) {
        Some(end) if end <= src.len() => Ok(off),
        _ => Err(zip_err(&file, format!("entry `{}` runs past the end of the file (truncated?)", e.name))),
    }
}

fn require_stored(file: &str, e: &ZipEntry) -> LoadResult<()> {
    if e.flags & 1 != 0 {
        return Err(LoadError::Unsupported { file: file.to_string(), message: format!("zip entry `{}` is encrypted", e.name) });
    }
    if e.method != 0 {
        let how = if e.method == 8 { "deflate-compressed".to_string() } else { format!("compressed (method {})", e.method) };
        return Err(LoadError::Unsupported {
            file: file.to_string(),
            message: format!(
                "zip entry `{}` is {how}; torch.save writes uncompressed entries — re-save the file with torch.save or convert it to safetensors",
                e.name
            ),
        });
    }
    if e.compressed_size != e.size {
        return Err(zip_err(file, format!("stored entry `{}` has compressed size {} != size {}", e.name, e.compressed_size, e.size)));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Pickle

/// Callables (and classes) the unpickler knows. Nothing outside this list can be named.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Callable {
    OrderedDict,
    RebuildTensorV2,
    RebuildTensor,
    RebuildParameter,
    RebuildParameterWithState,
    Size,
    Storage(FileDType),
}

fn resolve_global(module: &str, name: &str) -> Option<Callable> {
    Some(match (module, name) {
        ("collections", "OrderedDict") => Callable::OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2") => Callable::RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor") => Callable::RebuildTensor,
        ("torch._utils", "_rebuild_parameter") => Callable::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Callable::RebuildParameterWithState,
        ("torch", "Size") => Callable::Size,
        ("torch", s) => Callable::Storage(match s {
            "FloatStorage" => FileDType::F32,
            "HalfStorage" => FileDType::F16,
            "BFloat16Storage" => FileDType::BF16,
            "DoubleStorage" => FileDType::F64,
            "LongStorage" => FileDType::I64,
            "IntStorage" => FileDType::I32,
            "ShortStorage" => FileDType::I16,
            "CharStorage" => FileDType::I8,
            "ByteStorage" => FileDType::U8,
            "BoolStorage" => FileDType::Bool,
            _ => return None,
        }),
        _ => return None,
    })
}

#[derive(Debug)]
struct StorageRef {
    key: String,
    dtype: FileDType,
    numel: u64,
}

#[derive(Debug)]
struct TensorRef {
    storage: Rc<StorageRef>,
    offset: u64,
    shape: Vec<u64>,
}

type List = Rc<RefCell<Vec<Val>>>;
type Dict = Rc<RefCell<Vec<(Val, Val)>>>;

// Scalars are kept as values (not just their kinds) so `Debug` output of a bad pickle is useful.
#[allow(dead_code)]
#[derive(Debug, Clone)]
enum Val {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<[Val]>),
    List(List),
    Dict(Dict),
    Global(Callable),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

impl Val {
    fn kind(&self) -> &'static str {
        match self {
            Val::None => "None",
            Val::Bool(_) => "bool",
            Val::Int(_) => "int",
            Val::Float(_) => "float",
            Val::Str(_) => "str",
            Val::Bytes(_) => "bytes",
            Val::Tuple(_) => "tuple",
            Val::List(_) => "list",
            Val::Dict(_) => "dict",
            Val::Global(_) => "global",
            Val::Storage(_) => "storage",
            Val::Tensor(_) => "tensor",
        }
    }
}

struct Unpickler<'a> {
    file: &'a str,
    c: Cursor<'a>,
    stack: Vec<Val>,
    marks: Vec<usize>,
    memo: HashMap<u32, Val>,
    storages: HashMap<String, Rc<StorageRef>>,
    /// A reference to every container built, so that none is freed before the unpickler is
    /// dropped: a value popped mid-run (POP, POP_MARK, a replaced memo entry) is then only a
    /// count decrement — never a recursive drop of a million-deep nesting — and [`dismantle`]
    /// at the end empties every list and dict, which also breaks the cycles APPEND/SETITEM
    /// can build (a list inside itself), so nothing leaks.
    arena: Vec<Val>,
}

impl<'a> Unpickler<'a> {
    fn err(&self, msg: impl std::fmt::Display) -> LoadError {
        LoadError::Corrupt { file: self.file.to_string(), format: PICKLE, message: format!("{msg} (at byte {})", self.c.pos) }
    }
    fn unsupported(&self, msg: impl std::fmt::Display) -> LoadError {
        LoadError::Unsupported { file: self.file.to_string(), message: format!("pickle: {msg}") }
    }
    fn pop(&mut self) -> LoadResult<Val> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }
    fn top(&mut self) -> LoadResult<&mut Val> {
        let e = self.err("stack underflow");
        self.stack.last_mut().ok_or(e)
    }
    fn pop_mark(&mut self) -> LoadResult<Vec<Val>> {
        let m = self.marks.pop().ok_or_else(|| self.err("MARK missing"))?;
        if m > self.stack.len() {
            return Err(self.err("MARK beyond the stack"));
        }
        Ok(self.stack.split_off(m))
    }
    /// Push `v` on the stack, keeping a reference in the arena.
    fn push_tracked(&mut self, v: Val) {
        if matches!(v, Val::List(_) | Val::Dict(_) | Val::Tuple(_)) {
            self.arena.push(v.clone());
        }
        self.stack.push(v);
    }
    fn need<T>(&self, v: Option<T>) -> LoadResult<T> {
        v.ok_or_else(|| self.err("truncated"))
    }
    fn u8(&mut self) -> LoadResult<u8> {
        let v = self.c.u8();
        self.need(v)
    }
    fn u16(&mut self) -> LoadResult<u16> {
        let v = self.c.u16();
        self.need(v)
    }
    fn u32(&mut self) -> LoadResult<u32> {
        let v = self.c.u32();
        self.need(v)
    }
    fn u64(&mut self) -> LoadResult<u64> {
        let v = self.c.u64();
        self.need(v)
    }
    fn bytes(&mut self, n: u64) -> LoadResult<&'a [u8]> {
        let v = usize::try_from(n).ok().and_then(|n| self.c.bytes(n));
        self.need(v)
    }
    fn string(&mut self, n: u64) -> LoadResult<Val> {
        let b = self.bytes(n)?;
        let s = std::str::from_utf8(b).map_err(|_| self.err("string is not UTF-8"))?;
        Ok(Val::Str(s.into()))
    }
    fn line(&mut self) -> LoadResult<&'a str> {
        let rest = self.c.buf.get(self.c.pos..).unwrap_or_default();
        let n = rest.iter().position(|&b| b == b'\n').ok_or_else(|| self.err("unterminated GLOBAL line"))?;
        let b = self.bytes(n as u64 + 1)?;
        std::str::from_utf8(&b[..n]).map_err(|_| self.err("GLOBAL name is not UTF-8"))
    }
    fn global(&self, module: &str, name: &str) -> LoadResult<Val> {
        resolve_global(module, name).map(Val::Global).ok_or_else(|| {
            self.unsupported(format!(
                "refusing to load `{module}.{name}`: only tensors, storages and (ordered) dicts are allowed in weight files \
                 (nothing in the file is executed)"
            ))
        })
    }

    fn run(&mut self) -> LoadResult<Val> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(self.unsupported(format!("protocol {p}")));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a length hint
                }
                b'.' => {
                    let v = self.pop()?;
                    return Ok(v);
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                b'N' => self.stack.push(Val::None),
                0x88 => self.stack.push(Val::Bool(true)),
                0x89 => self.stack.push(Val::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Val::Int(i64::from(v)));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Val::Int(i64::from(v)));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Val::Int(i64::from(v)));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a { u64::from(self.u8()?) } else { u64::from(self.u32()?) };
                    let b = self.bytes(n)?;
                    let v = long_le(b).ok_or_else(|| self.unsupported("integer wider than 64 bits"))?;
                    self.stack.push(Val::Int(v));
                }
                b'G' => {
                    let b = self.bytes(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.stack.push(Val::Float(f64::from_be_bytes(a)));
                }
                b'X' => {
                    let n = self.u32()?;
                    let s = self.string(u64::from(n))?;
                    self.stack.push(s);
                }
                0x8c => {
                    let n = self.u8()?;
                    let s = self.string(u64::from(n))?;
                    self.stack.push(s);
                }
                0x8d => {
                    let n = self.u64()?;
                    let s = self.string(n)?;
                    self.stack.push(s);
                }
                b'T' | b'U' => {
                    // Python 2 byte strings: torch writes storage keys this way in protocol 2 on
                    // some versions; treat as latin-1 text.
                    let n = if op == b'T' {
                        let n = self.u32()? as i32;
                        u64::try_from(n).map_err(|_| self.err("negative BINSTRING length"))?
                    } else {
                        u64::from(self.u8()?)
                    };
                    let b = self.bytes(n)?;
                    let s: String = b.iter().map(|&c| char::from(c)).collect();
                    self.stack.push(Val::Str(s.into()));
                }
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'B' => u64::from(self.u32()?),
                        b'C' => u64::from(self.u8()?),
                        _ => self.u64()?,
                    };
                    let b = self.bytes(n)?;
                    self.stack.push(Val::Bytes(b.into()));
                }
                b'}' => self.push_tracked(Val::Dict(Rc::default())),
                b']' => self.push_tracked(Val::List(Rc::default())),
                b')' => self.push_tracked(Val::Tuple(Rc::from(Vec::new()))),
                b'd' => {
                    let items = self.pop_mark()?;
                    let d = pairs(items).ok_or_else(|| self.err("DICT with an odd number of items"))?;
                    self.push_tracked(Val::Dict(Rc::new(RefCell::new(d))));
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push_tracked(Val::List(Rc::new(RefCell::new(items))));
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push_tracked(Val::Tuple(items.into()));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push_tracked(Val::Tuple(items.into()));
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Val::List(l) => l.borrow_mut().push(v),
                        other => {
                            let k = other.kind();
                            return Err(self.err(format!("APPEND to a {k}")));
                        }
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Val::List(l) => l.borrow_mut().extend(items),
                        other => {
                            let k = other.kind();
                            return Err(self.err(format!("APPENDS to a {k}")));
                        }
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top()? {
                        Val::Dict(d) => d.borrow_mut().push((k, v)),
                        other => {
                            let k = other.kind();
                            return Err(self.err(format!("SETITEM on a {k}")));
                        }
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let kv = pairs(items).ok_or_else(|| self.err("SETITEMS with an odd number of items"))?;
                    match self.top()? {
                        Val::Dict(d) => d.borrow_mut().extend(kv),
                        other => {
                            let k = other.kind();
                            return Err(self.err(format!("SETITEMS on a {k}")));
                        }
                    }
                }
                b'q' => {
                    let i = u32::from(self.u8()?);
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'r' => {
                    let i = self.u32()?;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len()).map_err(|_| self.err("memo overflow"))?;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'h' | b'j' => {
                    let i = if op == b'h' { u32::from(self.u8()?) } else { self.u32()? };
                    let v = self.memo.get(&i).cloned().ok_or_else(|| self.err(format!("memo entry {i} missing")))?;
                    self.stack.push(v);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = self.global(module, name)?;
                    self.stack.push(g);
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Val::Str(m), Val::Str(n)) = (&module, &name) else {
                        return Err(self.err("STACK_GLOBAL needs two strings"));
                    };
                    let g = self.global(m, n)?;
                    self.stack.push(g);
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = self.call(f, args)?;
                    self.push_tracked(v);
                }
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    match cls {
                        Val::Global(Callable::OrderedDict) => self.push_tracked(Val::Dict(Rc::default())),
                        other => return Err(self.unsupported(format!("NEWOBJ of a {}", other.kind()))),
                    }
                    drop(args);
                }
                b'b' => {
                    let _state = self.pop()?;
                    match self.top()? {
                        // OrderedDict `_metadata` and tensor state carry nothing we need.
                        Val::Dict(_) | Val::Tensor(_) => {}
                        other => {
                            let k = other.kind();
                            return Err(self.unsupported(format!("BUILD on a {k}")));
                        }
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let s = self.persistent_load(pid)?;
                    self.stack.push(s);
                }
                op => return Err(self.unsupported(format!("opcode 0x{op:02x} at byte {} is not supported", self.c.pos - 1))),
            }
        }
    }

    /// `('storage', torch.XStorage, key, location, numel)`
    fn persistent_load(&mut self, pid: Val) -> LoadResult<Val> {
        let Val::Tuple(t) = &pid else {
            return Err(self.err(format!("persistent id is a {}, expected a tuple", pid.kind())));
        };
        let [Val::Str(tag), Val::Global(Callable::Storage(dtype)), key, _location, Val::Int(numel)] = &t[..] else {
            return Err(self.err("persistent id is not ('storage', torch.<T>Storage, key, location, numel)"));
        };
        if &**tag != "storage" {
            return Err(self.err(format!("persistent id tag `{tag}`")));
        }
        let key = match key {
            Val::Str(s) => s.to_string(),
            Val::Int(i) => i.to_string(),
            other => return Err(self.err(format!("storage key is a {}", other.kind()))),
        };
        let numel = u64::try_from(*numel).map_err(|_| self.err("negative storage size"))?;
        if let Some(s) = self.storages.get(&key) {
            if s.dtype != *dtype || s.numel != numel {
                return Err(self.err(format!("storage `{key}` is described twice differently")));
            }
            return Ok(Val::Storage(s.clone()));
        }
        let s = Rc::new(StorageRef { key: key.clone(), dtype: *dtype, numel });
        self.storages.insert(key, s.clone());
        Ok(Val::Storage(s))
    }

    fn call(&self, f: Val, args: Val) -> LoadResult<Val> {
        let Val::Global(c) = f else {
            return Err(self.unsupported(format!("REDUCE on a {}", f.kind())));
        };
        let Val::Tuple(args) = args else {
            return Err(self.err(format!("REDUCE arguments are a {}", args.kind())));
        };
        match c {
            Callable::OrderedDict => match &args[..] {
                [] => Ok(Val::Dict(Rc::default())),
                [Val::List(l)] => {
                    let mut d = Vec::new();
                    for item in l.borrow().iter() {
                        match item {
                            Val::Tuple(kv) if kv.len() == 2 => d.push((kv[0].clone(), kv[1].clone())),
                            _ => return Err(self.err("OrderedDict(...) items are not pairs")),
                        }
                    }
                    Ok(Val::Dict(Rc::new(RefCell::new(d))))
                }
                _ => Err(self.err("OrderedDict(...) with unexpected arguments")),
            },
            Callable::Size => match &args[..] {
                [t @ Val::Tuple(_)] => Ok(t.clone()),
                _ => Err(self.err("torch.Size(...) with unexpected arguments")),
            },
            Callable::RebuildParameter | Callable::RebuildParameterWithState => match args.first() {
                Some(t @ Val::Tensor(_)) => Ok(t.clone()),
                _ => Err(self.err("_rebuild_parameter without a tensor")),
            },
            Callable::RebuildTensorV2 | Callable::RebuildTensor => {
                let (Some(Val::Storage(s)), Some(Val::Int(off)), Some(size), Some(stride)) =
                    (args.first(), args.get(1), args.get(2), args.get(3))
                else {
                    return Err(self.err("_rebuild_tensor arguments are not (storage, offset, size, stride, …)"));
                };
                let ints = |v: &Val, what: &str| -> LoadResult<Vec<u64>> {
                    let Val::Tuple(t) = v else { return Err(self.err(format!("tensor {what} is a {}", v.kind()))) };
                    t.iter()
                        .map(|x| match x {
                            Val::Int(i) => u64::try_from(*i).map_err(|_| self.err(format!("negative tensor {what}"))),
                            _ => Err(self.err(format!("tensor {what} holds a {}", x.kind()))),
                        })
                        .collect()
                };
                let shape = ints(size, "size")?;
                let stride = ints(stride, "stride")?;
                let offset = u64::try_from(*off).map_err(|_| self.err("negative storage offset"))?;
                if shape.len() != stride.len() {
                    return Err(self.err("tensor size and stride have different ranks"));
                }
                // Row-major contiguity (strides of size-1 dims don't matter).
                let mut expect = 1u64;
                let mut contiguous = true;
                for (&d, &s) in shape.iter().zip(&stride).rev() {
                    if d != 1 && s != expect {
                        contiguous = false;
                    }
                    expect = expect.saturating_mul(d);
                }
                if !contiguous && expect != 0 {
                    return Err(self.unsupported(format!(
                        "a tensor of size {shape:?} has non-contiguous strides {stride:?}; call .contiguous() before saving or convert to safetensors"
                    )));
                }
                Ok(Val::Tensor(Rc::new(TensorRef { storage: s.clone(), offset, shape })))
            }
            Callable::Storage(_) => Err(self.unsupported("constructing a storage directly")),
        }
    }
}

/// Tear a value graph down iteratively: a hostile pickle can nest containers a million deep,
/// and the default recursive drop would overflow the stack.
fn dismantle(mut work: Vec<Val>) {
    while let Some(v) = work.pop() {
        match v {
            Val::List(l) => {
                if let Ok(mut b) = l.try_borrow_mut() {
                    work.append(&mut b);
                }
            }
            Val::Dict(d) => {
                if let Ok(mut b) = d.try_borrow_mut() {
                    for (k, v) in std::mem::take(&mut *b) {
                        work.push(k);
                        work.push(v);
                    }
                }
            }
            Val::Tuple(mut t) => {
                if let Some(items) = Rc::get_mut(&mut t) {
                    work.extend(items.iter_mut().map(|x| std::mem::replace(x, Val::None)));
                }
            }
            _ => {}
        }
    }
}

impl Drop for Unpickler<'_> {
    fn drop(&mut self) {
        let mut work = std::mem::take(&mut self.stack);
        work.extend(self.memo.drain().map(|(_, v)| v));
        work.append(&mut self.arena);
        dismantle(work);
    }
}

fn pairs(items: Vec<Val>) -> Option<Vec<(Val, Val)>> {
    if !items.len().is_multiple_of(2) {
        return None;
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Some(out)
}

/// Little-endian two's-complement integer of any width, if it fits i64.
fn long_le(b: &[u8]) -> Option<i64> {
    if b.is_empty() {
        return Some(0);
    }
    let neg = b.last().is_some_and(|&x| x & 0x80 != 0);
    let fill = if neg { 0xff } else { 0 };
    if b.len() > 8 {
        if b[8..].iter().any(|&x| x != fill) {
            return None;
        }
        if (b[7] & 0x80 != 0) != neg {
            return None;
        }
    }
    let mut a = [fill; 8];
    for (d, s) in a.iter_mut().zip(b) {
        *d = *s;
    }
    Some(i64::from_le_bytes(a))
}

/// A tensor the unpickler found: its state-dict name and where its bytes live.
#[derive(Debug, Clone, PartialEq)]
pub struct PickledTensor {
    pub name: String,
    pub dtype: FileDType,
    pub shape: Vec<u64>,
    pub storage_key: String,
    /// Element offset into the storage.
    pub storage_offset: u64,
    /// Elements in the storage.
    pub storage_numel: u64,
}

/// Unpickle a `torch.save`d state dict (`data.pkl`): the tensors of the top-level dict (or of
/// its `state_dict` entry, if there is one). Non-tensor entries (`animatediff_config`,
/// `global_step`, …) are skipped.
pub fn unpickle_state_dict(file: &str, pickle: &[u8]) -> LoadResult<Vec<PickledTensor>> {
    let mut u = Unpickler { file, c: Cursor::new(pickle), stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), storages: HashMap::new(), arena: Vec::new() };
    let root = u.run()?;
    let out = collect_tensors(file, &root);
    dismantle(vec![root]);
    out
}

fn collect_tensors(file: &str, root: &Val) -> LoadResult<Vec<PickledTensor>> {
    let corrupt = |m: String| LoadError::Corrupt { file: file.to_string(), format: PICKLE, message: m };
    let Val::Dict(d) = root.clone() else {
        return Err(LoadError::Unsupported {
            file: file.to_string(),
            message: format!("the pickled object is a {}, expected a state dict", root.kind()),
        });
    };
    let wrapped = d.borrow().iter().find_map(|(k, v)| match (k, v) {
        (Val::Str(k), Val::Dict(sd)) if &**k == "state_dict" => Some(sd.clone()),
        _ => None,
    });
    let state = wrapped.unwrap_or(d);
    let items = state.borrow();
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (k, v) in items.iter() {
        let Val::Tensor(t) = v else { continue };
        let name = match k {
            Val::Str(s) => s.to_string(),
            other => return Err(corrupt(format!("a state-dict key is a {}", other.kind()))),
        };
        if !seen.insert(name.clone()) {
            return Err(corrupt(format!("tensor `{name}` appears twice")));
        }
        out.push(PickledTensor {
            name,
            dtype: t.storage.dtype,
            shape: t.shape.clone(),
            storage_key: t.storage.key.clone(),
            storage_offset: t.offset,
            storage_numel: t.storage.numel,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The archive

/// Open a `torch.save` zip file.
pub fn read_torch_zip(source: Arc<dyn ByteSource>) -> LoadResult<TensorArchive> {
    let file = source.name();
    let src = source.as_ref();
    let dir = read_zip_directory(src)?;
    let by_name: HashMap<&str, &ZipEntry> = dir.iter().map(|e| (e.name.as_str(), e)).collect();
    let pkl = dir
        .iter()
        .filter(|e| e.name == "data.pkl" || e.name.ends_with("/data.pkl"))
        .min_by_key(|e| e.name.len())
        .ok_or_else(|| LoadError::Unsupported {
            file: file.clone(),
            message: "zip file without a `data.pkl` entry: not a torch.save file".into(),
        })?;
    let prefix = &pkl.name[..pkl.name.len() - "data.pkl".len()];
    if let Some(bo) = by_name.get(format!("{prefix}byteorder").as_str()) {
        if bo.size <= 16 {
            require_stored(&file, bo)?;
            let off = zip_entry_data_offset(src, bo)?;
            let b = read_vec(src, off, bo.size, ZIP)?;
            if String::from_utf8_lossy(&b).trim() == "big" {
                return Err(LoadError::Unsupported { file, message: "big-endian torch.save file".into() });
            }
        }
    }
    require_stored(&file, pkl)?;
    if pkl.size > MAX_PICKLE_BYTES {
        return Err(LoadError::Corrupt { file, format: PICKLE, message: format!("`{}` is {} bytes, over the limit", pkl.name, pkl.size) });
    }
    let off = zip_entry_data_offset(src, pkl)?;
    let pickle = read_vec(src, off, pkl.size, ZIP)?;
    let tensors = unpickle_state_dict(&file, &pickle)?;

    let mut storage_offsets: HashMap<String, u64> = HashMap::new();
    let mut entries = Vec::with_capacity(tensors.len());
    for t in tensors {
        let bad = |m: String| LoadError::Corrupt { file: file.clone(), format: "PyTorch zip", message: format!("tensor `{}`: {m}", t.name) };
        let entry_name = format!("{prefix}data/{}", t.storage_key);
        let ze = by_name.get(entry_name.as_str()).ok_or_else(|| bad(format!("storage entry `{entry_name}` is missing")))?;
        let storage_bytes = t.storage_numel.checked_mul(t.dtype.size()).ok_or_else(|| bad("storage size overflows".into()))?;
        let data_off = match storage_offsets.get(&t.storage_key) {
            Some(&o) => o,
            None => {
                require_stored(&file, ze)?;
                if ze.size < storage_bytes {
                    return Err(bad(format!("storage `{entry_name}` holds {} bytes, needs {storage_bytes}", ze.size)));
                }
                let o = zip_entry_data_offset(src, ze)?;
                storage_offsets.insert(t.storage_key.clone(), o);
                o
            }
        };
        let len = byte_len(&t.shape, t.dtype).ok_or_else(|| bad(format!("shape {:?} overflows", t.shape)))?;
        let numel = len / t.dtype.size();
        if numel > 0 && t.storage_offset.checked_add(numel).is_none_or(|end| end > t.storage_numel) {
            return Err(bad(format!(
                "elements {}..{} lie outside its {}-element storage",
                t.storage_offset,
                t.storage_offset.saturating_add(numel),
                t.storage_numel
            )));
        }
        let offset = data_off + t.storage_offset.min(t.storage_numel) * t.dtype.size();
        let shape = t
            .shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad("a dimension does not fit this platform's usize".into()))?;
        entries.push(TensorEntry { name: t.name, dtype: t.dtype, shape, offset, len });
    }
    TensorArchive::new(source, ArchiveFormat::TorchZip, entries, BTreeMap::new())
}

// ---------------------------------------------------------------------------------------------
// Writers for tests and fixtures (integration tests use them too).

/// Tiny writers for hand-made `torch.save`-style files (tests only; not a general encoder).
#[doc(hidden)]
pub mod fixture {
    use super::FileDType;

    /// A zip with stored entries; `zip64` adds zip64 records (as if the file were > 4 GB).
    pub fn zip_stored(entries: &[(&str, &[u8])], zip64: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut cd = Vec::new();
        for (name, data) in entries {
            let lho = out.len() as u64;
            out.extend(b"PK\x03\x04");
            out.extend(20u16.to_le_bytes()); // version needed
            out.extend(0u16.to_le_bytes()); // flags
            out.extend(0u16.to_le_bytes()); // stored
            out.extend(0u32.to_le_bytes()); // time/date
            out.extend(0u32.to_le_bytes()); // crc (not checked by the reader)
            out.extend((data.len() as u32).to_le_bytes());
            out.extend((data.len() as u32).to_le_bytes());
            out.extend((name.len() as u16).to_le_bytes());
            out.extend(0u16.to_le_bytes());
            out.extend(name.as_bytes());
            out.extend(*data);

            cd.extend(b"PK\x01\x02");
            cd.extend(45u16.to_le_bytes());
            cd.extend(45u16.to_le_bytes());
            cd.extend(0u16.to_le_bytes());
            cd.extend(0u16.to_le_bytes());
            cd.extend(0u32.to_le_bytes());
            cd.extend(0u32.to_le_bytes());
            let extra: Vec<u8> = if zip64 {
                let mut x = Vec::new();
                x.extend(1u16.to_le_bytes());
                x.extend(24u16.to_le_bytes());
                x.extend((data.len() as u64).to_le_bytes());
                x.extend((data.len() as u64).to_le_bytes());
                x.extend(lho.to_le_bytes());
                x
            } else {
                Vec::new()
            };
            let (sz, off) = if zip64 { (u32::MAX, u32::MAX) } else { (data.len() as u32, lho as u32) };
            cd.extend(sz.to_le_bytes());
            cd.extend(sz.to_le_bytes());
            cd.extend((name.len() as u16).to_le_bytes());
            cd.extend((extra.len() as u16).to_le_bytes());
            cd.extend(0u16.to_le_bytes());
            cd.extend(0u16.to_le_bytes());
            cd.extend(0u16.to_le_bytes());
            cd.extend(0u32.to_le_bytes());
            cd.extend(off.to_le_bytes());
            cd.extend(name.as_bytes());
            cd.extend(extra);
        }
        let cd_off = out.len() as u64;
        out.extend(&cd);
        let n = entries.len() as u64;
        if zip64 {
            let rec = out.len() as u64;
            out.extend(b"PK\x06\x06");
            out.extend(44u64.to_le_bytes());
            out.extend(45u16.to_le_bytes());
            out.extend(45u16.to_le_bytes());
            out.extend(0u32.to_le_bytes());
            out.extend(0u32.to_le_bytes());
            out.extend(n.to_le_bytes());
            out.extend(n.to_le_bytes());
            out.extend((cd.len() as u64).to_le_bytes());
            out.extend(cd_off.to_le_bytes());
            out.extend(b"PK\x06\x07");
            out.extend(0u32.to_le_bytes());
            out.extend(rec.to_le_bytes());
            out.extend(1u32.to_le_bytes());
        }
        out.extend(b"PK\x05\x06");
        out.extend(0u16.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        let (n16, cds, cdo) = if zip64 { (0xffffu16, u32::MAX, u32::MAX) } else { (n as u16, cd.len() as u32, cd_off as u32) };
        out.extend(n16.to_le_bytes());
        out.extend(n16.to_le_bytes());
        out.extend(cds.to_le_bytes());
        out.extend(cdo.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out
    }

    /// Pickle opcodes, written the way `torch.save` (protocol 2) writes them.
    #[derive(Default)]
    pub struct Pickle {
        pub out: Vec<u8>,
        memo: u32,
    }

    impl Pickle {
        pub fn new() -> Pickle {
            let mut p = Pickle::default();
            p.out.extend([0x80, 2]);
            p
        }
        pub fn op(&mut self, b: u8) -> &mut Self {
            self.out.push(b);
            self
        }
        pub fn put(&mut self) -> &mut Self {
            if self.memo < 256 {
                self.out.extend([b'q', self.memo as u8]);
            } else {
                self.out.push(b'r');
                self.out.extend(self.memo.to_le_bytes());
            }
            self.memo += 1;
            self
        }
        pub fn str(&mut self, s: &str) -> &mut Self {
            self.out.push(b'X');
            self.out.extend((s.len() as u32).to_le_bytes());
            self.out.extend(s.as_bytes());
            self.put()
        }
        pub fn int(&mut self, v: i64) -> &mut Self {
            if (0..256).contains(&v) {
                self.out.extend([b'K', v as u8]);
            } else if (0..65536).contains(&v) {
                self.out.push(b'M');
                self.out.extend((v as u16).to_le_bytes());
            } else if i32::try_from(v).is_ok() {
                self.out.push(b'J');
                self.out.extend((v as i32).to_le_bytes());
            } else {
                self.out.extend([0x8a, 8]);
                self.out.extend(v.to_le_bytes());
            }
            self
        }
        pub fn global(&mut self, module: &str, name: &str) -> &mut Self {
            self.out.push(b'c');
            self.out.extend(module.as_bytes());
            self.out.push(b'\n');
            self.out.extend(name.as_bytes());
            self.out.push(b'\n');
            self.put()
        }
        pub fn tuple_of_ints(&mut self, v: &[u64]) -> &mut Self {
            match v.len() {
                0 => {
                    self.out.push(b')');
                }
                1..=3 => {
                    for &x in v {
                        self.int(x as i64);
                    }
                    self.out.push(0x84 + v.len() as u8);
                }
                _ => {
                    self.out.push(b'(');
                    for &x in v {
                        self.int(x as i64);
                    }
                    self.out.push(b't');
                }
            }
            self.put()
        }
        /// `_rebuild_tensor_v2(('storage', torch.<T>Storage, key, 'cpu', numel), offset, size, stride, False, OrderedDict())`
        pub fn tensor(&mut self, dtype: FileDType, key: &str, storage_numel: u64, offset: u64, shape: &[u64], stride: &[u64]) -> &mut Self {
            let storage = match dtype {
                FileDType::F32 => "FloatStorage",
                FileDType::F16 => "HalfStorage",
                FileDType::BF16 => "BFloat16Storage",
                FileDType::F64 => "DoubleStorage",
                FileDType::I64 => "LongStorage",
                FileDType::I32 => "IntStorage",
                FileDType::U8 => "ByteStorage",
                FileDType::Bool => "BoolStorage",
                _ => "UnknownStorage",
            };
            self.global("torch._utils", "_rebuild_tensor_v2");
            self.op(b'(');
            self.op(b'(');
            self.str("storage");
            self.global("torch", storage);
            self.str(key);
            self.str("cpu");
            self.int(storage_numel as i64);
            self.op(b't').put();
            self.op(b'Q');
            self.int(offset as i64);
            self.tuple_of_ints(shape);
            self.tuple_of_ints(stride);
            self.op(0x89);
            self.global("collections", "OrderedDict");
            self.op(b')').put();
            self.op(b'R').put();
            self.op(b't').put();
            self.op(b'R').put()
        }
    }

    /// Contiguous strides for `shape`.
    pub fn strides(shape: &[u64]) -> Vec<u64> {
        let mut s = vec![1u64; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            s[i] = s[i + 1] * shape[i + 1];
        }
        s
    }

    /// A `torch.save(OrderedDict)` file: each tensor in its own storage, plus a non-tensor
    /// `animatediff_config` entry; `wrap` puts the dict under `state_dict`.
    pub fn torch_save(tensors: &[(&str, FileDType, &[u64], Vec<u8>)], wrap: bool, zip64: bool) -> Vec<u8> {
        let mut p = Pickle::new();
        if wrap {
            p.op(b'}').put();
            p.str("state_dict");
        }
        p.global("collections", "OrderedDict");
        p.op(b')').put().op(b'R').put();
        p.op(b'(');
        for (i, (name, dtype, shape, data)) in tensors.iter().enumerate() {
            p.str(name);
            let numel = data.len() as u64 / dtype.size();
            p.tensor(*dtype, &i.to_string(), numel, 0, shape, &strides(shape));
        }
        p.str("animatediff_config");
        p.op(b'}').put();
        p.str("frames").int(16).op(b's');
        p.op(b'u');
        if wrap {
            p.op(b's');
        }
        p.op(b'.');
        let mut files: Vec<(String, Vec<u8>)> = vec![("archive/data.pkl".into(), p.out.clone())];
        for (i, t) in tensors.iter().enumerate() {
            files.push((format!("archive/data/{i}"), t.3.clone()));
        }
        files.push(("archive/version".into(), b"3\n".to_vec()));
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        zip_stored(&refs, zip64)
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::*;
    use super::*;
    use crate::load::source::MemorySource;

    fn open(bytes: Vec<u8>) -> LoadResult<TensorArchive> {
        TensorArchive::open(Arc::new(MemorySource::new("m.ckpt", bytes)))
    }

    fn f16b(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect()
    }
    fn f32b(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|&x| x.to_le_bytes()).collect()
    }

    #[test]
    fn reads_state_dict_both_zip_flavours() {
        for zip64 in [false, true] {
            for wrap in [false, true] {
                let f = torch_save(
                    &[
                        ("a.weight", FileDType::F16, &[2, 2], f16b(&[1.0, 2.0, 3.0, -4.0])),
                        ("b.bias", FileDType::F32, &[3], f32b(&[0.5, 0.25, -1.0])),
                        ("c", FileDType::BF16, &[1], half::bf16::from_f32(2.5).to_le_bytes().to_vec()),
                        ("ids", FileDType::I64, &[1, 2], [3i64, 4].iter().flat_map(|x| x.to_le_bytes()).collect()),
                    ],
                    wrap,
                    zip64,
                );
                let a = open(f).unwrap();
                assert_eq!(a.format(), ArchiveFormat::TorchZip);
                assert_eq!(a.keys().collect::<Vec<_>>(), vec!["a.weight", "b.bias", "c", "ids"]);
                let t = a.read_f32("a.weight").unwrap();
                assert_eq!(t.shape, vec![2, 2]);
                assert_eq!(t.data, vec![1.0, 2.0, 3.0, -4.0]);
                assert_eq!(a.read_f32("b.bias").unwrap().data, vec![0.5, 0.25, -1.0]);
                assert_eq!(a.read_f32("c").unwrap().data, vec![2.5]);
                assert_eq!(a.read_f32("ids").unwrap().data, vec![3.0, 4.0]);
            }
        }
    }

    fn one_tensor_pickle(f: impl FnOnce(&mut Pickle)) -> Vec<u8> {
        let mut p = Pickle::new();
        p.op(b'}').put().op(b'(');
        p.str("t");
        f(&mut p);
        p.op(b'u').op(b'.');
        p.out
    }

    #[test]
    fn storage_offset_and_shared_storage() {
        // Two views of one 6-element storage: t = elements 2..6 as [2,2].
        let pk = one_tensor_pickle(|p| {
            p.tensor(FileDType::F32, "0", 6, 2, &[2, 2], &[2, 1]);
        });
        let data = f32b(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let z = zip_stored(&[("x/data.pkl", &pk), ("x/data/0", &data)], false);
        let a = open(z).unwrap();
        assert_eq!(a.read_f32("t").unwrap().data, vec![2.0, 3.0, 4.0, 5.0]);

        // Offset past the storage.
        let pk = one_tensor_pickle(|p| {
            p.tensor(FileDType::F32, "0", 6, 4, &[2, 2], &[2, 1]);
        });
        let z = zip_stored(&[("x/data.pkl", &pk), ("x/data/0", &data)], false);
        assert!(open(z).unwrap_err().to_string().contains("outside"));

        // Storage entry shorter than its numel says.
        let pk = one_tensor_pickle(|p| {
            p.tensor(FileDType::F32, "0", 8, 0, &[2, 2], &[2, 1]);
        });
        let z = zip_stored(&[("x/data.pkl", &pk), ("x/data/0", &data)], false);
        assert!(open(z).unwrap_err().to_string().contains("needs 32"));

        // Missing storage entry.
        let z = zip_stored(&[("x/data.pkl", &pk)], false);
        assert!(open(z).unwrap_err().to_string().contains("missing"));
    }

    #[test]
    fn non_contiguous_is_unsupported() {
        let pk = one_tensor_pickle(|p| {
            p.tensor(FileDType::F32, "0", 4, 0, &[2, 2], &[1, 2]);
        });
        let data = f32b(&[0.0; 4]);
        let z = zip_stored(&[("x/data.pkl", &pk), ("x/data/0", &data)], false);
        let e = open(z).unwrap_err();
        assert!(matches!(e, LoadError::Unsupported { .. }), "{e}");
        // Size-1 dims may carry any stride.
        let pk = one_tensor_pickle(|p| {
            p.tensor(FileDType::F32, "0", 4, 0, &[1, 4], &[77, 1]);
        });
        let z = zip_stored(&[("x/data.pkl", &pk), ("x/data/0", &data)], false);
        assert_eq!(open(z).unwrap().entry("t").unwrap().shape, vec![1, 4]);
    }

    #[test]
    fn disallowed_globals_are_refused() {
        for (m, n) in [("builtins", "eval"), ("os", "system"), ("posix", "system"), ("torch", "load"), ("numpy.core.multiarray", "scalar")] {
            // GLOBAL os.system; ('echo pwned',) REDUCE
            let mut p = Pickle::new();
            p.global(m, n);
            p.str("echo pwned").op(0x85).op(b'R').op(b'.');
            let e = unpickle_state_dict("evil.ckpt", &p.out).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, LoadError::Unsupported { .. }), "{msg}");
            assert!(msg.contains(&format!("{m}.{n}")) && msg.contains("evil.ckpt"), "{msg}");
        }
        // STACK_GLOBAL as well.
        let mut p = Pickle::new();
        p.str("subprocess").str("call").op(0x93).op(b'.');
        assert!(unpickle_state_dict("e", &p.out).unwrap_err().to_string().contains("subprocess.call"));
        // And an allowed callable called on a non-tensor is still fine data-wise, but calling a
        // storage class is not.
        let mut p = Pickle::new();
        p.global("torch", "FloatStorage").op(b')').op(b'R').op(b'.');
        assert!(matches!(unpickle_state_dict("e", &p.out), Err(LoadError::Unsupported { .. })));
    }

    #[test]
    fn malformed_pickles_error() {
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0x80, 2],
            vec![0x80, 2, b'X', 0xff, 0xff, 0xff, 0x7f, b'a'],
            vec![0x80, 2, b'a', b'.'],
            vec![0x80, 2, b'h', 5, b'.'],
            vec![0x80, 2, b'(', b'K', 1, b'd', b'.'],
            vec![0x80, 2, b'K', 1, b'.'],
            vec![0x80, 2, b'}', b'K', 1, b's', b'.'],
            vec![0x80, 2, 0xff],
            vec![0x80, 2, b'c', b'o', b's'],
            vec![0x80, 2, b'(', b'.'],
            vec![0x80, 2, b'K', 1, b'Q', b'.'],
            vec![0x80, 9, b'.'],
        ];
        for c in cases {
            assert!(unpickle_state_dict("p", &c).is_err(), "{c:?}");
        }
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        // ] q0, then 300k × (h<prev> ] q<next> a): each list holds the next one.
        let mut p = Pickle::new();
        p.op(b']').put();
        for i in 0..300_000u32 {
            p.out.push(b'j');
            p.out.extend(i.to_le_bytes());
            p.op(b']').put().op(b'a').op(b'0');
        }
        p.op(b'.');
        let e = unpickle_state_dict("deep", &p.out).unwrap_err();
        assert!(e.to_string().contains("expected a state dict"), "{e}");
        // The same under a dict (the root is dropped after extraction).
        let mut p = Pickle::new();
        p.op(b'}').put().str("k").op(b']').put();
        for i in 2..300_002u32 {
            p.out.push(b'j');
            p.out.extend(i.to_le_bytes());
            p.op(b']').put().op(b'a').op(b'0');
        }
        p.op(b's').op(b'.');
        assert_eq!(unpickle_state_dict("deep", &p.out).unwrap(), vec![]);
    }

    #[test]
    fn long_ints() {
        assert_eq!(long_le(&[]), Some(0));
        assert_eq!(long_le(&[0xff]), Some(-1));
        assert_eq!(long_le(&[0x00, 0x01]), Some(256));
        assert_eq!(long_le(&5_000_000_000i64.to_le_bytes()), Some(5_000_000_000));
        assert_eq!(long_le(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0]), None);
        assert_eq!(long_le(&[1, 0, 0, 0, 0, 0, 0, 0, 0]), Some(1));
        assert_eq!(long_le(&[0; 9]), Some(0));
        assert_eq!(long_le(&[1, 0, 0, 0, 0, 0, 0, 0, 1]), None);
    }

    #[test]
    fn zip_problems() {
        let pk = one_tensor_pickle(|_| {});
        // Not a torch file.
        let z = zip_stored(&[("readme.txt", b"hi")], false);
        assert!(matches!(open(z), Err(LoadError::Unsupported { .. })));
        // Truncated: cut the end-of-central-directory record off.
        let mut z = zip_stored(&[("a/data.pkl", &pk)], false);
        z.truncate(z.len() - 10);
        assert!(matches!(open(z), Err(LoadError::Corrupt { .. })));
        // Deflated data.pkl (method 8 in local + central headers).
        let mut z = zip_stored(&[("a/data.pkl", &pk)], false);
        let cd = z.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        z[cd + 10] = 8;
        let e = open(z).unwrap_err();
        assert!(matches!(e, LoadError::Unsupported { .. }) && e.to_string().contains("deflate"), "{e}");
        // A legacy pickle file.
        let e = open(vec![0x80, 2, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]).unwrap_err();
        assert!(e.to_string().contains("legacy"), "{e}");
        // Central directory offset out of range.
        let mut z = zip_stored(&[("a/data.pkl", &pk)], false);
        let n = z.len();
        z[n - 6..n - 2].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
        assert!(matches!(open(z), Err(LoadError::Corrupt { .. })));
    }

    #[test]
    fn skips_non_tensors() {
        let f = torch_save(&[("x", FileDType::F32, &[1], f32b(&[1.0]))], false, false);
        let a = open(f).unwrap();
        assert_eq!(a.len(), 1);
        assert!(!a.contains("animatediff_config"));
    }
}
