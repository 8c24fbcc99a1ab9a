// Browser hardening (headless Chromium, WebGPU on SwiftShader): the page under its strict
// Content-Security-Policy, the GPU device lost in the middle of a generation (the worker makes
// a new device and reloads the models by itself), cancels inside text encoding and the VAE
// decode, the GPU running out of memory at an allocation (a memory cap), hostile option objects
// thrown at the JS API, and 20 generations alternating models and sizes whose GPU memory, wasm
// heap and pipeline cache return to their baselines. Generations are 1 frame 64×64 or
// 64×128, 1–2 steps (SwiftShader runs ~2 GFLOP/s).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { installTinySources, openBrowser, WWW } from './harness.mjs';
import { CSP } from '../../scripts/serve.mjs';

const SMALL = { prompt: 'a corgi', negativePrompt: 'blurry', frames: 1, width: 64, height: 64, steps: 2, guidance: 7.5, seed: 3 };

let b;
let pageCsp;

before(async () => {
  b = await openBrowser();
  const resp = await b.page.goto(b.url);
  pageCsp = resp.headers()['content-security-policy'];
  await b.page.evaluate(installTinySources);
  await b.page.evaluate(async () => {
    window.violations = [];
    document.addEventListener('securitypolicyviolation', (e) => window.violations.push(`${e.violatedDirective}: ${e.blockedURI}`));
    const { createGenerator } = await import('./animatediff.js');
    // Activation arena chunks of 256 KiB: with the default 16 MiB one chunk holds every tiny
    // activation, and every plan (whatever its levers) peaks at the weights plus that chunk.
    window.g = await createGenerator({ arenaChunkBytes: 256 << 10 });
    window.baseline = (await g.memory()).liveBytes;
    await g.load({ model: tiny.model, motion: tiny.motion });
    window.loaded = (await g.memory()).liveBytes;
  });
});

after(async () => {
  await b?.page.evaluate(() => window.g?.dispose()).catch(() => {});
  await b?.close();
});

test('the page is served with the strict CSP, which is enforced, and generates under it', async () => {
  assert.equal(pageCsp, CSP);
  for (const d of ["script-src 'self' 'wasm-unsafe-eval'", "default-src 'self'", 'worker-src']) assert.ok(pageCsp.includes(d), d);
  // Only wasm compilation is allowed: no 'unsafe-eval', no 'unsafe-inline' anywhere.
  assert.ok(!pageCsp.includes("'unsafe-eval'") && !pageCsp.includes("'unsafe-inline'"), pageCsp);
  const r = await b.page.evaluate(async (opts) => {
    // An inline script is refused (script-src without 'unsafe-inline'): proof the policy is live.
    const s = document.createElement('script');
    s.textContent = 'window.inlineRan = true;';
    document.head.append(s);
    await new Promise((res) => setTimeout(res, 50));
    const before = violations.length;
    const out = await g.generate(opts);
    return { inlineRan: window.inlineRan === true, blocked: violations.slice(0, before), during: violations.slice(before), frames: out.frames.length };
  }, SMALL);
  assert.equal(r.inlineRan, false, 'an inline script ran: the CSP is not enforced');
  assert.ok(r.blocked.some((v) => v.startsWith('script-src')), JSON.stringify(r.blocked));
  assert.deepEqual(r.during, [], 'the engine (worker, wasm, downloads) violated the CSP');
  assert.equal(r.frames, 64 * 64 * 3);
});

test('no eval / new Function in the page, the worker or the wasm glue', () => {
  const files = [
    ...readdirSync(WWW).filter((f) => f.endsWith('.js')).map((f) => join(WWW, f)),
    ...readdirSync(join(WWW, 'pkg')).filter((f) => f.endsWith('.js')).map((f) => join(WWW, 'pkg', f)),
  ];
  assert.ok(files.length >= 5, files.join(', '));
  const bad = /(^|[^\w$.])eval\s*\(|new\s+Function\s*\(|setTimeout\s*\(\s*['"`]|setInterval\s*\(\s*['"`]/;
  const hits = [];
  for (const f of files) {
    readFileSync(f, 'utf8').split('\n').forEach((line, i) => {
      if (bad.test(line)) hits.push(`${f}:${i + 1}: ${line.trim().slice(0, 120)}`);
    });
  }
  assert.deepEqual(hits, []);
});

test('device lost mid-generation: DeviceLostError, then the worker has a new device and the next generate works', async () => {
  const r = await b.page.evaluate(async (opts) => {
    const t0 = performance.now();
    const before = await g.generate(opts);
    const phases = [];
    const err = await catchErr(g.generate({ ...opts, testLoseDeviceAtStep: 1, onProgress: (p) => phases.push(p.phase) }));
    const t1 = performance.now();
    const after = await g.generate(opts);
    let maxDiff = 0;
    for (let i = 0; i < after.frames.length; i++) maxDiff = Math.max(maxDiff, Math.abs(after.frames[i] - before.frames[i]));
    return { err, phases, maxDiff, ms: t1 - t0, memory: await g.memory(), loaded };
  }, SMALL);
  console.log(`device loss reported as ${r.err?.name} (${(r.ms / 1000).toFixed(1)} s incl. recovery): ${r.err?.message}`);
  assert.equal(r.err?.name, 'DeviceLostError', JSON.stringify(r.err));
  assert.match(r.err.message, /new GPU device was created and the models reloaded/);
  assert.ok(r.phases.includes('recover'), JSON.stringify(r.phases));
  assert.ok(r.maxDiff <= 1e-6, `the video after recovery differs from before by ${r.maxDiff}`);
  // The new device holds the reloaded models and nothing else.
  assert.equal(r.memory.liveBytes, r.loaded);
});

test('cancel inside text encoding and inside the VAE decode: AbortError saying where, memory back, next run identical', async () => {
  const r = await b.page.evaluate(async (opts) => {
    const ref = await g.generate(opts);
    const out = {};
    for (const at of ['encode', 'decode']) {
      const t0 = performance.now();
      out[at] = { err: await catchErr(g.generate({ ...opts, testCancelAt: at })), ms: performance.now() - t0, live: (await g.memory()).liveBytes };
    }
    const again = await g.generate(opts);
    let maxDiff = 0;
    for (let i = 0; i < again.frames.length; i++) maxDiff = Math.max(maxDiff, Math.abs(again.frames[i] - ref.frames[i]));
    return { out, maxDiff, loaded: (await g.memory()).liveBytes };
  }, SMALL);
  for (const [at, o] of Object.entries(r.out)) console.log(`cancel at ${at}: ${o.err?.name} after ${(o.ms / 1000).toFixed(2)} s: ${o.err?.message}`);
  assert.equal(r.out.encode.err?.name, 'AbortError', JSON.stringify(r.out.encode.err));
  assert.match(r.out.encode.err.message, /during text encoding/);
  assert.equal(r.out.decode.err?.name, 'AbortError', JSON.stringify(r.out.decode.err));
  assert.match(r.out.decode.err.message, /during the VAE decode/);
  for (const o of Object.values(r.out)) assert.equal(o.live, r.loaded, 'a cancelled run left GPU memory behind');
  assert.equal(r.maxDiff, 0, 'the run after the cancels differs');
});

test('out of GPU memory at an allocation: the run falls back to a smaller plan; below every plan, an OutOfMemoryError saying what fits', async () => {
  const r = await b.page.evaluate(async (base) => {
    // 2 frames: the ladder has a smaller plan (the VAE decodes 1 frame per call).
    const opts = { ...base, frames: 2, steps: 1 };
    const { createGenerator } = await import('./animatediff.js');
    // The cheapest plan's peak, as the engine reports it, then a GPU one byte smaller.
    const plans = [];
    const ref = await g.generate({ ...opts, onProgress: (p) => p.phase === 'plan' && plans.push(p) });
    const cap = plans[0].peakBytes - 1;
    const small = await createGenerator({ memoryCapBytes: cap, arenaChunkBytes: 256 << 10 });
    try {
      await small.load({ model: tiny.model, motion: tiny.motion });
      const seen = [];
      const out = await small.generate({ ...opts, onProgress: (p) => p.phase === 'plan' && seen.push(p) });
      let maxDiff = 0;
      for (let i = 0; i < out.frames.length; i++) maxDiff = Math.max(maxDiff, Math.abs(out.frames[i] - ref.frames[i]));
      const afterFit = await small.memory();
      // A video too big for this device with every lever pulled.
      const tooBig = await catchErr(small.generate({ ...opts, frames: 2, width: 128, height: 128 }));
      const again = await small.generate(opts);
      return { cap, first: plans[0], seen, maxDiff, peak: afterFit.peakBytes, tooBig, againOk: again.frames.length === ref.frames.length, live: (await small.memory()).liveBytes, loaded: afterFit.liveBytes };
    } finally {
      await small.dispose();
    }
  }, SMALL);
  console.log(`cap ${r.cap} B (cheapest plan ${r.first.peakBytes} B, ${r.first.levers}); plans: ${r.seen.map((p) => p.message).join(' | ')}`);
  console.log(`too big: ${r.tooBig?.name}: ${r.tooBig?.message}`);
  assert.ok(r.seen.length >= 2 && r.seen.at(-1).fallback, JSON.stringify(r.seen));
  assert.match(r.seen.at(-1).fallback, /out of memory/);
  assert.ok(r.seen.at(-1).peakBytes <= r.cap, JSON.stringify(r.seen.at(-1)));
  assert.equal(r.maxDiff, 0, 'the smaller plan changed the video');
  assert.equal(r.tooBig?.name, 'OutOfMemoryError', JSON.stringify(r.tooBig));
  assert.match(r.tooBig.message, /ran out of memory/);
  assert.match(r.tooBig.message, /fit/);
  assert.ok(r.againOk);
  assert.equal(r.live, r.loaded, 'GPU memory not back after the out-of-memory errors');
});

test('hostile and random option objects to generate / load / initialLatents / encodeGif: typed errors, never a crash; the engine keeps working', async () => {
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 100000);
  console.log(`JS API fuzz seed ${seed} (FUZZ_SEED=${seed} to repeat)`);
  const r = await b.page.evaluate(async ({ opts, seed }) => {
    let s = seed >>> 0;
    const rand = () => { s = (s + 0x6D2B79F5) >>> 0; let t = s; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
    const pick = (a) => a[Math.floor(rand() * a.length)];
    const trap = new Proxy({}, { get() { throw new Error('trap'); }, ownKeys() { throw new Error('trap'); } });
    const hostile = () => [undefined, null, 0, -1, 1.5, NaN, Infinity, -Infinity, 2 ** 53, 2 ** 64, -0, 1e308, 4097, 2049, '', 'x', '12', ' 7 ', 'NaN', '\u0000', '\ud800',
      'a'.repeat(20000), '0:a\n99999999999:b', 'down=1e39,mid=NaN', 'lcm', 'euler', 'slerp', 'trailing', 'original', 'pyramid', true, false, [], [1, 2], ['0:a', '1:b'], { 5: 'x' }, { '-1': 'x' },
      {}, { length: 1e9 }, new Float32Array(3), new Uint8Array(2), 10n, -1n, 2n ** 70n, () => 1, Symbol('s'), new Blob(['x']), new Date(0), /re/, new Map(), Object.create(null), trap];
    const keys = ['prompt', 'negativePrompt', 'frames', 'width', 'height', 'steps', 'guidance', 'seed', 'latents', 'scheduler', 'timestepSpacing', 'setAlphaToOne', 'motionNorm',
      'motionScale', 'motionEffect', 'clipSkip', 'precision', 'promptInterpolation', 'freeNoiseLength', 'freeNoiseStride', 'freeNoiseWeights', 'noiseType', 'contextLength',
      'contextStride', 'contextOverlap', 'closedLoop', 'contextFuse', 'onProgress', 'onPreview', 'signal', 'testCancelAt', '__proto__', 'constructor'];
    const names = {};
    const bad = [];
    const note = async (what, p) => {
      let e = null;
      try {
        await p;
      } catch (x) {
        e = x;
      }
      const name = e === null ? 'ok' : e?.name ?? typeof e;
      names[name] = (names[name] ?? 0) + 1;
      if (!['ok', 'InputError', 'LoadError', 'NetworkError', 'OutOfMemoryError'].includes(name)) bad.push(`${what}: ${name}: ${e?.message ?? e}`);
    };
    const call = (f) => { try { return f(); } catch (e) { return Promise.reject(e); } };
    const ref = await g.generate(opts);
    const t0 = performance.now();
    // Whole arguments of every kind.
    for (const v of hostile()) {
      await note(`generate(${String(typeof v)})`, call(() => g.generate(v)));
      await note(`initialLatents(${String(typeof v)})`, call(() => g.initialLatents(v)));
      await note(`encodeGif(${String(typeof v)})`, call(() => g.encodeGif(v, v)));
    }
    // Random option objects: the small valid request with 1–3 options replaced. Three in four
    // also carry a bad `precision` (read after every other option): all options are parsed,
    // and fewer by-chance valid requests run a whole generation (SwiftShader is slow).
    for (let i = 0; i < 60; i++) {
      const o = { ...opts, steps: 1, ...(i % 4 ? { precision: 'f64' } : {}) };
      const changed = [];
      for (let k = 1 + Math.floor(rand() * 3); k > 0; k--) {
        const key = pick(keys);
        const v = pick(hostile());
        Object.defineProperty(o, key, { value: v, enumerable: true, configurable: true, writable: true });
        changed.push(key);
      }
      await note(`generate(${changed.join(',')})`, call(() => g.generate(o)));
    }
    for (let i = 0; i < 20; i++) {
      const o = { seed: pick(hostile()), frames: pick([1, 2, pick(hostile())]), width: pick([64, pick(hostile())]), height: pick([64, pick(hostile())]) };
      await note('initialLatents(random)', call(() => g.initialLatents(o)));
      await note('encodeGif(random)', call(() => g.encodeGif({ frames: pick([ref.frames, pick(hostile())]), frameCount: pick([1, pick(hostile())]), height: pick([64, pick(hostile())]), width: pick([64, pick(hostile())]) }, { fps: pick([8, pick(hostile())]) })));
    }
    const genMs = performance.now() - t0;
    const mid = await g.generate(opts);
    // load() last: each call replaces (so first unloads) the models.
    for (let i = 0; i < 15; i++) {
      const sources = pick([pick(hostile()), { model: pick(hostile()), motion: pick(hostile()) }, { model: tiny.model, motion: pick(hostile()) }, { model: { 'unet/config.json': pick(hostile()) } }]);
      const options = pick([undefined, pick(hostile()), { precision: pick(hostile()), weights: pick(hostile()), memoryBudget: pick(hostile()), plan: pick(hostile()) }]);
      await note('load(random)', call(() => g.load(sources, options)));
    }
    await g.load({ model: tiny.model, motion: tiny.motion });
    const after = await g.generate(opts);
    const same = (a, b) => a.frames.length === b.frames.length && a.frames.every((v, i) => v === b.frames[i]);
    return { names, bad, genMs, ms: performance.now() - t0, same: same(mid, ref) && same(after, ref), first: names };
  }, { opts: SMALL, seed });
  console.log(`JS API fuzz: ${JSON.stringify(r.names)} in ${(r.ms / 1000).toFixed(1)} s (generate/initialLatents/encodeGif part ${(r.genMs / 1000).toFixed(1)} s)`);
  assert.deepEqual(r.bad, []);
  assert.ok(r.same, 'the engine gave another video after the hostile calls');
});

test('20 generations in a row alternating models (diffusers folder / LDM file + .ckpt) and sizes: GPU memory, wasm heap and pipelines back to their baselines', async () => {
  const r = await b.page.evaluate(async (opts) => {
    const models = [{ model: tiny.model, motion: tiny.motion }, tiny.single];
    const sizes = [[64, 64], [128, 64], [64, 128]];
    const rows = [];
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) {
      const [m, [width, height]] = [i % 2, sizes[i % 3]];
      await g.load(models[m]);
      const loaded = await g.memory();
      const out = await g.generate({ ...opts, width, height, steps: 1, seed: i % 6 });
      const after = await g.memory();
      let sum = 0;
      for (let j = 0; j < out.frames.length; j++) sum = (sum * 31 + Math.round(out.frames[j] * 65535)) % 2147483647;
      rows.push({ i, m, width, height, loaded: loaded.liveBytes, live: after.liveBytes, heapLoaded: loaded.wasmHeapBytes, heap: after.wasmHeapBytes, pipelines: after.pipelines, sum, ms: performance.now() - t0 });
    }
    return rows;
  }, SMALL);
  for (const x of r) console.log(`run ${x.i} (${x.m ? 'single file' : 'diffusers'}, ${x.width}×${x.height}): GPU ${x.live} B (loaded ${x.loaded}), wasm heap ${x.heap} B (after load ${x.heapLoaded}), ${x.pipelines} pipelines, ${(x.ms / 1000).toFixed(1)} s`);
  for (const x of r) {
    assert.equal(x.live, x.loaded, `run ${x.i}: GPU memory not back to the loaded baseline`);
    if (x.i >= 6) {
      const first = r[x.i % 6];
      assert.equal(x.sum, first.sum, `run ${x.i}: another video than run ${first.i} with the same model, size and seed`);
      // Every configuration has run once: nothing may grow any more.
      assert.equal(x.pipelines, r[5].pipelines, `run ${x.i}: the pipeline cache grew`);
      assert.ok(x.heap <= Math.max(...r.slice(0, 6).map((y) => y.heap)), `run ${x.i}: wasm heap ${x.heap} B grew past the warm-up's`);
      // Same model, same prompts: the same heap as its first run (what a run leaves behind is
      // the bounded prompt-embedding cache, never more).
      assert.equal(x.heap, r[x.m].heap, `run ${x.i}: wasm heap ${x.heap} B, ${x.heap - r[x.m].heap} B more than run ${x.m}`);
    }
  }
  assert.ok(new Set(r.map((x) => x.loaded)).size <= 2, 'the loaded baseline drifted');
});

test('no uncaught errors on the page', () => {
  assert.deepEqual(b.errors.filter((e) => !/Content Security Policy|Refused to execute inline script/i.test(e)), []);
});
