// animatediff-wgpu's JS API: AnimateDiff text → video on the user's GPU. The engine (wasm +
// WebGPU) runs in a Web Worker (worker.js next to this file); this module talks to it.
//
//   import { createGenerator } from './animatediff.js';
//   const g = await createGenerator();
//   await g.load({ model: 'https://…/sd15.safetensors', motion: 'https://…/mm_sd_v15_v2.ckpt' },
//                { onProgress: (p) => console.log(p) });
//   const r = await g.generate({ prompt: 'a corgi on the beach', frames: 16, steps: 25, seed: 42,
//                                onProgress: (p) => console.log(p.step, p.steps), signal });
//   // r.frames: Float32Array [F, H, W, 3] in [0, 1]; r.rgba: one Uint8ClampedArray per frame
//   const gif = await g.encodeGif(r, { fps: 8 }); // Blob (image/gif)
//   await g.dispose();
//
// Calls on one generator run one after another (a second generate() waits for the first).
// Errors are Error objects with a `name` (AbortError, InputError, LoadError, NetworkError,
// QuotaError, OutOfMemoryError, DeviceLostError, NotSupportedError, InvalidStateError,
// EngineCrashedError) and a message in plain words.
//
// Downloaded model files are kept in the browser's Cache API (www/cache.js): a second load of
// the same URLs downloads nothing, an interrupted one resumes. `cache` manages it:
//   import { cache } from './animatediff.js';
//   await cache.usage();   // { bytes, files, available }
//   await cache.entries(); // one entry per file: { url, size, cachedBytes, complete, … }
//   await cache.clear();   // everything (or cache.clear([url, …]))
import { usage as cacheUsage, entries as cacheEntries, clear as cacheClear, persist as cachePersist } from './cache.js';

/** The model cache (Cache API), usable without a generator. */
export const cache = { usage: cacheUsage, entries: cacheEntries, clear: cacheClear, persist: cachePersist };

// Whether a sources object names any URL (then the cache is used: ask for persistence).
const hasURL = (v) => typeof v === 'string' || (v != null && typeof v === 'object' && !(v instanceof Blob) && Object.values(v).some(hasURL));

function namedError(name, message) {
  const e = new Error(message);
  e.name = name;
  return e;
}

function abortError(what) {
  return namedError('AbortError', `${what} was cancelled`);
}

// An options argument: undefined/null mean none; anything else must be an object.
function optionsOf(v, what) {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw namedError('InputError', `invalid ${what}: must be an object, got ${Array.isArray(v) ? 'an array' : typeof v}`);
  return v;
}

// API methods return promises and reject with typed errors: never throw synchronously, and
// an option object whose getters throw is an InputError, not an exception at the caller.
function promising(fn) {
  return (...args) => {
    try {
      return Promise.resolve(fn(...args));
    } catch (e) {
      return Promise.reject(e?.name === 'InputError' ? e : namedError('InputError', `invalid options: reading them failed (${e?.message ?? e})`));
    }
  };
}

// Resolve relative URLs against the page (the worker would resolve them against itself).
function resolveSources(v, base) {
  if (typeof v === 'string') return new URL(v, base).href;
  if (v instanceof Blob || v == null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map((x) => resolveSources(x, base));
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, resolveSources(x, base)]));
}

const baseURL = () => (typeof document !== 'undefined' ? document.baseURI : self.location.href);

/**
 * Start the engine worker and a WebGPU device.
 * @param {{ allowF16?: boolean, maxBindingBytes?: number, kernels?: 'auto'|'registers'|'tiled', memoryCapBytes?: number, arena?: boolean, arenaChunkBytes?: number, workerURL?: string|URL }} [opts]
 */
export async function createGenerator(opts = {}) {
  if (typeof navigator === 'undefined' || !('gpu' in navigator)) {
    throw namedError('NotSupportedError', 'this browser does not support WebGPU (navigator.gpu is missing). ' +
      'Use Chrome/Edge 113+, Firefox 141+ (Windows) or Safari 26+, over https or localhost (in Firefox/Linux enable dom.webgpu.enabled).');
  }
  const { workerURL, ...gpuOpts } = opts;
  const worker = new Worker(workerURL ?? new URL('./worker.js', import.meta.url), { type: 'module', name: 'animatediff' });
  const pending = new Map(); // id → { resolve, reject, onProgress }
  let nextId = 1;
  let dead = null;
  let queue = Promise.resolve();

  const fail = (err) => {
    dead = err;
    for (const p of pending.values()) p.reject(err);
    pending.clear();
    worker.terminate();
  };
  worker.addEventListener('error', (ev) => {
    ev.preventDefault?.();
    fail(namedError('EngineCrashedError', `the engine worker failed: ${ev.message || 'it could not be started (blocked by a Content-Security-Policy, or a missing pkg/ build?)'}`));
  });
  worker.addEventListener('messageerror', () => fail(namedError('EngineCrashedError', 'the engine worker sent an unreadable message')));
  worker.addEventListener('message', (ev) => {
    const { id, progress, result, error } = ev.data ?? {};
    const p = pending.get(id);
    if (!p) return;
    if (progress !== undefined) {
      try {
        p.onProgress?.(progress);
      } catch (e) {
        console.warn('animatediff: onProgress threw', e);
      }
      return;
    }
    pending.delete(id);
    if (error) {
      const e = namedError(error.name, error.message);
      p.reject(e);
      if (error.fatal) fail(e);
    } else {
      p.resolve(result);
    }
  });

  // One request; `signal` aborts it (the worker stops at the next safe point).
  function call(type, args, { onProgress, signal, transfer = [] } = {}) {
    if (dead) return Promise.reject(dead);
    if (signal?.aborted) return Promise.reject(abortError(type === 'load' ? 'loading' : 'generation'));
    const id = nextId++;
    return new Promise((resolve, reject) => {
      const onAbort = () => worker.postMessage({ type: 'cancel', args: { id } });
      signal?.addEventListener('abort', onAbort, { once: true });
      const done = (f) => (v) => {
        signal?.removeEventListener('abort', onAbort);
        f(v);
      };
      pending.set(id, { resolve: done(resolve), reject: done(reject), onProgress });
      try {
        worker.postMessage({ id, type, args }, transfer);
      } catch (e) {
        // Not structured-cloneable (a function, a symbol, a DOM object…): say which call.
        pending.delete(id);
        done(reject)(namedError('InputError', `invalid ${type} options: ${e?.message ?? e} (options are plain data: numbers, strings, arrays, typed arrays, Blobs)`));
      }
    });
  }

  // Serialise the calls that use the GPU.
  function serial(fn) {
    const run = queue.then(fn, fn);
    queue = run.then(() => {}, () => {});
    return run;
  }

  const { info } = await call('create', gpuOpts).catch((e) => {
    worker.terminate();
    throw e;
  });

  return {
    /** Adapter name, shader-f16, limits. */
    info,
    /**
     * Load models (replaces loaded ones). Sources: URL strings, Blobs/Files, arrays of them
     * (shards), or objects mapping a diffusers folder's relative paths to them.
     */
    load: promising((sources, options) => {
      const { onProgress, signal, precision, weights, memoryBudget, plan, cache: useCache = true, chunkBytes } = optionsOf(options, 'load options');
      // persist() only exists on the main thread; without it the browser may evict the cache
      // under storage pressure. Best effort: the load goes on either way.
      // Read the sources now: a throwing getter is this call's InputError, not a later one.
      const resolved = resolveSources(sources, baseURL());
      if (useCache && hasURL(resolved)) cachePersist();
      return serial(() => call('load', { sources: resolved, options: { precision, weights, memoryBudget, plan, cache: useCache, chunkBytes } }, { onProgress, signal }));
    }),
    /**
     * The initial latents generate({ seed, frames, width, height }) starts from: torch.randn
     * with that seed (Float32Array [1, 4, frames, height/8, width/8]), bit for bit as torch.
     */
    initialLatents: promising((options) => {
      const { seed, frames = 16, width = 512, height = 512 } = optionsOf(options, 'initialLatents options');
      return call('initialLatents', { seed, frames, height, width });
    }),
    /** Generate a video; options are the CLI flags in camelCase (see GenerateOptions). */
    generate: promising((options) => {
      const { onProgress, onPreview, signal, ...rest } = optionsOf(options, 'generate options');
      for (const [k, f] of [['onProgress', onProgress], ['onPreview', onPreview]]) {
        if (f != null && typeof f !== 'function') throw namedError('InputError', `invalid ${k}: must be a function`);
      }
      if (signal != null && !(signal instanceof AbortSignal)) throw namedError('InputError', 'invalid signal: must be an AbortSignal');
      // The live preview travels as progress messages (phase "preview"); only asked for when
      // wanted, since it reads the latents back every step.
      const route = onPreview ? (p) => (p?.phase === 'preview' ? onPreview(p) : onProgress?.(p)) : onProgress;
      return serial(() => call('generate', { ...rest, preview: !!onPreview }, { onProgress: route, signal }));
    }),
    /** A looping GIF of a result (or of frames given as { frames, frameCount, height, width }). */
    encodeGif: promising((result, options) => {
      const { frames, frameCount, height, width } = optionsOf(result, 'encodeGif result');
      const { fps = 8 } = optionsOf(options, 'encodeGif options');
      return call('gif', { frames, frameCount, height, width, fps }).then((bytes) => new Blob([bytes], { type: 'image/gif' }));
    }),
    /** GPU memory held by the generator's buffers: { liveBytes, peakBytes, liveBuffers }. */
    memory() {
      return call('memory');
    },
    /** Free the models' GPU memory (the device stays; load() again to continue). */
    unload() {
      return serial(() => call('unload'));
    },
    /** Free the GPU device and stop the worker. */
    async dispose() {
      if (dead) return;
      // Cancel whatever is running, then tear down.
      for (const id of pending.keys()) worker.postMessage({ type: 'cancel', args: { id } });
      try {
        await call('dispose');
      } finally {
        fail(namedError('InvalidStateError', 'the generator was disposed'));
      }
    },
  };
}
