// Downloads for the wasm loader (a wasm-bindgen snippet: copied into pkg/snippets/).
//
// A model file is fetched with HTTP Range requests in chunks and assembled as a Blob of
// chunk Blobs, so no single ArrayBuffer ever holds the whole file (Chrome caps ArrayBuffers
// near 2 GB, and big Blobs are kept on disk by the browser). Servers that ignore Range get
// their body streamed into the same chunked Blob.

function plainError(name, message) {
  const e = new Error(message);
  e.name = name;
  return e;
}

async function request(url, init, what) {
  try {
    return await fetch(url, init);
  } catch (e) {
    if (e?.name === 'AbortError') throw e;
    throw plainError('NetworkError',
      `could not download ${what}: the network request failed (offline, a wrong URL, or a server that does not allow cross-origin requests (CORS))`);
  }
}

function httpError(res, what) {
  const hint = res.status === 404 ? ' (not found: check the URL)'
    : res.status === 401 || res.status === 403 ? ' (access denied: the file may be gated or private)'
    : '';
  return plainError('NetworkError', `could not download ${what}: HTTP ${res.status} ${res.statusText}${hint}`);
}

// "bytes 0-99/1234" → 1234 (null when unknown).
function totalFromContentRange(v) {
  const m = /\/(\d+)\s*$/.exec(v ?? '');
  return m ? Number(m[1]) : null;
}

/// Download `url` into a Blob, `chunkBytes` per request; `onProgress(loaded, total, cached)`
/// (total is -1 while unknown; cached = bytes served from a cache) after each piece.
/// `downloader`, when given (worker.js passes the model cache's, www/cache.js), does the
/// download instead; where it returns undefined (no Cache API here) this plain one runs.
export async function downloadBlob(url, chunkBytes, signal, onProgress, downloader) {
  if (typeof downloader === 'function') {
    const blob = await downloader(url, chunkBytes, signal, onProgress);
    if (blob !== undefined) return blob;
  }
  const what = url;
  const parts = [];
  let loaded = 0;
  let total = null;
  const init = (range) => ({ headers: { Range: range }, signal: signal ?? undefined, cache: 'no-store' });
  let res = await request(url, init(`bytes=0-${chunkBytes - 1}`), what);
  if (res.status === 416) {
    // An empty file cannot satisfy bytes=0-…
    return new Blob([]);
  }
  if (res.status === 206) {
    total = totalFromContentRange(res.headers.get('content-range'));
    for (;;) {
      const part = await res.blob();
      parts.push(part);
      loaded += part.size;
      onProgress(loaded, total ?? -1, 0);
      if (part.size === 0 || (total !== null ? loaded >= total : part.size < chunkBytes)) break;
      const end = total !== null ? Math.min(loaded + chunkBytes, total) - 1 : loaded + chunkBytes - 1;
      res = await request(url, init(`bytes=${loaded}-${end}`), what);
      if (res.status === 416 && total === null) break;
      if (res.status !== 206) throw res.ok
        ? plainError('NetworkError', `could not download ${what}: the server stopped honouring Range requests`)
        : httpError(res, what);
    }
    if (total !== null && loaded !== total) {
      throw plainError('NetworkError', `could not download ${what}: got ${loaded} of ${total} bytes`);
    }
    return new Blob(parts);
  }
  if (!res.ok) throw httpError(res, what);
  // 200: the server ignored Range. Stream the body into chunk-sized Blobs.
  const length = Number(res.headers.get('content-length'));
  total = Number.isFinite(length) && length > 0 ? length : null;
  const reader = res.body.getReader();
  let pending = [];
  let pendingBytes = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    pending.push(value);
    pendingBytes += value.byteLength;
    loaded += value.byteLength;
    if (pendingBytes >= chunkBytes) {
      parts.push(new Blob(pending));
      pending = [];
      pendingBytes = 0;
    }
    onProgress(loaded, total ?? -1, 0);
  }
  parts.push(new Blob(pending));
  return new Blob(parts);
}

/// A small text file (configs).
export async function fetchText(url, signal) {
  const res = await request(url, { signal: signal ?? undefined, cache: 'no-store' }, url);
  if (!res.ok) throw httpError(res, url);
  return await res.text();
}
