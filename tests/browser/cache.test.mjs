// The model cache (www/cache.js) in headless Chromium: the tiny model loaded from local URLs
// through the generator (worker → wasm → the cache's downloader), requests counted at the
// server. A second load makes no request; an aborted download resumes with only the missing
// chunks; a corrupted or truncated cached chunk is detected and fetched again (and the bytes
// served equal the file's); clear() empties the cache; too little storage is a QuotaError up
// front with nothing cached.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { installTinySources, openBrowser } from './harness.mjs';
import { FIXTURES } from '../../scripts/serve.mjs';

// Small chunks so that the tiny files have several (unet 2.26 MB = 9, text encoder 3.19 MB = 13).
const CHUNK = 256 << 10;
const UNET = 'diffusers/unet/diffusion_pytorch_model.safetensors';

let b;
let requests = []; // { method, path, start } of /fixtures/ requests
let hold = null; // { test(path, start), reached(), released: Promise }

function rangeStart(h) {
  const m = /^bytes=(\d+)-/.exec(h ?? '');
  return m ? Number(m[1]) : 0;
}

async function onRequest(req, url) {
  if (!url.pathname.startsWith('/fixtures/tiny/')) return;
  const path = decodeURIComponent(url.pathname.slice('/fixtures/tiny/'.length));
  const start = rangeStart(req.headers.range);
  requests.push({ method: req.method, path, start });
  if (hold?.test(path, start)) {
    hold.reached();
    await hold.released;
  }
}

const fileSize = (rel) => statSync(join(FIXTURES, rel)).size;
const take = () => {
  const r = requests;
  requests = [];
  return r;
};

function installHelpers() {
  window.loadTiny = async (extra = {}) => {
    const events = [];
    const info = await g.load({ model: tiny.model, motion: tiny.motion }, { chunkBytes: 256 << 10, onProgress: (p) => events.push(p), ...extra });
    const downloads = events.filter((p) => p.phase === 'download');
    return { info, downloads: downloads.length, loaded: downloads.reduce((s, p) => Math.max(s, p.totalLoaded), 0), cachedAll: downloads.every((p) => p.cached === p.loaded) };
  };
}

before(async () => {
  b = await openBrowser({ onRequest });
  await b.page.goto(b.url);
  await b.page.evaluate(installTinySources);
  await b.page.evaluate(installHelpers);
  await b.page.evaluate(async () => {
    const m = await import('./animatediff.js');
    window.cache = m.cache;
    window.g = await m.createGenerator();
    await cache.clear();
  });
  take();
});

after(async () => {
  await b?.page.evaluate(() => window.g?.dispose()).catch(() => {});
  await b?.close();
});

test('first load fills the cache in chunks; the second load makes no request', async () => {
  const t0 = performance.now();
  const first = await b.page.evaluate(() => loadTiny());
  const t1 = performance.now();
  const got = take();
  const second = await b.page.evaluate(() => loadTiny());
  const t2 = performance.now();
  const again = take();
  const state = await b.page.evaluate(async () => ({ usage: await cache.usage(), entries: await cache.entries() }));
  console.log(`first load ${(t1 - t0).toFixed(0)} ms (${got.length} requests), second ${(t2 - t1).toFixed(0)} ms (${again.length} requests); ` +
    `cache ${state.usage.bytes} B in ${state.usage.files} files`);

  const unetGets = got.filter((r) => r.path === UNET).map((r) => r.start);
  assert.deepEqual(unetGets, Array.from({ length: Math.ceil(fileSize(UNET) / (256 << 10)) }, (_, i) => i * CHUNK));
  assert.ok(got.every((r) => r.method === 'GET'));
  assert.deepEqual(again, [], `second load requested ${JSON.stringify(again.slice(0, 5))}`);
  assert.equal(second.cachedAll, true);
  assert.equal(second.loaded, first.loaded);
  assert.deepEqual(second.info.description, first.info.description);

  // Every file fetched is cached, completely, with its real size.
  const fetched = [...new Set(got.map((r) => r.path))].sort();
  const cached = state.entries.map((e) => new URL(e.url).pathname.replace('/fixtures/tiny/', '')).sort();
  assert.deepEqual(cached, fetched);
  for (const e of state.entries) {
    const rel = new URL(e.url).pathname.replace('/fixtures/tiny/', '');
    assert.equal(e.size, fileSize(rel), rel);
    assert.equal(e.cachedBytes, e.size, rel);
    assert.equal(e.complete, true, rel);
  }
  assert.equal(state.usage.bytes, fetched.reduce((s, f) => s + fileSize(f), 0));
  assert.equal(state.usage.files, fetched.length);
});

test('an aborted download resumes: only the missing chunks are fetched', async () => {
  await b.page.evaluate(() => cache.clear());
  take();
  // Hold back the request for the UNet's chunk 4, cancel the load while it hangs.
  let reached;
  const atChunk = new Promise((r) => { reached = r; });
  let release;
  hold = { test: (p, s) => p === UNET && s === 4 * CHUNK, reached, released: new Promise((r) => { release = r; }) };
  await b.page.evaluate(() => {
    window.ac = new AbortController();
    window.pending = catchErr(loadTiny({ signal: ac.signal }));
  });
  await atChunk;
  const err = await b.page.evaluate(() => {
    ac.abort();
    return pending;
  });
  hold = null;
  release();
  assert.equal(err?.name, 'AbortError', JSON.stringify(err));
  const beforeAbort = take();
  const partial = (await b.page.evaluate(() => cache.entries())).find((e) => e.url.endsWith(UNET));
  assert.equal(partial.complete, false);
  assert.equal(partial.cachedChunks, 4);
  const doneBefore = new Set((await b.page.evaluate(() => cache.entries())).filter((e) => e.complete).map((e) => new URL(e.url).pathname.replace('/fixtures/tiny/', '')));

  await b.page.evaluate(() => loadTiny());
  const resumed = take();
  const unet = resumed.filter((r) => r.path === UNET).map((r) => r.start / CHUNK);
  console.log(`aborted at UNet chunk 4 (${beforeAbort.length} requests before, ${doneBefore.size} files complete); resumed with UNet chunks ${unet.join(',')} and ${resumed.length - unet.length} other requests`);
  assert.deepEqual(unet, [4, 5, 6, 7, 8]);
  for (const r of resumed) assert.ok(!doneBefore.has(r.path), `re-fetched ${r.path}, complete before the abort`);
  assert.ok((await b.page.evaluate(() => cache.entries())).every((e) => e.complete));
});

test('a corrupted or truncated cached chunk is detected and fetched again; the bytes served are the file\'s', async () => {
  const te = 'diffusers/text_encoder/model.safetensors';
  await b.page.evaluate(async ([unet, te, chunk]) => {
    const c = await caches.open('animatediff-models-v1');
    const keys = await c.keys();
    const find = (file, i) => keys.find((k) => k.url.includes(encodeURIComponent(file)) && k.url.endsWith(`&i=${i}`) && k.url.includes(`c=${chunk}&`));
    // Flip one byte of UNet chunk 2, keeping its headers (so only the hash can tell).
    const k2 = find(unet, 2);
    const r2 = await c.match(k2);
    const bytes = new Uint8Array(await r2.clone().arrayBuffer());
    bytes[1000] ^= 0x40;
    await c.put(k2, new Response(bytes, { headers: r2.headers }));
    // Cut text encoder chunk 1 short.
    const k1 = find(te, 1);
    const r1 = await c.match(k1);
    const short = (await r1.clone().arrayBuffer()).slice(0, 1000);
    await c.put(k1, new Response(short, { headers: r1.headers }));
  }, [UNET, te, CHUNK]);
  take();
  const r = await b.page.evaluate(() => loadTiny());
  const refetched = take().map((q) => `${q.path}@${q.start / CHUNK}`).sort();
  assert.deepEqual(refetched, [`${te}@1`, `${UNET}@2`].sort());
  assert.equal(r.cachedAll, false);
  // Repaired: no request now, and the cache serves exactly the file's bytes.
  const same = await b.page.evaluate(async ([unet, chunk]) => {
    const { cachedDownload } = await import('./cache.js');
    const url = new URL(`fixtures/tiny/${unet}`, location.href).href;
    const blob = await cachedDownload(url, { chunkBytes: chunk });
    const want = new Uint8Array(await (await fetch(url, { cache: 'no-store' })).arrayBuffer());
    const got = new Uint8Array(await blob.arrayBuffer());
    return got.length === want.length && got.every((x, i) => x === want[i]);
  }, [UNET, CHUNK]);
  assert.equal(same, true);
  // The only request: the plain fetch the bytes were compared with.
  assert.deepEqual(take().map((q) => [q.path, q.start]), [[UNET, 0]]);
});

test('a partial download of another version of the file (validator differs) is dropped and downloaded again', async () => {
  await b.page.evaluate(() => loadTiny());
  const r = await b.page.evaluate(async ([unet, chunk]) => {
    const c = await caches.open('animatediff-models-v1');
    const url = new URL(`fixtures/tiny/${unet}`, location.href).href;
    const key = (await c.keys()).find((k) => k.url.includes('/file?') && k.url.includes(encodeURIComponent(unet)));
    const m = await (await c.match(key)).json();
    // As if chunks 0–3 had been cached from an older version, and the rest never arrived.
    await c.put(key, new Response(JSON.stringify({ ...m, validator: 'Mon, 01 Jan 2024 00:00:00 GMT', complete: false })));
    for (const k of await c.keys()) {
      const i = Number(new URL(k.url).searchParams.get('i'));
      if (k.url.includes('/chunk?') && k.url.includes(encodeURIComponent(unet)) && i >= 4) await c.delete(k);
    }
    return { url, validator: m.validator };
  }, [UNET, CHUNK]);
  assert.ok(r.validator.endsWith('GMT'), `the server's Last-Modified is the validator: ${r.validator}`);
  take();
  await b.page.evaluate(() => loadTiny());
  const unet = take().filter((q) => q.path === UNET).map((q) => q.start / CHUNK);
  // Chunk 4 told the new validator; everything is fetched again from chunk 0.
  assert.deepEqual(unet, [4, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
  const e = (await b.page.evaluate(() => cache.entries())).find((x) => x.url === r.url);
  assert.equal(e.validator, r.validator);
  assert.equal(e.complete, true);
});

test('too little storage: QuotaError up front naming the file and the sizes; nothing of it cached', async () => {
  // Chromium's estimate() ignores CDP quota overrides, so the estimate is stubbed here.
  await b.page.evaluate(() => cache.clear());
  take();
  const r = await b.page.evaluate(async ([unet, chunk]) => {
    const { cachedDownload } = await import('./cache.js');
    const url = new URL(`fixtures/tiny/${unet}`, location.href).href;
    const err = await catchErr(cachedDownload(url, { chunkBytes: chunk, available: async () => 1_000_000 }));
    return { err, entries: await cache.entries() };
  }, [UNET, CHUNK]);
  console.log(`${r.err?.name}: ${r.err?.message}`);
  assert.equal(r.err?.name, 'QuotaError', JSON.stringify(r.err));
  assert.match(r.err.message, new RegExp(`cache \\S+${UNET.replace(/\./g, '\\.')}: it needs 2\\.3 MB more, 1\\.0 MB is available`));
  assert.deepEqual(r.entries, []);
  // Only the request that told the size.
  assert.deepEqual(take().map((q) => [q.path, q.start]), [[UNET, 0]]);
});

test('storage full while caching (quota enforced by the browser; where it hits depends on its accounting): QuotaError, the file is not served; it resumes once there is room', async () => {
  await b.page.evaluate(() => cache.clear());
  const cdp = await b.page.context().newCDPSession(b.page);
  const origin = new URL(b.url).origin;
  await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: 4_000_000 });
  let err;
  try {
    err = await b.page.evaluate(() => catchErr(loadTiny()));
  } finally {
    await cdp.send('Storage.overrideQuotaForOrigin', { origin });
  }
  console.log(`quota 4 MB: ${err?.name}: ${err?.message}`);
  assert.equal(err?.name, 'QuotaError', JSON.stringify(err));
  const file = /store more of (\S+) /.exec(err.message)?.[1];
  const entry = (await b.page.evaluate(() => cache.entries())).find((e) => e.url === file);
  assert.ok(!entry || !entry.complete, JSON.stringify(entry));
  take();
  const ok = await b.page.evaluate(() => loadTiny());
  assert.ok(ok.info.description.length >= 2);
  const refetched = take().filter((q) => q.path === new URL(file).pathname.replace('/fixtures/tiny/', '')).map((q) => q.start / CHUNK);
  console.log(`after the quota error, ${file.split('/').pop()} resumed with chunks ${refetched.join(',')} (${entry?.cachedChunks ?? 0} were cached)`);
  assert.equal(refetched[0], entry?.cachedChunks ?? 0);
  assert.ok((await b.page.evaluate(() => cache.entries())).every((e) => e.complete));
});

test('clear() empties the cache; clear([url]) removes one file', async () => {
  await b.page.evaluate(() => loadTiny());
  const r = await b.page.evaluate(async () => {
    const before = await cache.usage();
    const one = (await cache.entries())[0].url;
    await cache.clear([one]);
    const mid = await cache.entries();
    await cache.clear();
    const keys = await (await caches.open('animatediff-models-v1')).keys();
    return { before, one, mid: mid.map((e) => e.url), after: await cache.usage(), entries: await cache.entries(), keys: keys.length };
  });
  assert.ok(r.before.bytes > 5e6 && r.before.files >= 7, JSON.stringify(r.before));
  assert.equal(r.mid.length, r.before.files - 1);
  assert.ok(!r.mid.includes(r.one));
  assert.deepEqual({ bytes: r.after.bytes, files: r.after.files }, { bytes: 0, files: 0 });
  assert.deepEqual(r.entries, []);
  assert.equal(r.keys, 0);
  // And a load after clear() downloads again.
  take();
  await b.page.evaluate(() => loadTiny());
  assert.ok(take().length > 20);
});

test('page: Hugging Face presets list their sizes, check them with the server (HEAD), download through the cache; "Cached models … Clear"', async () => {
  // A local "mirror" (?hf=/hf/) with the presets' paths holding the tiny test files.
  const dir = mkdtempSync(join(tmpdir(), 'animatediff-hf-'));
  const files = {
    'Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly-fp16.safetensors': 'original/sd15_tiny_ldm_fp16.safetensors',
    'guoyww/animatediff/resolve/main/mm_sd_v15_v2.ckpt': 'original/mm_tiny_v2_fp16.ckpt',
  };
  for (const [path, src] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    symlinkSync(join(FIXTURES, src), join(dir, path));
  }
  const m = await openBrowser({ mounts: { '/fixtures/tiny/': FIXTURES, '/hf/': dir }, onRequest: (req, url) => {
    if (url.pathname.startsWith('/hf/')) mirror.push(`${req.method} ${url.pathname.slice(4)}`);
  } });
  const mirror = [];
  try {
    await m.page.goto(`${m.url}?hf=/hf/&preset=sd15-v2`);
    await m.page.waitForFunction(() => window.animatediffApp?.ready);
    await m.page.evaluate(async () => (await import('./animatediff.js')).cache.clear());
    const label = await m.page.locator('input[name=preset][value=sd15-v2]').locator('xpath=..').textContent();
    assert.match(label, /SD1\.5 \+ AnimateDiff v2 — 3\.95 GB download/);
    assert.ok(await m.page.locator('input[name=preset][value=sd15-lightning]').count());
    await m.page.waitForFunction(() => /server says/.test(document.getElementById('preset-check').textContent));
    const check = await m.page.textContent('#preset-check');
    console.log(`preset check: ${check}`);
    assert.match(check, /Stable Diffusion 1\.5 \(fp16\): the server says \d+\.\d MB, not the 2\.13 GB listed/);
    assert.match(check, /AnimateDiff v2 motion module: the server says \d+\.\d MB, not the 1\.82 GB listed/);
    assert.deepEqual(mirror.filter((r) => r.startsWith('HEAD')).sort(), Object.keys(files).map((f) => `HEAD ${f}`).sort());
    // Too little storage for the listed 3.95 GB (estimate stubbed on the page): refused before any download.
    await m.page.evaluate(() => {
      window.realEstimate = navigator.storage.estimate;
      navigator.storage.estimate = async () => ({ usage: 0, quota: 1e9 });
    });
    await m.page.click('#load');
    await m.page.waitForFunction(() => !document.getElementById('app-error').hidden);
    const quota = await m.page.textContent('#app-error');
    console.log(`preset with 1 GB of storage: ${quota}`);
    assert.match(quota, /these models need 3\.95 GB more browser storage, 1\.00 GB is available/);
    assert.ok(!mirror.some((r) => r.startsWith('GET')), mirror.join(', '));
    await m.page.waitForFunction(() => !document.getElementById('load').disabled);
    await m.page.evaluate(() => { navigator.storage.estimate = window.realEstimate; });
    await m.page.click('#load');
    await m.page.waitForFunction(() => !document.getElementById('load').disabled && /Loaded|Error|error|Cancelled/.test(
      document.getElementById('load-status').textContent + (document.getElementById('app-error').hidden ? '' : ' error')), null, { timeout: 120_000 });
    const status = await m.page.textContent('#load-status');
    const error = await m.page.evaluate(() => { const e = document.getElementById('app-error'); return e.hidden ? null : e.textContent; });
    console.log(`preset load: ${status}${error ? ` / error: ${error}` : ''}`);
    // The mirror holds the tiny test files, which need their configs (not SD1.5's): the load
    // stops at the text encoder's shape, after both files came through the cache.
    assert.match(error ?? '', /text encoder config/);
    // Both preset files were downloaded from the mirror (ranged GETs), and are now cached.
    for (const f of Object.keys(files)) assert.ok(mirror.includes(`GET ${f}`), `${f} not downloaded: ${mirror.join(', ')}`);
    await m.page.waitForFunction(() => /in 2 files/.test(document.getElementById('cache-size').textContent));
    await m.page.waitForFunction(() => document.querySelectorAll('#cache-list li').length === 2);
    const listed = await m.page.$$eval('#cache-list li', (lis) => lis.map((li) => li.textContent));
    assert.deepEqual(listed.map((t) => t.split(':')[0]).sort(), ['mm_sd_v15_v2.ckpt', 'v1-5-pruned-emaonly-fp16.safetensors']);
    // Remove one file, then clear the rest.
    await m.page.click('#cache-details summary');
    await m.page.click('#cache-list li:first-child button');
    await m.page.waitForFunction(() => /in 1 file\b/.test(document.getElementById('cache-size').textContent));
    assert.equal(await m.page.isDisabled('#cache-clear'), false);
    await m.page.click('#cache-clear');
    await m.page.waitForFunction(() => /^0\.0 MB in 0 files/.test(document.getElementById('cache-size').textContent));
  } finally {
    await m.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
