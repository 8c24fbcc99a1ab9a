// Long-video options of the JS API in headless Chromium (SwiftShader), against diffusers
// (scripts/make_long_video_fixtures.py → tests/fixtures/tiny/long/): prompt travel given as an
// object { frame: text }, FreeNoise with a seed (shuffled initial noise), whole-UNet context
// windows with a closed loop and flat fusion. 64×64, 3 steps: final latents (relative L2) and
// the fixture's frames (f16).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { openBrowser } from './harness.mjs';

const META = JSON.parse(readFileSync(new URL('../fixtures/tiny/long/long_video.json', import.meta.url), 'utf8'));

let b;

before(async () => {
  b = await openBrowser();
  await b.page.goto(b.url);
  await b.page.evaluate(async () => {
    const base = 'fixtures/tiny/';
    const files = ['model_index.json', 'unet/config.json', 'unet/diffusion_pytorch_model.safetensors', 'vae/config.json',
      'vae/diffusion_pytorch_model.safetensors', 'text_encoder/config.json', 'text_encoder/model.safetensors',
      'scheduler/scheduler_config.json'];
    const model = Object.fromEntries(files.map((f) => [f, `${base}diffusers/${f}`]));
    const motion = { 'config.json': `${base}motion_adapter/config.json`, 'diffusion_pytorch_model.safetensors': `${base}motion_adapter/diffusion_pytorch_model.safetensors` };
    window.readSafetensors = async (url) => {
      const buf = await (await fetch(url)).arrayBuffer();
      const n = Number(new DataView(buf).getBigUint64(0, true));
      const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 8, n)));
      const f16 = (h) => {
        const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023;
        return e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
      };
      const out = {};
      for (const [k, v] of Object.entries(header)) {
        if (k === '__metadata__') continue;
        const bytes = buf.slice(8 + n + v.data_offsets[0], 8 + n + v.data_offsets[1]);
        out[k] = v.dtype === 'F16' ? Float32Array.from(new Uint16Array(bytes), f16) : new Float32Array(bytes);
      }
      return out;
    };
    // Generate, then compare the final latents and frames[from..] with the fixture `name`.
    window.compare = async (name, options, from, framesKey) => {
      const ref = await readSafetensors('fixtures/tiny/long/long_video.safetensors');
      if (!('seed' in options)) options.latents = ref[`${name}.init_latents`];
      const t0 = performance.now();
      const out = await g.generate({ width: 64, height: 64, steps: 3, guidance: 7.5, ...options });
      const want = ref[`${name}.final_latents`];
      let num = 0, den = 0;
      for (let i = 0; i < want.length; i++) {
        num += (out.latents[i] - want[i]) ** 2;
        den += want[i] ** 2;
      }
      const frames = ref[`${name}.${framesKey}`];
      const got = out.frames.subarray(from * 64 * 64 * 3);
      let m = got.length === frames.length ? 0 : Infinity;
      for (let i = 0; i < frames.length; i++) m = Math.max(m, Math.abs(got[i] - frames[i]));
      return { ms: performance.now() - t0, latentsRelL2: Math.sqrt(num / den), frameErr: m, frameCount: out.frameCount };
    };
    const { createGenerator } = await import('./animatediff.js');
    window.g = await createGenerator();
    await window.g.load({ model, motion });
  });
});

after(async () => {
  await b?.page.evaluate(() => window.g?.dispose()).catch(() => {});
  await b?.close();
});

function check(name, r, frames) {
  console.log(`${name}: ${r.frameCount} frames in ${(r.ms / 1000).toFixed(1)} s, latents rel L2 ${r.latentsRelL2.toExponential(2)}, frames max abs ${r.frameErr.toExponential(2)}`);
  assert.equal(r.frameCount, frames);
  assert.ok(r.latentsRelL2 <= 1e-4, `${name}: latents rel L2 ${r.latentsRelL2}`);
  assert.ok(r.frameErr <= 3e-3, `${name}: frames max abs ${r.frameErr}`);
}

test('prompt travel: prompt / negativePrompt as { frame: text } match diffusers FreeNoise prompt dicts (lerp)', async () => {
  const { prompts, negatives } = META.travel;
  const r = await b.page.evaluate(([p, n]) => compare('travel_lerp', { prompt: p, negativePrompt: n, frames: 8 }, 5, 'frames_5_8'), [prompts, negatives]);
  check('prompt travel', r, 8);
});

test('FreeNoise: freeNoiseLength / freeNoiseStride with a seed (shuffled noise) match diffusers enable_free_noise', async () => {
  const opts = { prompt: META.prompt, negativePrompt: META.negative, frames: 12, seed: META.seeds.fn_seed, freeNoiseLength: 8, freeNoiseStride: 2 };
  const r = await b.page.evaluate((o) => compare('fn_seed', o, 8, 'frames_8_12'), opts);
  check('FreeNoise', r, 12);
});

test('context windows: contextLength / contextOverlap / closedLoop / contextFuse match the per-window diffusers reference', async () => {
  const opts = { prompt: META.prompt, negativePrompt: META.negative, frames: 12, contextLength: 8, contextOverlap: 4, closedLoop: true, contextFuse: 'flat' };
  const r = await b.page.evaluate((o) => compare('ctx_flat_loop', o, 8, 'frames_8_12'), opts);
  check('context windows', r, 12);
});

test('bad long-video options are InputErrors naming the option', async () => {
  const r = await b.page.evaluate(async () => {
    const errs = [];
    for (const o of [{ prompt: { x: 'a' } }, { prompt: 'a', motionEffect: 'left=1' }, { prompt: 'a', contextLength: 8, contextOverlap: 8 }, { prompt: 'a', frames: 40 }]) {
      try {
        await g.generate({ width: 64, height: 64, steps: 1, ...o });
        errs.push(null);
      } catch (e) {
        errs.push(`${e.name}: ${e.message}`);
      }
    }
    return errs;
  });
  console.log(r.join('\n'));
  assert.ok(r.every((e) => e?.startsWith('InputError')), JSON.stringify(r));
  assert.match(r[0], /prompt/);
  assert.match(r[1], /motion effect/);
  assert.match(r[2], /overlap/);
  assert.match(r[3], /32/);
});
