// The engine's Web Worker: hosts the wasm module and one Generator, so model loading and GPU
// work never block the page. Spoken to by animatediff.js with messages
//   { id, type, args }  →  { id, progress } … then { id, result } | { id, error: { name, message } }
// and { type: 'cancel', args: { id } } to abort a running job (at its next cancel point: text
// encoding, a denoising step, a block of the VAE decode).
import init, { Generator, encodeGif, initialLatents } from './pkg/animatediff_wgpu.js';
import { cachedDownload } from './cache.js';

const ready = init();
let generator = null;
let crashed = null;
// What made the current generator, so a lost GPU device can be replaced without the page's
// help: the create options and the last successful load (its sources: URLs, Blobs/Files).
let createArgs = {};
let loadArgs = null;
const jobs = new Map(); // id → AbortController

function errorOf(e) {
  if (e instanceof WebAssembly.RuntimeError) {
    // A trap (a panic aborts): the module's state is gone. Every later call fails with this.
    crashed = `the engine crashed (${e.message}); reload the page. Please report this with the settings you used.`;
    return { name: 'EngineCrashedError', message: crashed, fatal: true };
  }
  const out = { name: e?.name ?? 'Error', message: e?.message ?? String(e) };
  if (typeof e?.recovered === 'boolean') out.recovered = e.recovered;
  return out;
}

function need() {
  if (!generator) {
    const e = new Error('the generator is not created (or was disposed)');
    e.name = 'InvalidStateError';
    throw e;
  }
  return generator;
}

// The device was lost (driver reset, GPU out of memory, or the test hook): make a new
// generator on a new device and reload the last models, so the next generate() works without
// reloading the page. Returns the error to report for the failed call (a DeviceLostError).
async function recoverDevice(cause, progress) {
  const old = generator;
  generator = null;
  try {
    old.free();
  } catch { /* already gone */ }
  const e = new Error(cause?.message ?? String(cause));
  e.name = 'DeviceLostError';
  try {
    progress({ phase: 'recover' });
    generator = await Generator.create(createArgs);
    if (loadArgs) await handlers.load(loadArgs, progress, undefined);
    e.message += ' — a new GPU device was created and the models reloaded: generate again';
    e.recovered = true;
  } catch (r) {
    e.message += ` — recreating the GPU device failed (${r?.message ?? r}): create a new generator`;
    e.recovered = false;
  }
  return e;
}

const handlers = {
  async create(args) {
    if (!('gpu' in navigator)) {
      const e = new Error('this browser does not expose WebGPU to workers (navigator.gpu is missing). ' +
        'Use Chrome/Edge 113+, Firefox 141+ (Windows) or Safari 26+, over https or localhost.');
      e.name = 'NotSupportedError';
      throw e;
    }
    generator?.dispose();
    generator = await Generator.create(args ?? {});
    createArgs = args ?? {};
    loadArgs = null;
    return { info: generator.info(), memory: generator.memory() };
  },
  async load(args, progress, signal) {
    // URLs go through the model cache (www/cache.js) unless `cache: false`.
    const { cache = true, chunkBytes, ...options } = args.options ?? {};
    const download = cache
      ? (url, chunk, sig, onProgress) => cachedDownload(url, { chunkBytes: chunkBytes ?? chunk, signal: sig, onProgress })
      : undefined;
    const info = await need().load(args.sources, { ...options, onProgress: progress, signal, download });
    loadArgs = args;
    return info;
  },
  async initialLatents({ seed, frames, height, width }) {
    for (const [k, v] of [['frames', frames], ['height', height], ['width', width]]) {
      // The wasm glue would wrap any number into a u32 and throw a TypeError on a BigInt.
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw Object.assign(new Error(`invalid ${k}: must be a whole number, got ${String(v).slice(0, 40)}`), { name: 'InputError' });
    }
    const latents = initialLatents(seed, frames, height, width);
    return [latents, [latents.buffer]];
  },
  async generate(args, progress, signal) {
    const { preview, testLoseDeviceAtStep, testCancelAt, ...rest } = args;
    // Small (1/8 size) images: copied with the progress message.
    const onPreview = preview ? (p) => progress({ phase: 'preview', ...p }) : undefined;
    const g = need();
    // Test hooks: destroy the device after step N, as a driver reset would; cancel once the
    // progress phase `testCancelAt` ("encode", "decode") has been reported, at the engine's
    // next wait (a macrotask: inside text encoding / the VAE decode), without the round trip
    // through the page.
    const local = new AbortController();
    signal.addEventListener('abort', () => local.abort(), { once: true });
    const onProgress = testLoseDeviceAtStep || testCancelAt
      ? (p) => {
        progress(p);
        if (p.phase === 'step' && p.step === testLoseDeviceAtStep) g.loseDeviceForTest();
        if (p.phase === testCancelAt) setTimeout(() => local.abort(), 0);
      }
      : progress;
    try {
      const r = await g.generate({ ...rest, onProgress, onPreview, signal: local.signal });
      return [r, [r.frames.buffer, r.latents.buffer, ...r.rgba.map((f) => f.buffer)]];
    } catch (e) {
      if (g === generator && g.deviceLost) throw await recoverDevice(e, progress);
      throw e;
    }
  },
  async gif({ frames, frameCount, height, width, fps }) {
    // Checked here: the wasm glue would read any array-like (a forged `length` of 10^10).
    const bad = (what) => Object.assign(new Error(`invalid ${what}`), { name: 'InputError' });
    if (!(frames instanceof Float32Array)) throw bad('frames: must be a Float32Array [frames, height, width, 3] (a generate() result)');
    for (const [k, v] of [['frameCount', frameCount], ['height', height], ['width', width]]) {
      if (!Number.isInteger(v) || v < 1 || v > 65535) throw bad(`${k}: must be a whole number from 1 to 65535, got ${String(v).slice(0, 40)}`);
    }
    if (typeof fps !== 'number' || !Number.isFinite(fps) || fps <= 0) throw bad(`fps: must be a positive number, got ${String(fps).slice(0, 40)}`);
    const bytes = encodeGif(frames, frameCount, height, width, fps);
    return [bytes, [bytes.buffer]];
  },
  async memory() {
    return need().memory();
  },
  async unload() {
    loadArgs = null; // nothing to reload after a device loss
    generator?.unload();
    return generator ? generator.memory() : null;
  },
  async dispose() {
    const g = generator;
    generator = null;
    loadArgs = null;
    if (g) {
      g.dispose();
      g.free();
    }
    return null;
  },
};

self.addEventListener('message', async (ev) => {
  const { id, type, args } = ev.data ?? {};
  if (type === 'cancel') {
    jobs.get(args?.id)?.abort();
    return;
  }
  const controller = new AbortController();
  jobs.set(id, controller);
  const progress = (p) => self.postMessage({ id, progress: p });
  try {
    await ready;
    if (crashed) throw Object.assign(new Error(crashed), { name: 'EngineCrashedError' });
    const handler = handlers[type];
    if (!handler) throw new Error(`unknown request ${type}`);
    const out = await handler(args, progress, controller.signal);
    const [result, transfer] = Array.isArray(out) ? out : [out, []];
    self.postMessage({ id, result }, transfer);
  } catch (e) {
    self.postMessage({ id, error: errorOf(e) });
  } finally {
    jobs.delete(id);
  }
});
