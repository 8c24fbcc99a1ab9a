// The npm package: `npm pack` of www/ gives a tarball holding only the library; installed
// offline into a temporary copy of examples/npm, served by a plain static server, its
// <animatediff-generator> loads the tiny fixture model from local URLs in headless Chromium
// and makes a video (progress, preview and done events; frames not blank, no NaN).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openBrowser, WWW } from './harness.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const EXAMPLE = join(ROOT, 'examples', 'npm');
const npm = (args, cwd) => execFileSync('npm', args, { cwd, encoding: 'utf8', env: { ...process.env, npm_config_update_notifier: 'false' } });

let work, tarball, packed, b;

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'animatediff-npm-'));
  const [info] = JSON.parse(npm(['pack', '--json', '--pack-destination', work], WWW));
  packed = info;
  tarball = join(work, info.filename);
  // The example page, depending on the tarball just packed.
  const site = join(work, 'site');
  execFileSync('mkdir', [site]);
  for (const f of ['index.html', 'main.js']) copyFileSync(join(EXAMPLE, f), join(site, f));
  const pkg = JSON.parse(readFileSync(join(EXAMPLE, 'package.json'), 'utf8'));
  pkg.dependencies['animatediff-wgpu'] = `file:${tarball}`;
  writeFileSync(join(site, 'package.json'), JSON.stringify(pkg, null, 2));
  npm(['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts'], site);
  // A plain static server over the installed example (plus /fixtures/tiny/).
  b = await openBrowser({ root: site });
});

after(async () => {
  await b?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('the tarball: version from Cargo.toml, only the library, no dependencies', () => {
  const cargo = /^version\s*=\s*"([^"]+)"/m.exec(readFileSync(join(ROOT, 'Cargo.toml'), 'utf8'))[1];
  assert.equal(packed.name, 'animatediff-wgpu');
  assert.equal(packed.version, cargo, 'www/package.json version = Cargo.toml version');
  const files = packed.files.map((f) => f.path).sort();
  for (const f of ['README.md', 'animatediff.js', 'animatediff.d.ts', 'element.js', 'element.d.ts', 'package.json', 'webm.js', 'worker.js',
    'zip.js', 'pkg/animatediff_wgpu.js', 'pkg/animatediff_wgpu_bg.wasm', 'pkg/animatediff_wgpu.d.ts']) {
    assert.ok(files.includes(f), `${f} is in the tarball`);
  }
  assert.ok(files.some((f) => f.startsWith('pkg/snippets/')), 'wasm-bindgen snippets are in the tarball');
  for (const f of ['index.html', 'app.js', 'style.css', 'diagnostics.js']) assert.ok(!files.includes(f), `the demo page's ${f} is not`);
  // Every relative import of the shipped modules resolves inside the package.
  for (const f of files.filter((x) => x.endsWith('.js') && !x.startsWith('pkg/snippets/'))) {
    const src = readFileSync(join(WWW, f), 'utf8');
    for (const m of src.matchAll(/(?:import|export)\s[^'"]*?from\s+'(\.[^']+)'|import\(\s*'(\.[^']+)'\s*\)|new URL\('(\.[^']+)', import\.meta\.url\)/g)) {
      const rel = m[1] ?? m[2] ?? m[3];
      const target = join(f, '..', rel).replace(/^\.\//, '');
      assert.ok(files.includes(target), `${f} imports ${rel}, which the tarball lacks`);
    }
  }
  const pkg = JSON.parse(readFileSync(join(WWW, 'package.json'), 'utf8'));
  assert.equal(pkg.dependencies, undefined, 'no runtime dependencies');
  const installed = readdirSync(join(work, 'site', 'node_modules')).filter((d) => !d.startsWith('.'));
  assert.deepEqual(installed, ['animatediff-wgpu'], 'npm install brought nothing else');
  const readme = readFileSync(join(WWW, 'README.md'), 'utf8');
  assert.ok(/<animatediff-generator/.test(readme) && /createGenerator/.test(readme), 'README shows the element and the API');
  console.log(`tarball ${packed.filename}: ${packed.size} B packed, ${packed.unpackedSize} B unpacked, ${files.length} files`);
});

test('example page: the installed element loads the tiny model from local URLs and makes a video', async () => {
  const site = join(work, 'site');
  assert.ok(existsSync(join(site, 'node_modules', 'animatediff-wgpu', 'element.js')));
  await b.page.goto(b.url);
  await b.page.waitForFunction(() => customElements.get('animatediff-generator') !== undefined);
  const t0 = Date.now();
  const r = await b.page.evaluate(async () => {
    const el = document.getElementById('gen');
    const shadow = el.shadowRoot;
    // Accessibility basics: the prompt has a label, the status line is live.
    const a11y = {
      promptLabelled: !!shadow.querySelector('label textarea'),
      statusLive: shadow.querySelector('[role=status]')?.getAttribute('aria-live'),
      prompt: shadow.querySelector('textarea').value,
    };
    // Start it the way a keyboard user would: the Generate button (a real <button>).
    const done = new Promise((resolve, reject) => {
      el.addEventListener('done', (e) => resolve(e.detail), { once: true });
      el.addEventListener('error', (e) => reject(new Error(`${e.detail.error.name}: ${e.detail.error.message}`)), { once: true });
    });
    shadow.querySelector('button[type=submit]').click();
    const d = await done;
    const px = d.result.width * d.result.height;
    let nan = 0, min = Infinity, max = -Infinity;
    for (const v of d.result.frames) {
      if (!Number.isFinite(v)) nan++;
      else {
        min = Math.min(min, v);
        max = Math.max(max, v);
      }
    }
    // Distinct colours per frame: a blank (uniform) frame has one.
    const distinct = d.frames.map((f) => {
      const s = new Set();
      for (let i = 0; i < px; i++) s.add((f[i * 4] << 16) | (f[i * 4 + 1] << 8) | f[i * 4 + 2]);
      return s.size;
    });
    const head = new Uint8Array(await d.blob.slice(0, 6).arrayBuffer());
    const canvas = shadow.querySelector('canvas');
    const types = window.events.map((e) => `${e.type}:${e.detail?.phase ?? ''}`);
    const previews = window.events.filter((e) => e.type === 'preview').map((e) => ({ step: e.detail.step, w: e.detail.width, h: e.detail.height, n: e.detail.rgba.length }));
    return {
      a11y, types, previews, nan, min, max, distinct, frameCount: d.frames.length, width: d.result.width, height: d.result.height,
      blobType: d.blob.type, gifMagic: String.fromCharCode(...head), canvas: { w: canvas.width, h: canvas.height, hidden: canvas.hidden, label: canvas.getAttribute('aria-label') },
      status: shadow.querySelector('[role=status]').textContent, busy: el.hasAttribute('busy'),
      buttons: { generate: shadow.querySelector('button[type=submit]').disabled, cancel: shadow.querySelector('.cancel').disabled },
    };
  });
  console.log(`element: load + generate ${((Date.now() - t0) / 1000).toFixed(1)} s; events ${[...new Set(r.types)].join(' ')}; status "${r.status}"`);
  assert.deepEqual(b.errors, []);
  assert.ok(r.a11y.promptLabelled);
  assert.equal(r.a11y.statusLive, 'polite');
  assert.equal(r.a11y.prompt, 'a corgi running on the beach');
  for (const phase of ['progress:download', 'progress:upload', 'progress:step', 'progress:decode', 'progress:export']) {
    assert.ok(r.types.includes(phase), `a ${phase} event (got ${[...new Set(r.types)]})`);
  }
  assert.equal(r.types.at(-1), 'done:');
  assert.deepEqual(r.previews, [{ step: 1, w: 8, h: 8, n: 2 }, { step: 2, w: 8, h: 8, n: 2 }]);
  assert.equal(r.frameCount, 2);
  assert.equal(r.width, 64);
  assert.equal(r.height, 64);
  assert.equal(r.nan, 0, 'no NaN in the frames');
  assert.ok(r.min >= 0 && r.max <= 1 && r.max - r.min > 0.1, `frames span [${r.min}, ${r.max}]`);
  for (const n of r.distinct) assert.ok(n > 16, `a frame has only ${n} colours (blank?)`);
  assert.equal(r.blobType, 'image/gif');
  assert.equal(r.gifMagic, 'GIF89a');
  assert.deepEqual(r.canvas, { w: 64, h: 64, hidden: false, label: 'Generated video: a corgi running on the beach, 2 frames' });
  assert.ok(/^Done: 2 frames 64×64/.test(r.status), r.status);
  assert.equal(r.busy, false);
  assert.deepEqual(r.buttons, { generate: false, cancel: true });
});

test('live preview (JS API from the package): opt-in, each step, 1/8 size; the last DDIM step previews the final latents', async () => {
  await b.page.goto(b.url);
  const r = await b.page.evaluate(async () => {
    const { createGenerator } = await import('./node_modules/animatediff-wgpu/animatediff.js');
    const g = await createGenerator();
    const base = '/fixtures/tiny/';
    const files = ['model_index.json', 'unet/config.json', 'unet/diffusion_pytorch_model.safetensors', 'vae/config.json',
      'vae/diffusion_pytorch_model.safetensors', 'text_encoder/config.json', 'text_encoder/model.safetensors', 'scheduler/scheduler_config.json'];
    await g.load({
      model: Object.fromEntries(files.map((f) => [f, `${base}diffusers/${f}`])),
      motion: { 'config.json': `${base}motion_adapter/config.json`, 'diffusion_pytorch_model.safetensors': `${base}motion_adapter/diffusion_pytorch_model.safetensors` },
    });
    // set_alpha_to_one: DDIM's last step returns that step's x₀ prediction itself.
    const opts = { prompt: 'a corgi', negativePrompt: 'blurry', frames: 3, width: 64, height: 64, steps: 3, seed: 7, setAlphaToOne: true };
    const previews = [];
    const phases = [];
    const r = await g.generate({ ...opts, onPreview: (p) => previews.push(p), onProgress: (p) => phases.push(p.phase) });
    const plainPhases = [];
    const plain = await g.generate({ ...opts, onProgress: (p) => plainPhases.push(p.phase) });
    // One trailing step from t = 999 with ᾱ_prev = 1: the result is x₀ predicted from pure
    // noise (ᾱ_999 ≈ 0.005), where a wrong x₀ formula would show.
    const one = [];
    const r1 = await g.generate({ ...opts, steps: 1, timestepSpacing: 'trailing', onPreview: (p) => one.push(p) });
    // Euler (model input scaled by 1/√(σ²+1)) and LCM: one step from t = 999 also returns x₀
    // (Euler: x − σ·ε; LCM: c_skip ≈ 3·10⁻⁹, c_out ≈ 1).
    const others = {};
    for (const scheduler of ['euler', 'lcm']) {
      const ps = [];
      const out = await g.generate({ ...opts, steps: 1, scheduler, timestepSpacing: 'trailing', guidance: 1, onPreview: (p) => ps.push(p) });
      others[scheduler] = { ps, out };
    }
    await g.dispose();
    // SD1.5 latent→RGB (ComfyUI comfy/latent_formats.py SD15.latent_rgb_factors), (x·M + 1)/2.
    const M = [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]];
    const [F, h, w] = [3, 8, 8];
    // max |preview − latent→RGB(latents)| and how many channel values are not clamped.
    const compare = (preview, latents) => {
      let maxDiff = 0, unclamped = 0;
      for (let f = 0; f < F; f++) {
        for (let i = 0; i < h * w; i++) {
          for (let c = 0; c < 3; c++) {
            let v = 1;
            for (let k = 0; k < 4; k++) v += latents[((k * F + f) * h * w) + i] * M[k][c];
            const want = Math.round(Math.min(1, Math.max(0, v / 2)) * 255);
            maxDiff = Math.max(maxDiff, Math.abs(preview.rgba[f][i * 4 + c] - want));
            unclamped += want > 0 && want < 255;
          }
          if (preview.rgba[f][i * 4 + 3] !== 255) maxDiff = Infinity;
        }
      }
      return { maxDiff, unclamped, of: F * h * w * 3 };
    };
    const last = previews.at(-1);
    const { maxDiff } = compare(last, r.latents);
    const fromNoise = one.length === 1 ? compare(one[0], r1.latents) : null;
    const samplers = Object.fromEntries(Object.entries(others).map(([k, { ps, out }]) => [k, ps.length === 1 ? compare(ps[0], out.latents) : null]));
    let changed = 0;
    for (let i = 0; i < previews[0].rgba[0].length; i++) changed += previews[0].rgba[0][i] !== last.rgba[0][i];
    let same = 0;
    for (let i = 0; i < r.frames.length; i++) same = Math.max(same, Math.abs(r.frames[i] - plain.frames[i]));
    return {
      shapes: previews.map((p) => [p.step, p.steps, p.width, p.height, p.frameCount, p.rgba.length, p.rgba[0].length]),
      maxDiff, fromNoise, samplers, changed, previewPhases: phases.filter((p) => p === 'preview').length, plainPreviewPhases: plainPhases.filter((p) => p === 'preview').length,
      sameFrames: same,
    };
  });
  console.log(`preview: last step vs latent→RGB of the final latents max |Δ| ${r.maxDiff} (of 255); step 1 vs 3 differ in ${r.changed} bytes; ` +
    `one trailing step from t=999: max |Δ| ${r.fromNoise?.maxDiff}, ${r.fromNoise?.unclamped} of ${r.fromNoise?.of} values unclamped`);
  assert.deepEqual(r.shapes, [1, 2, 3].map((s) => [s, 3, 8, 8, 3, 3, 8 * 8 * 4]));
  assert.ok(r.maxDiff <= 1, `last preview vs final latents: ${r.maxDiff}`);
  assert.ok(r.fromNoise, 'one preview for one step');
  assert.ok(r.fromNoise.maxDiff <= 1, `x₀ from t=999 vs its preview: ${r.fromNoise.maxDiff}`);
  // x₀ from pure noise is large (|x| ≈ 14 σ): most values clamp, and the rest must agree too.
  assert.ok(r.fromNoise.unclamped >= 10, `too few unclamped values to compare (${r.fromNoise.unclamped})`);
  for (const [k, v] of Object.entries(r.samplers)) {
    console.log(`preview ${k}, one step from t=999: max |Δ| ${v?.maxDiff}, ${v?.unclamped} of ${v?.of} unclamped`);
    assert.ok(v && v.maxDiff <= 1 && v.unclamped >= 10, `${k}: ${JSON.stringify(v)}`);
  }
  assert.ok(r.changed > 0, 'the preview changes between steps');
  assert.equal(r.previewPhases, 0, 'previews go to onPreview, not onProgress');
  assert.equal(r.plainPreviewPhases, 0);
  assert.equal(r.sameFrames, 0, 'the preview does not change the result');
});

test('element: a missing model file gives an error event and a plain-words status; Cancel (keyboard) stops a run', async () => {
  await b.page.goto(b.url);
  await b.page.waitForFunction(() => customElements.get('animatediff-generator') !== undefined);
  const bad = await b.page.evaluate(async () => {
    const el = document.getElementById('gen');
    el.setAttribute('model', '/fixtures/tiny/original/missing.safetensors');
    const ev = new Promise((resolve) => el.addEventListener('error', (e) => resolve(e.detail.error), { once: true }));
    const rejected = await el.generate().then(() => null, (e) => e.name);
    const e = await ev;
    return { rejected, name: e.name, message: e.message, status: el.shadowRoot.querySelector('[role=status]').textContent };
  });
  console.log(`missing model: ${bad.name}: ${bad.message}`);
  assert.equal(bad.rejected, bad.name);
  assert.ok(['NetworkError', 'LoadError'].includes(bad.name), bad.name);
  assert.ok(bad.message.includes('missing.safetensors'), 'the message names the file');
  assert.equal(bad.status, `Error: ${bad.message}`);

  // Restore the model, start a long run with Ctrl+Enter in the prompt, cancel with the keyboard.
  await b.page.evaluate(() => {
    const el = document.getElementById('gen');
    el.setAttribute('model', '/fixtures/tiny/original/sd15_tiny_ldm_fp16.safetensors');
    el.setAttribute('steps', '50');
    el.setAttribute('frames', '1');
    window.cancelled = new Promise((resolve) => el.addEventListener('error', (e) => resolve(e.detail.error.name), { once: true }));
    window.stepSeen = new Promise((resolve) => el.addEventListener('progress', (e) => e.detail.phase === 'step' && resolve(), { once: false }));
  });
  const prompt = b.page.locator('animatediff-generator textarea');
  await prompt.focus();
  await b.page.keyboard.press('Control+Enter');
  await b.page.evaluate(() => window.stepSeen);
  await b.page.locator('animatediff-generator button.cancel').focus();
  await b.page.keyboard.press('Enter');
  const name = await b.page.evaluate(() => window.cancelled);
  assert.equal(name, 'AbortError');
  const after = await b.page.evaluate(() => {
    const s = document.getElementById('gen').shadowRoot;
    return { status: s.querySelector('[role=status]').textContent, generate: s.querySelector('button[type=submit]').disabled };
  });
  assert.deepEqual(after, { status: 'Cancelled.', generate: false });
});

test('element: format="webm" gives a WebM Blob in the done event', async () => {
  await b.page.goto(b.url);
  await b.page.waitForFunction(() => customElements.get('animatediff-generator') !== undefined);
  const r = await b.page.evaluate(async () => {
    const el = document.getElementById('gen');
    el.setAttribute('format', 'webm');
    el.setAttribute('steps', '1');
    const d = await el.generate();
    const head = [...new Uint8Array(await d.blob.slice(0, 4).arrayBuffer())];
    const link = el.shadowRoot.querySelector('a[download]');
    return { type: d.blob.type, size: d.blob.size, head, download: link.getAttribute('download'), linkText: link.textContent, frames: d.frames.length };
  });
  assert.equal(r.type, 'video/webm');
  assert.deepEqual(r.head, [0x1a, 0x45, 0xdf, 0xa3], 'EBML magic');
  assert.equal(r.frames, 2);
  assert.equal(r.download, 'animatediff.webm');
  assert.match(r.linkText, /^Download the WebM \(\d+\.\d\d MB\)$/);
});
