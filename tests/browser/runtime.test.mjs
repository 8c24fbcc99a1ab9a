// Browser end-to-end: the crate's wasm runtime runs WGSL kernels on WebGPU in headless
// Chromium (SwiftShader) and the results match a float64 reference computed here in Node.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { linearRef, openBrowser, relL2, rng } from './harness.mjs';

let b;

before(async () => {
  b = await openBrowser();
  await b.page.goto(b.url);
  await b.page.waitForFunction(() => window.animatediffGpu !== undefined || document.querySelector('#gpu-status.error'), null, { timeout: 60_000 });
  const err = await b.page.$eval('#gpu-status', (el) => (el.className === 'error' ? el.textContent : ''));
  assert.equal(err, '', `the page could not start WebGPU: ${err}`);
});

after(async () => {
  await b?.close();
});

test('device gets the adapter maximum limits; f16 is reported as negotiated', async () => {
  const r = await b.page.evaluate(async () => {
    const adapter = await navigator.gpu.requestAdapter();
    return {
      info: window.animatediffGpu.info(),
      adapter: {
        maxBufferSize: adapter.limits.maxBufferSize,
        maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
        maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
        maxComputeInvocationsPerWorkgroup: adapter.limits.maxComputeInvocationsPerWorkgroup,
        f16: adapter.features.has('shader-f16'),
      },
    };
  });
  console.log('browser adapter:', JSON.stringify(r.info));
  for (const key of ['maxBufferSize', 'maxStorageBufferBindingSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup']) {
    assert.equal(r.info[key], r.adapter[key], key);
  }
  assert.equal(r.info.shaderF16, r.adapter.f16);
  assert.equal(r.info.backend, 'BrowserWebGpu');
});

test('linear kernel matches a float64 reference on odd shapes', async () => {
  const seed = Date.now();
  console.log(`seed ${seed}`);
  const next = rng(seed);
  for (const [m, n, k] of [[1, 1, 1], [7 * 13, 24, 24], [37, 91, 13], [64, 48, 40]]) {
    const x = Float32Array.from({ length: m * k }, next);
    const w = Float32Array.from({ length: n * k }, next);
    const bias = Float32Array.from({ length: n }, next);
    const y = await b.page.evaluate(
      async ([x, w, bias, m, n, k]) => Array.from(await window.animatediffGpu.linear(
        new Float32Array(x), new Float32Array(w), new Float32Array(bias), m, n, k)),
      [Array.from(x), Array.from(w), Array.from(bias), m, n, k],
    );
    const err = relL2(y, linearRef(x, w, bias, m, n, k));
    assert.ok(err <= 1e-5, `linear ${m}x${n}x${k}: rel L2 error ${err}`);
  }
});

test('the page self-test passes through the UI', async () => {
  const p = b.page;
  for (const [name, v] of [['m', '48'], ['n', '40'], ['k', '36'], ['seed', String(Date.now() % 1e6)]]) {
    await p.fill(`input[name=${name}]`, v);
  }
  await p.click('#run');
  await p.waitForFunction(() => /PASS|FAIL|Error/.test(document.getElementById('result').textContent), null, { timeout: 60_000 });
  const text = await p.textContent('#result');
  assert.match(text, /^PASS/, text);
});

test('bad arguments reject with a typed message and the module keeps working', async () => {
  const r = await b.page.evaluate(async () => {
    const g = window.animatediffGpu;
    let message = null;
    try {
      await g.linear(new Float32Array(5), new Float32Array(4), undefined, 2, 2, 2);
    } catch (e) {
      message = e.message;
    }
    const ok = Array.from(await g.linear(new Float32Array([1, 2]), new Float32Array([3, 4]), undefined, 1, 1, 2));
    return { message, ok };
  });
  assert.match(r.message ?? '', /bytes given/);
  assert.deepEqual(r.ok, [11]);
});

test('device loss is reported and a new context works', async () => {
  const r = await b.page.evaluate(async () => {
    const { GpuContext } = await import('./pkg/animatediff_wgpu.js');
    const g = await GpuContext.create();
    g.destroy();
    await new Promise((ok) => setTimeout(ok, 100)); // the lost promise resolves on the event loop
    let message = null;
    try {
      await g.selfTest(8, 8, 8, 1);
    } catch (e) {
      message = e.message;
    }
    const fresh = await GpuContext.create();
    const report = await fresh.selfTest(8, 8, 8, 2);
    fresh.destroy();
    return { message, passed: report.passed };
  });
  assert.match(r.message ?? '', /device lost/i);
  assert.equal(r.passed, true);
});

test('kernel suite passes in the browser (every op family vs float64 references)', async () => {
  const checks = await b.page.evaluate(async (seed) => window.animatediffGpu.kernelSuite(seed), Date.now() % 2 ** 31);
  const failed = checks.filter((c) => !c.passed);
  console.log(`kernel suite: ${checks.length - failed.length} passed, ${failed.length} failed`);
  assert.ok(checks.length >= 19, `only ${checks.length} checks ran`);
  assert.deepEqual(failed, []);
});

test('the GPU kernel family (workgroup-tiled GEMM, temporal attention) compiles and passes in Tint', async () => {
  // SwiftShader is a CPU adapter, so "auto" picks register kernels; force the family real
  // GPUs get so the browser's own WGSL compiler (Tint, with its uniformity analysis) sees it.
  const r = await b.page.evaluate(async (seed) => {
    const { GpuContext } = await import('./pkg/animatediff_wgpu.js');
    const g = await GpuContext.create(undefined, undefined, 'tiled');
    const info = g.info();
    const checks = await g.kernelSuite(seed);
    let bad = null;
    try {
      await GpuContext.create(undefined, undefined, 'fastest');
    } catch (e) {
      bad = e.message;
    }
    g.destroy();
    return { tiled: info.tiledKernels, checks, bad };
  }, Date.now() % 2 ** 31);
  assert.equal(r.tiled, true);
  const failed = r.checks.filter((c) => !c.passed);
  assert.deepEqual(failed, []);
  assert.ok(r.checks.length >= 19);
  assert.match(r.bad ?? '', /kernels must be/);
});

test('kernel checks run from the page UI', async () => {
  await b.page.click('#run-kernels');
  await b.page.waitForFunction(() => /passed|Error/.test(document.getElementById('kernels-status').textContent), null, { timeout: 120_000 });
  const text = await b.page.textContent('#kernels-status');
  assert.match(text, /^\d+ passed, 0 failed/, text);
  const rows = await b.page.$$eval('#kernels tbody tr', (trs) => trs.length);
  assert.ok(rows >= 19);
});

test('no uncaught errors or panics on the page', () => {
  assert.deepEqual(b.errors, []);
});
