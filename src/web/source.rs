//! Model bytes in the browser: a [`ByteSource`] over a `Blob` (a picked `File`, or a download
//! assembled from ranged chunks), read synchronously with `FileReaderSync` — only available in
//! Web Workers, where the engine runs. Only the bytes a reader asks for are read: the header,
//! then one tensor at a time. On the main thread (no `FileReaderSync`) a Blob is read whole
//! into memory instead, which is fine for small models only.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use js_sys::{Function, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, Blob, FileReaderSync};

use super::js::{WebError, WebResult};
use crate::load::source::{check_range, ByteSource, MemorySource};
use crate::load::{LoadError, LoadResult};

#[wasm_bindgen(module = "/src/web/download.js")]
extern "C" {
    #[wasm_bindgen(catch, js_name = downloadBlob)]
    async fn download_blob(url: &str, chunk_bytes: f64, signal: &JsValue, on_progress: &Function, downloader: &JsValue) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_name = fetchText)]
    async fn fetch_text_js(url: &str, signal: &JsValue) -> Result<JsValue, JsValue>;
}

/// Largest Blob read whole into memory where `FileReaderSync` is missing (the main thread).
const MAIN_THREAD_MAX_BYTES: f64 = 512e6;
/// Bytes per HTTP Range request.
pub const DOWNLOAD_CHUNK: u64 = 32 << 20;
/// Reads smaller than this go through a read-ahead block (headers, zip directories, pickles).
const SMALL_READ: usize = 64 << 10;
const READ_AHEAD: u64 = 1 << 20;

pub struct BlobSource {
    blob: Blob,
    name: String,
    len: u64,
    reader: FileReaderSync,
    /// The last read-ahead block: (offset, bytes).
    block: RefCell<Option<(u64, Vec<u8>)>>,
}

impl BlobSource {
    /// `None` where `FileReaderSync` does not exist (the main thread).
    pub fn new(blob: Blob, name: String) -> Option<BlobSource> {
        let reader = FileReaderSync::new().ok()?;
        let len = blob.size();
        let len = if len.is_finite() && len >= 0.0 { len as u64 } else { 0 };
        Some(BlobSource { blob, name, len, reader, block: RefCell::new(None) })
    }

    fn read_direct(&self, offset: u64, buf: &mut [u8]) -> LoadResult<()> {
        let io = |what: String| LoadError::Io { file: self.name.clone(), source: std::io::Error::other(what) };
        let end = offset + buf.len() as u64;
        let slice = self.blob.slice_with_f64_and_f64(offset as f64, end as f64).map_err(|e| io(js_message(&e)))?;
        let ab = self.reader.read_as_array_buffer(&slice).map_err(|e| io(js_message(&e)))?;
        let arr = Uint8Array::new(&ab);
        if arr.length() as usize != buf.len() {
            return Err(io(format!("read {} bytes at offset {offset}, expected {}", arr.length(), buf.len())));
        }
        arr.copy_to(buf);
        Ok(())
    }
}

fn js_message(e: &JsValue) -> String {
    js_sys::Reflect::get(e, &"message".into()).ok().and_then(|m| m.as_string()).unwrap_or_else(|| format!("{e:?}"))
}

impl ByteSource for BlobSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> LoadResult<()> {
        check_range(&self.name, "file", self.len, offset, buf.len() as u64)?;
        if buf.is_empty() {
            return Ok(());
        }
        if buf.len() >= SMALL_READ {
            return self.read_direct(offset, buf);
        }
        let end = offset + buf.len() as u64;
        let mut block = self.block.borrow_mut();
        let hit = matches!(&*block, Some((start, bytes)) if *start <= offset && end <= start + bytes.len() as u64);
        if !hit {
            let len = READ_AHEAD.max(buf.len() as u64).min(self.len - offset);
            let mut bytes = vec![0u8; len as usize];
            self.read_direct(offset, &mut bytes)?;
            *block = Some((offset, bytes));
        }
        if let Some((start, bytes)) = &*block {
            let from = (offset - start) as usize;
            if let Some(src) = bytes.get(from..from + buf.len()) {
                buf.copy_from_slice(src);
                return Ok(());
            }
        }
        self.read_direct(offset, buf)
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

/// A Blob as a byte source: streamed from the Blob in a worker, read whole elsewhere.
// The loaders take `Arc<dyn ByteSource>` (shared across threads natively); wasm is single-threaded.
#[allow(clippy::arc_with_non_send_sync)]
pub async fn blob_source(blob: Blob, name: String) -> WebResult<Arc<dyn ByteSource>> {
    if let Some(s) = BlobSource::new(blob.clone(), name.clone()) {
        return Ok(Arc::new(s));
    }
    if blob.size() > MAIN_THREAD_MAX_BYTES {
        return Err(WebError::new(
            "NotSupportedError",
            format!("{name}: files over {} MB can only be streamed from a Web Worker (use createGenerator from animatediff.js, which runs the engine in one)", MAIN_THREAD_MAX_BYTES / 1e6),
        ));
    }
    let ab = JsFuture::from(blob.array_buffer()).await.map_err(|e| WebError::from_js(&format!("reading {name}"), &e))?;
    let bytes = Uint8Array::new(&ab).to_vec();
    Ok(Arc::new(MemorySource::new(name, bytes)))
}

/// Download a URL into a (chunked) Blob, through `downloader` (a JS function with
/// `downloadBlob`'s first four parameters, e.g. the model cache's) when given.
/// `on_progress(loaded, total, cached)`; `total` < 0 = unknown; `cached` = bytes that came
/// from a cache rather than the network.
pub async fn download(url: &str, signal: Option<&AbortSignal>, downloader: Option<&Function>, on_progress: Rc<dyn Fn(f64, f64, f64)>) -> WebResult<Blob> {
    let cb = Closure::<dyn FnMut(f64, f64, f64)>::new(move |loaded: f64, total: f64, cached: f64| {
        on_progress(loaded, total, if cached.is_finite() { cached } else { 0.0 })
    });
    let signal_js: JsValue = signal.map(|s| s.clone().into()).unwrap_or(JsValue::UNDEFINED);
    let downloader_js: JsValue = downloader.map(|f| f.clone().into()).unwrap_or(JsValue::UNDEFINED);
    let result = download_blob(url, DOWNLOAD_CHUNK as f64, &signal_js, cb.as_ref().unchecked_ref(), &downloader_js).await;
    // The JS side only calls the callback while the download runs.
    drop(cb);
    let v = result.map_err(|e| WebError::from_js(&format!("downloading {url}"), &e))?;
    v.dyn_into::<Blob>().map_err(|_| WebError::new("NetworkError", format!("downloading {url} did not give a Blob")))
}

/// A small text file from a URL.
pub async fn fetch_text(url: &str, signal: Option<&AbortSignal>) -> WebResult<String> {
    let signal_js: JsValue = signal.map(|s| s.clone().into()).unwrap_or(JsValue::UNDEFINED);
    let v = fetch_text_js(url, &signal_js).await.map_err(|e| WebError::from_js(&format!("downloading {url}"), &e))?;
    v.as_string().ok_or_else(|| WebError::new("NetworkError", format!("{url}: response is not text")))
}

/// A Blob's text (configs picked as files).
pub async fn blob_text(blob: &Blob, name: &str) -> WebResult<String> {
    let v = JsFuture::from(blob.text()).await.map_err(|e| WebError::from_js(&format!("reading {name}"), &e))?;
    v.as_string().ok_or_else(|| WebError::new("LoadError", format!("{name}: not a text file")))
}
