// The model cache: downloaded model files kept in the Cache API in chunks, so a second visit
// downloads nothing (and works offline) and an interrupted download resumes from the last
// complete chunk. Used by worker.js (downloads) and animatediff.js (`cache.usage()`,
// `cache.entries()`, `cache.clear()`); no other dependencies.
//
// Layout in the cache `animatediff-models-v1` (keys are synthetic URLs; the Cache API only
// stores http(s) requests):
//   …/file?u=URL                → a manifest (JSON): { url, size, validator, chunkBytes, chunks,
//                                 complete, cachedAt }, written when the first chunk is stored
//   …/chunk?u=URL&c=BYTES&i=N   → chunk N (bytes [N·BYTES, (N+1)·BYTES)), with its SHA-256 and
//                                 length in headers
// The validator (ETag, else Last-Modified) and the size come from the server's first ranged
// response; a resumed download whose server answers with another validator or size starts
// over (the file changed), so chunks of two versions are never mixed. A complete file is
// served from the cache without any request (what WebLLM and transformers.js do); every chunk
// is checked (length and SHA-256) when read, and a bad one is fetched again. A chunk is one
// `cache.put`, which is atomic: a full disk or a cancel never leaves half a chunk behind.

export const CACHE_NAME = 'animatediff-models-v1';
const KEY_BASE = 'https://models.animatediff-wgpu.invalid/';

function namedError(name, message) {
  const e = new Error(message);
  e.name = name;
  return e;
}

const mb = (b) => (b < 1e5 ? `${(b / 1e3).toFixed(1)} kB` : `${(b / 1e6).toFixed(1)} MB`);

const manifestKey = (url) => `${KEY_BASE}file?u=${encodeURIComponent(url)}`;
const chunkKey = (url, chunkBytes, i) => `${KEY_BASE}chunk?u=${encodeURIComponent(url)}&c=${chunkBytes}&i=${i}`;

/** Whether this context can cache (Cache API + WebCrypto: secure contexts only). */
export function cacheAvailable() {
  return typeof caches !== 'undefined' && typeof crypto !== 'undefined' && !!crypto.subtle;
}

async function sha256Hex(buf) {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', buf));
  return Array.from(d, (x) => x.toString(16).padStart(2, '0')).join('');
}

async function request(url, init) {
  try {
    return await fetch(url, init);
  } catch (e) {
    if (e?.name === 'AbortError') throw e;
    throw namedError('NetworkError',
      `could not download ${url}: the network request failed (offline, a wrong URL, or a server that does not allow cross-origin requests (CORS))`);
  }
}

function httpError(res, url) {
  const hint = res.status === 404 ? ' (not found: check the URL)'
    : res.status === 401 || res.status === 403 ? ' (access denied: the file may be gated or private)'
    : '';
  return namedError('NetworkError', `could not download ${url}: HTTP ${res.status} ${res.statusText}${hint}`);
}

// "bytes 0-99/1234" → 1234 (null when unknown).
function totalFromContentRange(v) {
  const m = /\/(\d+)\s*$/.exec(v ?? '');
  return m ? Number(m[1]) : null;
}

const validatorOf = (res) => res.headers.get('etag') ?? res.headers.get('last-modified') ?? '';

/** Room left for this origin (bytes), or Infinity where the browser does not say. */
export async function storageAvailable() {
  try {
    const { usage = 0, quota } = (await navigator.storage?.estimate?.()) ?? {};
    return Number.isFinite(quota) ? Math.max(0, quota - usage) : Infinity;
  } catch {
    return Infinity;
  }
}

function quotaError(url, needed, available, cachedBytes) {
  return namedError('QuotaError',
    `not enough browser storage to cache ${url}: it needs ${mb(needed)} more, ${mb(available)} is available` +
    `${cachedBytes > 0 ? ` (${mb(cachedBytes)} of it is already cached)` : ''}. Free disk space, or clear cached models you no longer need.`);
}

// A `cache.put` over the quota → QuotaError (the chunks already stored stay valid).
async function put(cache, key, response, url, needed) {
  try {
    await cache.put(key, response);
  } catch (e) {
    if (e?.name === 'QuotaExceededError') {
      // Over the quota mid-download (estimate() can be stale): the chunks stored so far stay
      // (each is whole and checked), the file is not served until all are there.
      throw namedError('QuotaError', `the browser refused to store more of ${url} (storage quota exceeded) with ${mb(needed)} of it still to cache. ` +
        'Free disk space, or clear cached models you no longer need, then load again: the chunks already cached are kept.');
    }
    throw e;
  }
}

async function readManifest(cache, url) {
  const res = await cache.match(manifestKey(url));
  if (!res) return null;
  try {
    const m = await res.json();
    return m && m.url === url && Number.isFinite(m.size) && m.chunkBytes > 0 ? m : null;
  } catch {
    return null;
  }
}

async function writeManifest(cache, m, needed) {
  await put(cache, manifestKey(m.url), new Response(JSON.stringify(m), { headers: { 'content-type': 'application/json' } }), m.url, needed);
}

/** Drop every cached chunk and the manifest of `url`. */
async function dropFile(cache, url) {
  const tag = `u=${encodeURIComponent(url)}&`;
  const keys = await cache.keys();
  await Promise.all(keys.filter((r) => r.url.includes(tag)).map((r) => cache.delete(r)));
  await cache.delete(manifestKey(url));
}

// A cached chunk as a Blob, or null when it is missing or fails its length/SHA-256 check (a
// bad one is deleted so that it is fetched again).
async function readChunk(cache, key, want) {
  const res = await cache.match(key);
  if (!res) return null;
  const blob = await res.blob();
  const ok = blob.size === want && Number(res.headers.get('x-chunk-bytes')) === want
    && res.headers.get('x-sha256') === (await sha256Hex(await blob.arrayBuffer()));
  if (!ok) {
    await cache.delete(key);
    return null;
  }
  return blob;
}

/**
 * Download `url` into a Blob of chunk Blobs through the cache. `onProgress(loaded, total,
 * cachedBytes)` after each chunk. Before storing anything, the bytes still missing are checked
 * against `available()` (default: navigator.storage.estimate()). Returns undefined where this
 * context cannot cache (the caller then downloads without it).
 */
export async function cachedDownload(url, { chunkBytes = 32 << 20, signal, onProgress = () => {}, available: room = storageAvailable } = {}) {
  if (!cacheAvailable()) return undefined;
  const cache = await caches.open(CACHE_NAME);
  let manifest = await readManifest(cache, url);
  if (manifest && manifest.chunkBytes !== chunkBytes && !manifest.complete) {
    // A partial download with another chunk size: its chunks cannot be reused.
    await dropFile(cache, url);
    manifest = null;
  }
  const step = manifest?.chunkBytes ?? chunkBytes;
  const init = (start, end) => ({ headers: { Range: `bytes=${start}-${end}` }, signal: signal ?? undefined, cache: 'no-store' });

  // Fetch chunk `i` (size known once the first response told it); checks that the file is
  // still the one the manifest describes.
  const fetchChunk = async (i, known) => {
    const start = i * step;
    const end = known ? Math.min(start + step, known.size) - 1 : start + step - 1;
    const res = await request(url, init(start, end));
    if (res.status === 416 && !known && i === 0) return { blob: new Blob([]), size: 0, validator: '' };
    // 200 to the very first request: the server ignores Range (streamed, not cached).
    if (res.status === 200 && !known) return { whole: res };
    if (res.status !== 206) throw res.ok ? namedError('NetworkError', `could not download ${url}: the server stopped honouring Range requests`) : httpError(res, url);
    const size = totalFromContentRange(res.headers.get('content-range'));
    const validator = validatorOf(res);
    // Ranges without a total ("bytes 0-9/*"): no size to key the chunks by.
    if (size === null) return known ? { changed: true } : { uncachable: true };
    if (known && (size !== known.size || (validator && known.validator && validator !== known.validator))) {
      return { changed: true };
    }
    const blob = await res.blob();
    const want = Math.min(start + step, size) - start;
    if (blob.size !== want) throw namedError('NetworkError', `could not download ${url}: chunk ${i} has ${blob.size} bytes, expected ${want}`);
    return { blob, size, validator };
  };

  const store = async (m, i, blob, needed) => {
    const hash = await sha256Hex(await blob.arrayBuffer());
    const headers = { 'content-type': 'application/octet-stream', 'x-sha256': hash, 'x-chunk-bytes': String(blob.size) };
    await put(cache, chunkKey(url, m.chunkBytes, i), new Response(blob, { headers }), url, needed);
  };

  for (let attempt = 0; attempt < 2; attempt++) {
    let m = manifest;
    let first = null;
    if (!m) {
      // Chunks without a manifest (a clear() or an eviction cut short) cannot be tied to a
      // version of the file: never reuse them.
      await dropFile(cache, url);
      first = await fetchChunk(0, null);
      if (first.whole) return await streamWhole(first.whole, url, step, onProgress);
      if (first.uncachable) return undefined;
      m = { url, size: first.size, validator: first.validator, chunkBytes: step, chunks: Math.ceil(first.size / step), complete: false, cachedAt: Date.now() };
    }
    const chunkSize = (i) => Math.min((i + 1) * m.chunkBytes, m.size) - i * m.chunkBytes;
    // What is there already (headers only), and does the rest fit?
    const present = [];
    for (let i = 0; i < m.chunks; i++) present.push(!!(await cache.match(chunkKey(url, m.chunkBytes, i))));
    const cachedBytes = present.reduce((s, p, i) => s + (p ? chunkSize(i) : 0), 0);
    const needed = m.size - cachedBytes;
    const available = await room();
    if (needed > available) throw quotaError(url, needed, available, cachedBytes);
    if (!manifest) await writeManifest(cache, m, needed);

    const parts = [];
    let loaded = 0;
    let fromCache = 0;
    let changed = false;
    for (let i = 0; i < m.chunks; i++) {
      if (signal?.aborted) throw namedError('AbortError', 'loading was cancelled');
      let blob = present[i] ? await readChunk(cache, chunkKey(url, m.chunkBytes, i), chunkSize(i)) : null;
      if (blob) {
        fromCache += blob.size;
      } else {
        const got = i === 0 && first ? first : await fetchChunk(i, m);
        if (got.changed) {
          changed = true;
          break;
        }
        blob = got.blob;
        await store(m, i, blob, needed);
      }
      parts.push(blob);
      loaded += blob.size;
      onProgress(loaded, m.size, fromCache);
    }
    if (changed) {
      // The file on the server is not the one partly cached: start over.
      await dropFile(cache, url);
      manifest = null;
      continue;
    }
    if (!m.complete) await writeManifest(cache, { ...m, complete: true, cachedAt: Date.now() }, 0);
    if (m.size === 0) onProgress(0, 0, 0);
    return new Blob(parts);
  }
  throw namedError('NetworkError', `could not download ${url}: the file changed on the server while it was being downloaded`);
}

// A server that ignores Range: stream the body into chunk-sized Blobs (not cached: without
// ranges an interrupted download could not resume anyway, and no validator ties the chunks).
async function streamWhole(res, url, chunkBytes, onProgress) {
  if (!res.ok) throw httpError(res, url);
  const length = Number(res.headers.get('content-length'));
  const total = Number.isFinite(length) && length > 0 ? length : -1;
  const reader = res.body.getReader();
  const parts = [];
  let pending = [];
  let pendingBytes = 0;
  let loaded = 0;
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
    onProgress(loaded, total, 0);
  }
  parts.push(new Blob(pending));
  return new Blob(parts);
}

/**
 * One entry per cached file: { url, size, cachedBytes, chunks, cachedChunks, complete,
 * validator, cachedAt }.
 */
export async function entries() {
  if (!cacheAvailable()) return [];
  const cache = await caches.open(CACHE_NAME);
  const keys = await cache.keys();
  const chunkCounts = new Map(); // url → [chunks, bytes]
  const files = [];
  for (const r of keys) {
    const u = new URL(r.url);
    const url = u.searchParams.get('u');
    if (u.pathname === '/file') files.push(url);
    else if (u.pathname === '/chunk') {
      const res = await cache.match(r);
      const n = Number(res?.headers.get('x-chunk-bytes')) || 0;
      const [c, b] = chunkCounts.get(url) ?? [0, 0];
      chunkCounts.set(url, [c + 1, b + n]);
    }
  }
  const out = [];
  for (const url of files) {
    const m = await readManifest(cache, url);
    if (!m) continue;
    const [cachedChunks, cachedBytes] = chunkCounts.get(url) ?? [0, 0];
    out.push({ url, size: m.size, cachedBytes, chunks: m.chunks, cachedChunks, complete: m.complete && cachedChunks === m.chunks, validator: m.validator, cachedAt: m.cachedAt });
  }
  return out;
}

/** Bytes of cached model data: { bytes, files, available } (available: room left for this origin). */
export async function usage() {
  const list = await entries();
  return { bytes: list.reduce((s, e) => s + e.cachedBytes, 0), files: list.length, available: await storageAvailable() };
}

/** Delete the cached files (all of them, or those whose URL is in `urls`). */
export async function clear(urls) {
  if (!cacheAvailable()) return;
  if (urls === undefined) {
    await caches.delete(CACHE_NAME);
    return;
  }
  const cache = await caches.open(CACHE_NAME);
  for (const u of [].concat(urls)) await dropFile(cache, String(u));
}

/** Ask the browser not to evict the cache under storage pressure (main thread only). */
export async function persist() {
  try {
    return (await navigator.storage?.persist?.()) ?? false;
  } catch {
    return false;
  }
}
