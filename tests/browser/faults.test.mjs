// Browser hardening (headless Chromium, WebGPU on SwiftShader): the page under its strict
// Content-Security-Policy, the GPU device lost in the middle of a generation (the worker makes
// a new device and reloads the models by itself), and a short run of generations whose GPU
// memory returns to its baseline. Generations are 1 frame 64×64, 1–2 steps (SwiftShader).
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
    window.g = await createGenerator();
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

test('4 generations in a row (sizes alternating): GPU memory back to the loaded baseline every time', async () => {
  const r = await b.page.evaluate(async (opts) => {
    const sizes = [[64, 64], [128, 64]];
    const live = [];
    const t0 = performance.now();
    for (let i = 0; i < 4; i++) {
      const [width, height] = sizes[i % 2];
      await g.generate({ ...opts, width, height, steps: 1, seed: i });
      live.push((await g.memory()).liveBytes);
    }
    return { live, loaded: (await g.memory()).liveBytes, ms: performance.now() - t0 };
  }, SMALL);
  console.log(`4 generations in ${(r.ms / 1000).toFixed(1)} s; live bytes after each: ${r.live.join(', ')}`);
  assert.ok(r.live.every((v) => v === r.live[0]), JSON.stringify(r.live));
  assert.equal(r.live[0], r.loaded);
});

test('no uncaught errors on the page', () => {
  assert.deepEqual(b.errors.filter((e) => !/Content Security Policy|Refused to execute inline script/i.test(e)), []);
});
