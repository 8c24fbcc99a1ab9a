// Browser end-to-end for the generation API (www/animatediff.js → Web Worker → wasm →
// WebGPU on SwiftShader): the bundled tiny model loaded from local URLs and from Blobs,
// frames compared with diffusers' AnimateDiffPipeline, repeat runs, cancellation, typed
// errors and GPU memory accounting.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { installTinySources, openBrowser, WWW } from './harness.mjs';

const PROMPT = 'a corgi running on the beach, golden hour, highly detailed';
const NEGATIVE = 'blurry, low quality';
// Small settings for everything but the reference run (SwiftShader decodes a 192×128 frame
// of the tiny VAE in ~14 s).
const SMALL = { prompt: 'a corgi', negativePrompt: 'blurry', frames: 2, width: 64, height: 64, steps: 2, guidance: 7.5 };

let b;

// Page-side helpers, installed once per page.
function installHelpers() {
  window.tiny.configs = Object.fromEntries(Object.entries(window.tiny.model).filter(([k]) => k.endsWith('.json')));
  // safetensors → { name: Float32Array | BigInt64Array } (f32, f16, i64).
  window.readSafetensors = async (url) => {
    const buf = await (await fetch(url)).arrayBuffer();
    const n = Number(new DataView(buf).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 8, n)));
    const out = {};
    const f16 = (h) => {
      const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023;
      return e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
    };
    for (const [k, v] of Object.entries(header)) {
      if (k === '__metadata__') continue;
      const [a, z] = v.data_offsets;
      const bytes = buf.slice(8 + n + a, 8 + n + z);
      if (v.dtype === 'F32') out[k] = new Float32Array(bytes);
      else if (v.dtype === 'I64') out[k] = new BigInt64Array(bytes);
      else if (v.dtype === 'F16') out[k] = Float32Array.from(new Uint16Array(bytes), f16);
    }
    return out;
  };
  window.maxAbs = (a, b) => {
    if (a.length !== b.length) return Infinity;
    let m = 0;
    for (let i = 0; i < a.length; i++) {
      const d = Math.abs(a[i] - b[i]);
      if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
    }
    return m;
  };
}

before(async () => {
  b = await openBrowser();
  await b.page.goto(b.url);
  await b.page.evaluate(installTinySources);
  await b.page.evaluate(installHelpers);
  const r = await b.page.evaluate(async () => {
    const { createGenerator } = await import('./animatediff.js');
    const t0 = performance.now();
    window.g = await createGenerator();
    const t1 = performance.now();
    window.baseline = (await window.g.memory()).liveBytes;
    const phases = {};
    window.loadInfo = await window.g.load({ model: tiny.model, motion: tiny.motion }, {
      onProgress: (p) => { phases[p.phase] = (phases[p.phase] ?? 0) + 1; window.lastLoad = p; },
    });
    return { createMs: t1 - t0, loadMs: performance.now() - t1, phases, info: window.g.info, loadInfo: window.loadInfo, last: window.lastLoad };
  });
  console.log(`create ${r.createMs.toFixed(0)} ms, load ${r.loadMs.toFixed(0)} ms; adapter ${r.info.adapterName} (${r.info.deviceType}), f16 ${r.info.shaderF16}`);
  console.log('load:', JSON.stringify(r.loadInfo), 'progress events:', JSON.stringify(r.phases));
  assert.ok(r.phases.download >= 4 && r.phases.open === 4 && r.phases.upload >= 2, JSON.stringify(r.phases));
  assert.equal(r.last.phase, 'upload');
  assert.equal(r.last.tensors, r.last.totalTensors);
  assert.deepEqual(r.loadInfo.description, ['model: diffusers folder', 'motion: V2, diffusers naming']);
  assert.equal(r.loadInfo.precision, 'f32');
  assert.equal(r.loadInfo.maxFrames, 32);
});

after(async () => {
  await b?.close();
});

test('frames match diffusers (tiny model from local URLs, fixture latents, 8 frames 192×128, 4 steps)', async () => {
  const r = await b.page.evaluate(async ([prompt, negativePrompt]) => {
    const ref = await readSafetensors('fixtures/tiny/reference/pipeline_diffusers.safetensors');
    const events = [];
    const t0 = performance.now();
    const out = await g.generate({
      prompt, negativePrompt, frames: 8, width: 192, height: 128, steps: 4, guidance: 7.5, latents: ref.init_latents,
      onProgress: (p) => events.push({ ...p, at: performance.now() - t0 }),
    });
    // Final latents reach |x| ≈ 70: compare relatively.
    let num = 0, den = 0;
    for (let i = 0; i < out.latents.length; i++) {
      num += (out.latents[i] - ref.final_latents[i]) ** 2;
      den += ref.final_latents[i] ** 2;
    }
    // RGBA agrees with the float frames (round half to even of x·255, alpha 255).
    let rgbaBad = 0;
    const px = out.width * out.height;
    for (let f = 0; f < out.frameCount; f++) {
      for (let i = 0; i < px; i += 97) {
        for (let c = 0; c < 3; c++) {
          const want = Math.round(Math.min(1, Math.max(0, out.frames[(f * px + i) * 3 + c])) * 255);
          if (Math.abs(out.rgba[f][i * 4 + c] - want) > 1) rgbaBad++;
        }
        if (out.rgba[f][i * 4 + 3] !== 255) rgbaBad++;
      }
    }
    return {
      ms: performance.now() - t0,
      frameErr: maxAbs(out.frames, ref.frames),
      latentsRelL2: Math.sqrt(num / den),
      timesteps: out.timesteps,
      refTimesteps: Array.from(ref.timesteps, Number),
      shape: [out.frameCount, out.height, out.width, out.frames.length, out.rgba.length, out.rgba[0].length],
      seed: out.seed,
      timings: out.timings,
      rgbaBad,
      events,
    };
  }, [PROMPT, NEGATIVE]);
  const steps = r.events.filter((e) => e.phase === 'step');
  console.log(`reference run: ${(r.ms / 1000).toFixed(1)} s (steps ${(r.timings.stepsMs / 1000).toFixed(1)} s, ` +
    `${r.timings.secondsPerStep.toFixed(2)} s/step; decode+readback ${((r.ms - r.timings.stepsMs) / 1000).toFixed(1)} s); ` +
    `frames max abs error ${r.frameErr.toExponential(2)}, final latents rel L2 ${r.latentsRelL2.toExponential(2)}`);
  assert.deepEqual(r.shape, [8, 128, 192, 8 * 128 * 192 * 3, 8, 128 * 192 * 4]);
  assert.deepEqual(r.timesteps, r.refTimesteps);
  assert.equal(r.seed, undefined);
  assert.ok(r.frameErr <= 5e-3, `frames differ by ${r.frameErr} > 5e-3`);
  assert.ok(r.latentsRelL2 <= 1e-3, `final latents rel L2 ${r.latentsRelL2}`);
  assert.equal(r.rgbaBad, 0);
  assert.deepEqual(r.events.map((e) => e.phase), ['encode', 'plan', 'step', 'step', 'step', 'step', 'decode']);
  const plan = r.events.find((e) => e.phase === 'plan');
  assert.ok(plan.peakBytes > 0 && plan.levers && !plan.fallback, JSON.stringify(plan));
  assert.deepEqual(steps.map((s) => [s.step, s.steps]), [[1, 4], [2, 4], [3, 4], [4, 4]]);
  assert.deepEqual(steps.map((s) => s.timestep), [999, 666, 333, 0]);
  assert.ok(steps.every((s) => s.secondsPerStep > 0 && s.etaSeconds >= 0));
  assert.equal(steps.at(-1).etaSeconds, 0);
});

test('what real GPUs run (kernels: "tiled": workgroup-tiled GEMM, flash + temporal attention) matches diffusers end to end', async () => {
  // SwiftShader is a CPU adapter, so "auto" takes the register kernels; this forces the family
  // every GPU gets, compiled by the browser's own WGSL compiler (Tint), through the whole pipeline.
  const r = await b.page.evaluate(async ([prompt, negativePrompt]) => {
    const ref = await readSafetensors('fixtures/tiny/reference/pipeline_diffusers.safetensors');
    const { createGenerator } = await import('./animatediff.js');
    const g2 = await createGenerator({ kernels: 'tiled' });
    try {
      await g2.load({ model: tiny.model, motion: tiny.motion });
      const t0 = performance.now();
      const out = await g2.generate({ prompt, negativePrompt, frames: 8, width: 192, height: 128, steps: 4, guidance: 7.5, latents: ref.init_latents });
      let num = 0, den = 0;
      for (let i = 0; i < out.latents.length; i++) {
        num += (out.latents[i] - ref.final_latents[i]) ** 2;
        den += ref.final_latents[i] ** 2;
      }
      return { ms: performance.now() - t0, tiled: g2.info.tiledKernels, frameErr: maxAbs(out.frames, ref.frames), latentsRelL2: Math.sqrt(num / den) };
    } finally {
      await g2.dispose();
    }
  }, [PROMPT, NEGATIVE]);
  console.log(`tiled kernels: ${(r.ms / 1000).toFixed(1)} s; frames max abs error ${r.frameErr.toExponential(2)}, final latents rel L2 ${r.latentsRelL2.toExponential(2)}`);
  assert.equal(r.tiled, true);
  assert.ok(r.frameErr <= 5e-3, `frames differ by ${r.frameErr} > 5e-3`);
  assert.ok(r.latentsRelL2 <= 1e-3, `final latents rel L2 ${r.latentsRelL2}`);
});

test('generate twice: the same seed gives the same frames; no seed gives a random one, reported', async () => {
  const r = await b.page.evaluate(async (small) => {
    const a = await g.generate({ ...small, seed: 7 });
    const c = await g.generate({ ...small, seed: '7' });
    const d = await g.generate({ ...small });
    window.seven = a.frames; // compared with the single-file model below
    return { same: maxAbs(a.frames, c.frames), seeds: [a.seed, c.seed, d.seed], diff: maxAbs(a.frames, d.frames), ms: a.timings.totalMs };
  }, SMALL);
  console.log(`small run (2 frames 64×64, 2 steps): ${(r.ms / 1000).toFixed(1)} s`);
  assert.equal(r.same, 0);
  assert.deepEqual(r.seeds.slice(0, 2), [7, 7]);
  assert.ok(Number.isSafeInteger(r.seeds[2]) && r.seeds[2] >= 0, String(r.seeds[2]));
  assert.ok(r.diff > 1e-3, 'a random seed gave the same frames as seed 7');
});

test('schedulers (Euler for Lightning, LCM) and motionScale; DDIM is the default', async () => {
  const r = await b.page.evaluate(async (small) => {
    const out = {};
    for (const scheduler of [undefined, 'ddim', 'euler', 'lcm']) {
      const v = await g.generate({ ...small, frames: 1, seed: 3, scheduler });
      out[scheduler ?? 'default'] = { timesteps: v.timesteps, inRange: v.frames.every((x) => x >= 0 && x <= 1), frames: v.frames };
    }
    // Over two frames (one frame's temporal softmax is 1 whatever the scale).
    const base = await g.generate({ ...small, seed: 3 });
    const scaled = await g.generate({ ...small, seed: 3, motionScale: 1.5 });
    const unchanged = await g.generate({ ...small, seed: 3, motionScale: 1 });
    out.motionScale = { changed: maxAbs(scaled.frames, base.frames), same: maxAbs(unchanged.frames, base.frames) };
    for (const v of Object.values(out)) delete v.frames;
    return out;
  }, SMALL);
  console.log(`timesteps: ${['default', 'ddim', 'euler', 'lcm'].map((k) => `${k} ${r[k].timesteps.join(',')}`).join('; ')}; ` +
    `motionScale 1.5 moves frames by ${r.motionScale.changed.toExponential(2)}`);
  assert.deepEqual(r.default, r.ddim);
  assert.deepEqual(r.ddim.timesteps, [999, 0]);
  assert.deepEqual(r.euler.timesteps, [999, 499]);
  assert.equal(r.lcm.timesteps.length, 2);
  for (const k of ['default', 'ddim', 'euler', 'lcm']) assert.equal(r[k].inRange, true);
  assert.equal(r.motionScale.same, 0);
  assert.ok(r.motionScale.changed > 1e-4, `motionScale 1.5 changed nothing (${r.motionScale.changed})`);
});

test('cancel mid-generation: AbortError between steps, and the generator keeps working', async () => {
  const r = await b.page.evaluate(async (small) => {
    const ac = new AbortController();
    const seen = [];
    const t0 = performance.now();
    const err = await catchErr(g.generate({
      ...small, frames: 1, steps: 50, seed: 1, signal: ac.signal,
      onProgress: (p) => { seen.push(p.step); if (p.phase === 'step' && p.step === 1) ac.abort(); },
    }));
    const cancelMs = performance.now() - t0;
    const pre = new AbortController();
    pre.abort();
    const early = await catchErr(g.generate({ ...small, signal: pre.signal }));
    const again = await g.generate({ ...small, seed: 7 });
    return { err, early, cancelMs, steps: seen.filter((s) => s !== undefined), ok: maxAbs(again.frames, window.seven) };
  }, SMALL);
  console.log(`cancelled after ${r.steps.length} step(s) of 50 in ${(r.cancelMs / 1000).toFixed(1)} s`);
  assert.equal(r.err?.name, 'AbortError', JSON.stringify(r.err));
  assert.match(r.err.message, /generation was cancelled/);
  assert.ok(r.steps.length <= 2, `ran ${r.steps.length} steps after the abort`);
  assert.equal(r.early?.name, 'AbortError');
  assert.equal(r.ok, 0);
});

test('LDM single file (fp16) + original .ckpt motion module from Blobs give the same video', async () => {
  const r = await b.page.evaluate(async (small) => {
    const file = async (path) => {
      const blob = await (await fetch(`fixtures/tiny/${path}`)).blob();
      return new File([blob], path.split('/').pop());
    };
    const { createGenerator } = await import('./animatediff.js');
    const g2 = await createGenerator();
    const progress = [];
    const info = await g2.load({
      model: await file('original/sd15_tiny_ldm_fp16.safetensors'),
      motion: await file('original/mm_tiny_v2_fp16.ckpt'),
      // Configs as picked files (a folder input gives relative paths under the folder's name).
      config: Object.fromEntries(await Promise.all(Object.keys(tiny.configs).map(async (k) => [`diffusers/${k}`, await file(`diffusers/${k}`)]))),
      motionConfig: await file('motion_adapter/config.json'),
    }, { onProgress: (p) => progress.push(p.phase) });
    const out = await g2.generate({ ...small, seed: 7, motionNorm: 'diffusers' });
    await g2.dispose();
    return { info, downloads: progress.filter((p) => p === 'download').length, err: maxAbs(out.frames, window.seven) };
  }, SMALL);
  console.log(`single file vs diffusers folder: max abs ${r.err.toExponential(2)}; ${JSON.stringify(r.info.description)}`);
  assert.equal(r.downloads, 0);
  assert.match(r.info.description.join(' '), /LDM single file/);
  assert.match(r.info.description.join(' '), /original AnimateDiff/);
  assert.ok(r.err <= 1e-3, `frames differ by ${r.err}`);
});

test('int8 / int4 weights quantized on load: less GPU memory, a valid video', async () => {
  const r = await b.page.evaluate(async (small) => {
    const { createGenerator } = await import('./animatediff.js');
    const out = {};
    window.seven ??= (await g.generate({ ...small, seed: 7 })).frames;
    for (const weights of ['q8', 'q4']) {
      const gq = await createGenerator();
      const info = await gq.load({ model: tiny.model, motion: tiny.motion }, { weights });
      const v = await gq.generate({ ...small, seed: 7 });
      await gq.dispose();
      let se = 0;
      for (let i = 0; i < v.frames.length; i++) se += (v.frames[i] - window.seven[i]) ** 2;
      out[weights] = {
        weights: info.weights, gpuBytes: info.gpuBytes, psnr: 10 * Math.log10(v.frames.length / se),
        inRange: v.frames.every((x) => x >= 0 && x <= 1),
      };
    }
    return { dense: loadInfo.gpuBytes, ...out };
  }, SMALL);
  // Random tiny weights under CFG 7.5 amplify quantization error: the quality bar lives in
  // tests/quant_quality.rs; here the browser path must run and give a valid video close to the
  // dense one. Measured 25.7 dB (q8) and 26.2 dB (q4: the policy keeps the sensitive layers
  // int8, and on this 2-frame 64² run the two are within noise of each other); a wrong
  // dequantization gives unrelated frames (≈ 10 dB).
  console.log(`GPU bytes: dense ${r.dense}, q8 ${r.q8.gpuBytes}, q4 ${r.q4.gpuBytes}; PSNR vs dense frames: q8 ${r.q8.psnr.toFixed(1)} dB, q4 ${r.q4.psnr.toFixed(1)} dB`);
  for (const w of ['q8', 'q4']) {
    assert.equal(r[w].weights, w);
    assert.equal(r[w].inRange, true);
    assert.ok(r[w].gpuBytes < r.dense, `${w}: ${r[w].gpuBytes} B ≥ dense ${r.dense} B`);
    assert.ok(Number.isFinite(r[w].psnr), `${w}: identical to dense?`);
    assert.ok(r[w].psnr > 20, `${w}: PSNR vs dense ${r[w].psnr.toFixed(1)} dB ≤ 20 dB`);
  }
  assert.ok(r.q4.gpuBytes <= r.q8.gpuBytes);
});

test('weights "auto": dense → q8 → q4 as the memory budget shrinks; generate() plans within it; a bad budget is an InputError', async () => {
  const r = await b.page.evaluate(async (small) => {
    const { createGenerator } = await import('./animatediff.js');
    const ga = await createGenerator();
    const load = (opts) => ga.load({ model: tiny.model, motion: tiny.motion }, { weights: 'auto', ...opts });
    const pick = ({ weights, weightsReason, plannedPeakBytes }) => ({ weights, weightsReason, plannedPeakBytes });
    const out = { huge: pick(await load({ memoryBudget: 1e15 })) };
    const p = out.huge.plannedPeakBytes;
    out.q8 = pick(await load({ memoryBudget: p.q8 }));
    out.mid = pick(await load({ memoryBudget: Math.floor((p.q4 + p.dense) / 2) }));
    out.tiny = pick(await load({ memoryBudget: p.q4 - 1 }));
    // generate() plans within the load's budget too: a small run fits (levers as needed);
    // under a budget below the weights nothing fits and it says what would.
    out.smallFrames = (await ga.generate({ ...small, seed: 1 })).frames.length;
    await load({ memoryBudget: 1000 });
    out.tinyGenerate = await catchErr(ga.generate(small));
    out.negative = await catchErr(load({ memoryBudget: -1 }));
    out.nan = await catchErr(load({ memoryBudget: NaN }));
    out.plain = pick(loadInfo);
    await ga.dispose();
    return out;
  }, SMALL);
  console.log(JSON.stringify(r, null, 1));
  const p = r.huge.plannedPeakBytes;
  assert.ok(p.q4 < p.q8 && p.q8 < p.dense, JSON.stringify(p));
  assert.equal(r.huge.weights, 'dense');
  assert.match(r.huge.weightsReason, /^16 frames 512×512: dense fits/);
  assert.equal(r.q8.weights, 'q8');
  assert.match(r.q8.weightsReason, /dense: planned peak .* MB > budget .* MB; q8 fits/);
  assert.notEqual(r.mid.weights, 'dense');
  assert.equal(r.tiny.weights, 'q4');
  assert.match(r.tiny.weightsReason, /none fits, using q4/);
  assert.equal(r.smallFrames, 2 * 64 * 64 * 3);
  assert.equal(r.tinyGenerate?.name, 'OutOfMemoryError', JSON.stringify(r.tinyGenerate));
  assert.match(r.tinyGenerate.message, /> budget/);
  for (const e of [r.negative, r.nan]) {
    assert.equal(e?.name, 'InputError');
    assert.match(e.message, /memoryBudget/);
  }
  assert.equal(r.plain.weights, 'dense');
  assert.equal(r.plain.weightsReason, 'requested');
});

test('bad inputs are rejected with typed, plain-words errors; the generator keeps working', async () => {
  const r = await b.page.evaluate(async (small) => {
    const { createGenerator } = await import('./animatediff.js');
    const errs = {
      width: await catchErr(g.generate({ ...small, width: 96 })),
      prompt: await catchErr(g.generate({ frames: 1 })),
      both: await catchErr(g.generate({ ...small, seed: 1, latents: new Float32Array(4) })),
      latents: await catchErr(g.generate({ ...small, latents: new Float32Array(5) })),
      spacing: await catchErr(g.generate({ ...small, timestepSpacing: 'karras' })),
      frames: await catchErr(g.generate({ ...small, frames: 40 })),
    };
    const g3 = await createGenerator();
    errs.missing = await catchErr(g3.load({ model: 'fixtures/tiny/nope.safetensors', motion: tiny.motion }));
    errs.garbage = await catchErr(g3.load({ model: new File([new Uint8Array(1000).fill(7)], 'broken.safetensors'), motion: tiny.motion }));
    errs.notLoaded = await catchErr(g3.generate(small));
    errs.noMotion = await catchErr(g3.load({ model: tiny.model }));
    await g3.dispose();
    errs.disposed = await catchErr(g3.generate(small));
    const ok = await g.generate({ ...small, seed: 7 });
    return { errs, ok: maxAbs(ok.frames, window.seven) };
  }, SMALL);
  const e = r.errs;
  console.log(Object.entries(e).map(([k, v]) => `${k}: ${v?.name}: ${v?.message}`).join('\n'));
  assert.equal(e.width?.name, 'InputError');
  assert.match(e.width.message, /width.*multiple of 64/);
  assert.match(e.prompt?.message ?? '', /prompt: is required/);
  assert.match(e.both?.message ?? '', /either seed or latents/);
  assert.match(e.latents?.message ?? '', /latents: has 5 values/);
  assert.match(e.spacing?.message ?? '', /"karras" is not one of/);
  assert.match(e.frames?.message ?? '', /exceed the motion module's 32/);
  assert.equal(e.missing?.name, 'NetworkError');
  assert.match(e.missing.message, /nope\.safetensors.*404.*not found/);
  assert.equal(e.garbage?.name, 'LoadError');
  assert.match(e.garbage.message, /broken\.safetensors/);
  assert.equal(e.notLoaded?.name, 'InvalidStateError');
  assert.match(e.noMotion?.message ?? '', /motion: is required/);
  assert.equal(e.disposed?.name, 'InvalidStateError');
  assert.equal(r.ok, 0);
});

test('GPU memory: temporaries are freed after generate, unload returns to the baseline, dispose ends the worker', async () => {
  const r = await b.page.evaluate(async (small) => {
    const loaded = (await g.memory()).liveBytes;
    await g.generate({ ...small, seed: 3 });
    const afterGen = await g.memory();
    await g.unload();
    const unloaded = (await g.memory()).liveBytes;
    const notLoaded = await catchErr(g.generate(small));
    await g.dispose();
    const disposed = await catchErr(g.memory());
    return { baseline: window.baseline, loaded, afterGen, unloaded, notLoaded, disposed };
  }, SMALL);
  console.log(`GPU memory: baseline ${r.baseline} B, loaded ${r.loaded} B, after generate ${r.afterGen.liveBytes} B (peak ${r.afterGen.peakBytes} B), unloaded ${r.unloaded} B`);
  assert.ok(r.loaded > r.baseline + 5e6, 'the models should hold several MB');
  assert.equal(r.afterGen.liveBytes, r.loaded);
  assert.ok(r.afterGen.peakBytes > r.loaded);
  assert.equal(r.unloaded, r.baseline);
  assert.equal(r.notLoaded?.name, 'InvalidStateError');
  assert.equal(r.disposed?.name, 'InvalidStateError');
});

test('downloads go in HTTP Range chunks and reassemble byte for byte', async () => {
  const snippets = join(WWW, 'pkg', 'snippets');
  const [dir] = readdirSync(snippets);
  const r = await b.page.evaluate(async (module) => {
    const { downloadBlob } = await import(module);
    const url = new URL('fixtures/tiny/diffusers/unet/diffusion_pytorch_model.safetensors', location.href).href;
    const calls = [];
    const blob = await downloadBlob(url, 300_000, undefined, (loaded, total) => calls.push([loaded, total]));
    const whole = new Uint8Array(await (await fetch(url)).arrayBuffer());
    const got = new Uint8Array(await blob.arrayBuffer());
    let same = got.length === whole.length;
    for (let i = 0; same && i < got.length; i++) same = got[i] === whole[i];
    return { calls, size: blob.size, same };
  }, `./pkg/snippets/${dir}/src/web/download.js`);
  assert.equal(r.same, true);
  assert.equal(r.size, 2264168);
  assert.equal(r.calls.length, Math.ceil(2264168 / 300_000));
  assert.ok(r.calls.every(([, total]) => total === 2264168));
  assert.deepEqual(r.calls.at(-1), [2264168, 2264168]);
});

test('no uncaught errors or panics on the page', () => {
  // The one expected console error: the 404 of the missing-file check.
  const expected = /Failed to load resource: the server responded with a status of 404/;
  assert.deepEqual(b.errors.filter((e) => !expected.test(e)), []);
  assert.ok(b.errors.length <= 1, b.errors.join('\n'));
});
