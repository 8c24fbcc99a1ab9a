// The JS API's model features in headless Chromium (SwiftShader): LoRAs given to load()
// (kohya + PEFT image LoRAs and an original-format MotionLoRA, from URLs and a Blob) give
// diffusers' frames (scripts/make_lora_fixtures.py), and a seed gives torch.randn's initial
// latents bit for bit (tests/fixtures/randn_cases.*, recorded with torch).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { openBrowser } from './harness.mjs';

const FIXTURES = new URL('../fixtures/', import.meta.url);

// safetensors → { name: { dtype, shape, data: Float32Array (f32/f16) | BigInt64Array } }.
function readSafetensors(url) {
  const buf = readFileSync(url);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const f16 = (h) => {
    const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023;
    return e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
  };
  const out = {};
  for (const [k, v] of Object.entries(header)) {
    if (k === '__metadata__') continue;
    const [a, z] = v.data_offsets;
    const bytes = Uint8Array.prototype.slice.call(buf, 8 + n + a, 8 + n + z).buffer;
    const data = v.dtype === 'F32' ? new Float32Array(bytes)
      : v.dtype === 'F16' ? Float32Array.from(new Uint16Array(bytes), f16)
      : v.dtype === 'I64' ? new BigInt64Array(bytes) : null;
    out[k] = { dtype: v.dtype, shape: v.shape, data };
  }
  return out;
}

let b;

before(async () => {
  b = await openBrowser();
  await b.page.goto(b.url);
  await b.page.evaluate(async () => {
    const { createGenerator } = await import('./animatediff.js');
    window.g = await createGenerator();
  });
});

after(async () => {
  await b?.page.evaluate(() => window.g?.dispose()).catch(() => {});
  await b?.close();
});

test('seeds: initialLatents(seed) equals torch.randn bit for bit (the latents generate({ seed }) starts from)', async () => {
  const cases = JSON.parse(readFileSync(new URL('randn_cases.json', FIXTURES), 'utf8')).cases;
  const tensors = readSafetensors(new URL('randn_cases.safetensors', FIXTURES));
  // The video-shaped cases: [1, 4, frames, height/8, width/8].
  const video = cases.filter((c) => c.shape.length === 5 && c.shape[0] === 1 && c.shape[1] === 4);
  assert.ok(video.length >= 3, JSON.stringify(cases.map((c) => c.name)));
  for (const c of video) {
    const [, , frames, h, w] = c.shape;
    const got = await b.page.evaluate(async ([seed, frames, height, width]) => Array.from(await g.initialLatents({ seed, frames, height, width })),
      [c.seed, frames, h * 8, w * 8]);
    const want = tensors[c.name].data;
    assert.equal(got.length, want.length, c.name);
    const gotBits = new Uint32Array(Float32Array.from(got).buffer);
    const wantBits = new Uint32Array(want.buffer, want.byteOffset, want.length);
    let diff = 0;
    for (let i = 0; i < gotBits.length; i++) if (gotBits[i] !== wantBits[i]) diff++;
    console.log(`${c.name}: ${got.length} values, ${diff} differ from torch`);
    assert.equal(diff, 0, `${c.name}: ${diff} values differ`);
  }
  // The seed as a string or BigInt names the same generator; a bad one is an InputError.
  const r = await b.page.evaluate(async () => {
    const a = await g.initialLatents({ seed: 42, frames: 1, width: 64, height: 64 });
    const s = await g.initialLatents({ seed: '42', frames: 1, width: 64, height: 64 });
    const n = await g.initialLatents({ seed: 42n, frames: 1, width: 64, height: 64 });
    let err = null;
    try {
      await g.initialLatents({ seed: -1, frames: 1, width: 64, height: 64 });
    } catch (e) {
      err = e.name;
    }
    return { same: a.every((x, i) => x === s[i] && x === n[i]), err };
  });
  assert.deepEqual(r, { same: true, err: 'InputError' });
});

test('LoRAs in load(): kohya @0.8 + PEFT @0.6 (URLs) + MotionLoRA @1.0 (a Blob) give diffusers\' frames', async () => {
  const ref = readSafetensors(new URL('tiny/lora/reference.safetensors', FIXTURES));
  const init = Array.from(ref['pipeline.init_latents'].data);
  const r = await b.page.evaluate(async (init) => {
    const base = 'fixtures/tiny/';
    const files = ['model_index.json', 'unet/config.json', 'unet/diffusion_pytorch_model.safetensors', 'vae/config.json',
      'vae/diffusion_pytorch_model.safetensors', 'text_encoder/config.json', 'text_encoder/model.safetensors', 'scheduler/scheduler_config.json'];
    const model = Object.fromEntries(files.map((f) => [f, `${base}diffusers/${f}`]));
    const motion = { 'config.json': `${base}motion_adapter/config.json`, 'diffusion_pytorch_model.safetensors': `${base}motion_adapter/diffusion_pytorch_model.safetensors` };
    const motionLoraBlob = await (await fetch(`${base}lora/motion_lora_orig.ckpt`)).blob();
    const t0 = performance.now();
    const info = await g.load({
      model, motion,
      lora: [{ source: `${base}lora/kohya_unet_te.safetensors`, weight: 0.8 }, { source: `${base}lora/peft_unet_te.safetensors`, weight: 0.6 }],
      motionLora: [{ source: new File([motionLoraBlob], 'motion_lora_orig.ckpt'), weight: 1.0 }],
    }, { cache: false });
    const t1 = performance.now();
    const out = await g.generate({
      prompt: 'a corgi running on the beach, golden hour, highly detailed', negativePrompt: 'blurry, low quality',
      frames: 8, width: 64, height: 64, steps: 4, guidance: 7.5, latents: Float32Array.from(init),
    });
    // A bad LoRA entry is an InputError naming it.
    let bad = null;
    try {
      await g.load({ model, motion, lora: [{ weight: 1 }] });
    } catch (e) {
      bad = { name: e.name, message: e.message };
    }
    return { description: info.description, loadMs: t1 - t0, genMs: performance.now() - t1, frames: Array.from(out.frames), latents: Array.from(out.latents), timesteps: out.timesteps, bad };
  }, init);
  let frameErr = 0;
  const wantFrames = ref['pipeline.frames'].data;
  assert.equal(r.frames.length, wantFrames.length);
  for (let i = 0; i < wantFrames.length; i++) frameErr = Math.max(frameErr, Math.abs(r.frames[i] - wantFrames[i]));
  const wantLatents = ref['pipeline.final_latents'].data;
  let num = 0, den = 0;
  for (let i = 0; i < wantLatents.length; i++) {
    num += (r.latents[i] - wantLatents[i]) ** 2;
    den += wantLatents[i] ** 2;
  }
  const latentsRelL2 = Math.sqrt(num / den);
  console.log(`LoRA load ${(r.loadMs / 1000).toFixed(1)} s, generate ${(r.genMs / 1000).toFixed(1)} s; frames max abs error ${frameErr.toExponential(2)}, ` +
    `final latents rel L2 ${latentsRelL2.toExponential(2)}\n${r.description.join('\n')}`);
  const loraLines = r.description.filter((l) => l.startsWith('lora: '));
  assert.equal(loraLines.length, 3, r.description.join('\n'));
  assert.match(loraLines[0], /kohya_unet_te\.safetensors ×0\.8: \d+ modules merged \(unet \d+, text encoder \d+\)/);
  assert.match(loraLines[2], /motion_lora_orig\.ckpt ×1: \d+ modules merged \(motion modules \d+\)/);
  assert.deepEqual(r.timesteps, Array.from(ref['pipeline.timesteps'].data, Number));
  assert.ok(frameErr <= 5e-3, `frames differ by ${frameErr} > 5e-3`);
  assert.ok(latentsRelL2 <= 1e-3, `final latents rel L2 ${latentsRelL2}`);
  assert.equal(r.bad?.name, 'InputError');
  assert.match(r.bad.message, /lora\[0\]/);
});

test('page: the optional LoRA file + weight go to load() with the chosen preset', async () => {
  const lora = new URL('tiny/lora/kohya_unet_te.safetensors', FIXTURES).pathname;
  await b.page.goto(`${b.url}?preset=tiny`);
  await b.page.waitForFunction(() => window.animatediffApp?.ready);
  await b.page.setInputFiles('#file-lora', lora);
  await b.page.fill('#lora-weight', '0.8');
  await b.page.click('#load');
  await b.page.waitForFunction(() => /^Loaded/.test(document.getElementById('load-status').textContent) || !document.getElementById('app-error').hidden,
    null, { timeout: 120_000 });
  const status = await b.page.textContent('#load-status');
  console.log(`page load with a LoRA: ${status}`);
  assert.match(status, /lora: kohya_unet_te\.safetensors ×0\.8: 243 modules merged \(unet 231, text encoder 12\)/);
});
