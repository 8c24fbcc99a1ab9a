//! Random-access byte sources: the only way the readers touch file data. A reader reads a
//! header, then each tensor's bytes on demand with positioned reads, so a multi-GB file is
//! never held in memory. Offsets are `u64` everywhere (files over 4 GB work natively, and
//! wasm32's 32-bit `usize` is only used for buffers that are actually allocated).
//!
//! Implementations: [`MemorySource`] (everywhere), [`FileSource`] (native). The browser worker
//! adds a `Blob` source.

use std::sync::Arc;

use super::{LoadError, LoadResult};

/// `Send + Sync` natively (archives can be shared across threads); nothing on wasm32, where
/// JS handles (a `Blob`) are neither.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSendSync: Send + Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + Sync + ?Sized> MaybeSendSync for T {}
/// `Send + Sync` natively (archives can be shared across threads); nothing on wasm32, where
/// JS handles (a `Blob`) are neither.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSendSync {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSendSync for T {}

/// A random-access, read-only byte source (a file, a buffer, a browser `Blob`).
pub trait ByteSource: MaybeSendSync {
    /// Total length in bytes.
    fn len(&self) -> u64;
    /// Fill `buf` with the bytes at `offset..offset + buf.len()`. Reading past the end is an
    /// error ([`LoadError::Corrupt`] naming the source: the file is shorter than its header says).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> LoadResult<()>;
    /// What to call this source in error messages (a path or a file name).
    fn name(&self) -> String;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Check that `offset..offset+len` lies inside a source of `total` bytes.
pub(crate) fn check_range(name: &str, format: &'static str, total: u64, offset: u64, len: u64) -> LoadResult<()> {
    match offset.checked_add(len) {
        Some(end) if end <= total => Ok(()),
        _ => Err(LoadError::Corrupt {
            file: name.to_string(),
            format,
            message: format!("read of {len} bytes at offset {offset} runs past the end of the file ({total} bytes; truncated?)"),
        }),
    }
}

/// Read `len` bytes at `offset` into a new buffer, after checking the range against the
/// source's length (so a lying header cannot make us allocate more than the file holds).
pub fn read_vec(src: &dyn ByteSource, offset: u64, len: u64, format: &'static str) -> LoadResult<Vec<u8>> {
    check_range(&src.name(), format, src.len(), offset, len)?;
    let n = usize::try_from(len).map_err(|_| LoadError::Unsupported {
        file: src.name(),
        message: format!("a {len}-byte read does not fit in this platform's address space"),
    })?;
    let mut buf = vec![0u8; n];
    src.read_at(offset, &mut buf)?;
    Ok(buf)
}

/// Bytes in memory (tests, files the browser already read, downloads).
#[derive(Clone)]
pub struct MemorySource {
    name: String,
    data: Arc<[u8]>,
}

impl MemorySource {
    pub fn new(name: impl Into<String>, data: impl Into<Arc<[u8]>>) -> MemorySource {
        MemorySource { name: name.into(), data: data.into() }
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }
}

impl std::fmt::Debug for MemorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySource").field("name", &self.name).field("len", &self.data.len()).finish()
    }
}

impl ByteSource for MemorySource {
    fn len(&self) -> u64 {
        self.data.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> LoadResult<()> {
        check_range(&self.name, "file", self.len(), offset, buf.len() as u64)?;
        // In range by the check above, and the buffer length fits usize.
        let start = offset as usize;
        let src = self.data.get(start..start + buf.len()).ok_or_else(|| LoadError::Corrupt {
            file: self.name.clone(),
            format: "file",
            message: format!("read at offset {offset} out of range"),
        })?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

/// A file on disk, read with positioned reads (`pread` on Unix, `seek_read` on Windows).
#[cfg(not(target_arch = "wasm32"))]
pub struct FileSource {
    name: String,
    len: u64,
    #[cfg(any(unix, windows))]
    file: std::fs::File,
    #[cfg(not(any(unix, windows)))]
    file: std::sync::Mutex<std::fs::File>,
}

#[cfg(not(target_arch = "wasm32"))]
impl FileSource {
    pub fn open(path: impl AsRef<std::path::Path>) -> LoadResult<FileSource> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|source| LoadError::Io { file: name.clone(), source })?;
        let meta = file.metadata().map_err(|source| LoadError::Io { file: name.clone(), source })?;
        if meta.is_dir() {
            return Err(LoadError::Unsupported { file: name, message: "is a directory, expected a file".into() });
        }
        #[cfg(not(any(unix, windows)))]
        let file = std::sync::Mutex::new(file);
        Ok(FileSource { name, len: meta.len(), file })
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource").field("name", &self.name).field("len", &self.len).finish()
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl ByteSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> LoadResult<()> {
        check_range(&self.name, "file", self.len, offset, buf.len() as u64)?;
        let io = |source| LoadError::Io { file: self.name.clone(), source };
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file.read_exact_at(buf, offset).map_err(io)
        }
        #[cfg(windows)]
        {
            use std::os::windows::fs::FileExt;
            let mut done = 0usize;
            while done < buf.len() {
                let n = self.file.seek_read(&mut buf[done..], offset + done as u64).map_err(io)?;
                if n == 0 {
                    return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
                }
                done += n;
            }
            Ok(())
        }
        #[cfg(not(any(unix, windows)))]
        {
            use std::io::{Read, Seek, SeekFrom};
            let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
            f.seek(SeekFrom::Start(offset)).map_err(io)?;
            f.read_exact(buf).map_err(io)
        }
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_reads_and_bounds() {
        let m = MemorySource::new("m", vec![1u8, 2, 3, 4]);
        let mut b = [0u8; 2];
        m.read_at(1, &mut b).unwrap();
        assert_eq!(b, [2, 3]);
        assert!(matches!(m.read_at(3, &mut b), Err(LoadError::Corrupt { .. })));
        assert!(matches!(m.read_at(u64::MAX, &mut b), Err(LoadError::Corrupt { .. })));
        assert!(read_vec(&m, 0, 1 << 40, "x").is_err());
        assert_eq!(read_vec(&m, 2, 2, "x").unwrap(), vec![3, 4]);
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn file_reads() {
        let dir = std::env::temp_dir().join(format!("adload-src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f.bin");
        std::fs::write(&p, [9u8, 8, 7, 6, 5]).unwrap();
        let f = FileSource::open(&p).unwrap();
        assert_eq!(f.len(), 5);
        let mut b = [0u8; 3];
        f.read_at(2, &mut b).unwrap();
        assert_eq!(b, [7, 6, 5]);
        assert!(f.read_at(3, &mut b).is_err());
        assert!(matches!(FileSource::open(dir.join("nope")), Err(LoadError::Io { .. })));
        assert!(matches!(FileSource::open(&dir), Err(LoadError::Unsupported { .. })));
        std::fs::remove_dir_all(&dir).ok();
    }
}
