// Shared browser-test harness: serves www/ on 127.0.0.1 and drives Debian's Chromium
// (headless, WebGPU on SwiftShader) through playwright-core.
import { createRequire } from 'node:module';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from '../../scripts/serve.mjs';

const require = createRequire(new URL('../../scripts/package.json', import.meta.url));
const { chromium } = require('playwright-core');

export const WWW = fileURLToPath(new URL('../../www', import.meta.url));

function chromiumPath() {
  const candidates = [process.env.CHROMIUM, '/usr/lib/chromium/chromium', '/usr/bin/chromium'];
  const found = candidates.find((p) => p && existsSync(p));
  if (!found) throw new Error('Chromium not found: run scripts/setup (apt package `chromium`)');
  return found;
}

// Flags from ../shared/notes/build-and-test-machines.md §2.2: only --enable-unsafe-webgpu
// matters for WebGPU; the rest keep Chromium off the (closed) network.
const ARGS = [
  '--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--disable-quic', '--enable-unsafe-webgpu',
];

// `options` go to startServer (e.g. `onRequest`, `mounts`).
export async function openBrowser(options = {}) {
  if (!existsSync(join(WWW, 'pkg', 'animatediff_wgpu.js'))) {
    throw new Error('www/pkg is missing: run scripts/build-wasm');
  }
  const { server, url } = await startServer({ root: WWW, ...options });
  const userDataDir = mkdtempSync(join(tmpdir(), 'animatediff-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: chromiumPath(),
    headless: true,
    args: ARGS,
  });
  const errors = [];
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console.error: ${m.text()}`);
  });
  return {
    page,
    url,
    errors,
    async close() {
      await context.close();
      await new Promise((r) => server.close(r));
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

// Fresh random data every run (reproducible from the printed seed).
export function rng(seed) {
  let s = BigInt.asUintN(64, BigInt(seed) ^ 0x9e3779b97f4a7c15n) | 1n;
  return () => {
    s ^= s >> 12n; s ^= BigInt.asUintN(64, s << 25n); s ^= s >> 27n;
    const r = BigInt.asUintN(64, s * 0x2545f4914f6cdd1dn);
    return Number(r >> 40n) / 2 ** 24 * 2 - 1;
  };
}

export function linearRef(x, w, bias, m, n, k) {
  const y = new Float64Array(m * n);
  for (let r = 0; r < m; r++) {
    for (let c = 0; c < n; c++) {
      let acc = bias ? bias[c] : 0;
      for (let i = 0; i < k; i++) acc += x[r * k + i] * w[c * k + i];
      y[r * n + c] = acc;
    }
  }
  return y;
}

export function relL2(out, ref) {
  if (out.length !== ref.length) return Infinity;
  let num = 0, den = 0;
  for (let i = 0; i < out.length; i++) {
    if (!Number.isFinite(out[i])) return Infinity;
    num += (out[i] - ref[i]) ** 2;
    den += ref[i] ** 2;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/** Page side (pass to `page.evaluate`): `window.tiny` = the tiny fixture pipeline as diffusers
 * folder maps (relative path → URL under `scripts/serve`'s /fixtures/), and `window.catchErr(p)`
 * → null, or `{ name, message }` of the rejection. */
export function installTinySources() {
  const base = 'fixtures/tiny/';
  const diffusers = ['model_index.json', 'unet/config.json', 'unet/diffusion_pytorch_model.safetensors', 'vae/config.json',
    'vae/diffusion_pytorch_model.safetensors', 'text_encoder/config.json', 'text_encoder/model.safetensors',
    'scheduler/scheduler_config.json'];
  window.tiny = {
    model: Object.fromEntries(diffusers.map((f) => [f, `${base}diffusers/${f}`])),
    motion: { 'config.json': `${base}motion_adapter/config.json`, 'diffusion_pytorch_model.safetensors': `${base}motion_adapter/diffusion_pytorch_model.safetensors` },
  };
  // The same pipeline as an LDM fp16 single file + original .ckpt motion module (+ configs).
  window.tiny.single = {
    model: `${base}original/sd15_tiny_ldm_fp16.safetensors`,
    motion: `${base}original/mm_tiny_v2_fp16.ckpt`,
    config: Object.fromEntries(Object.entries(window.tiny.model).filter(([k]) => k.endsWith('.json'))),
    motionConfig: `${base}motion_adapter/config.json`,
  };
  window.catchErr = async (p) => {
    try {
      await p;
      return null;
    } catch (e) {
      return { name: e.name, message: e.message };
    }
  };
}
