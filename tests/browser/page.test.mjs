// Browser end-to-end for the page (www/index.html + app.js): settings from the URL, the tiny
// preset from local URLs, per-step progress, the looping player (screenshot not blank), GIF
// export, local files through the file inputs, cancel, labels, and the no-WebGPU message.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { openBrowser } from './harness.mjs';

const TINY = fileURLToPath(new URL('../fixtures/tiny/', import.meta.url));
const SMALL = '&frames=2&width=64&height=64&steps=2';

let b;

before(async () => {
  b = await openBrowser();
});

after(async () => {
  await b?.close();
});

// Collect every text #gen-status shows (steps can pass quickly).
function watchStatus() {
  window.statuses = [];
  new MutationObserver(() => window.statuses.push(document.getElementById('gen-status').textContent))
    .observe(document.getElementById('gen-status'), { childList: true, characterData: true, subtree: true });
}

async function generateAndWait(p) {
  await p.evaluate(watchStatus);
  await p.click('#generate');
  await p.waitForFunction(() => window.statuses.some((s) => /^(Done|Cancelled)/.test(s)) ||
    !document.getElementById('app-error').hidden, null, { timeout: 300_000 });
  const err = await p.$eval('#app-error', (e) => (e.hidden ? '' : e.textContent));
  assert.equal(err, '', `the page showed an error: ${err}`);
}

// Pixel statistics of a PNG screenshot (decoded by the browser).
async function pngStats(p, png) {
  return p.evaluate(async (b64) => {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const c = document.createElement('canvas');
    [c.width, c.height] = [img.width, img.height];
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    const colors = new Set();
    let sum = 0, sq = 0;
    for (let i = 0; i < d.length; i += 4) {
      colors.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
      const l = (d[i] + d[i + 1] + d[i + 2]) / 3;
      sum += l;
      sq += l * l;
    }
    const n = d.length / 4;
    return { width: c.width, height: c.height, colors: colors.size, std: Math.sqrt(sq / n - (sum / n) ** 2) };
  }, png.toString('base64'));
}

test('the tiny preset generates from URL settings: progress, player, GIF export, settings back in the URL', async () => {
  const p = b.page;
  await p.goto(`${b.url}?preset=tiny&prompt=a%20corgi&seed=5&fps=10&precision=f32${SMALL}`);
  await p.waitForFunction(() => window.animatediffApp?.ready);
  assert.equal(await p.inputValue('#prompt'), 'a corgi');
  assert.equal(await p.inputValue('#seed'), '5');
  assert.equal(await p.inputValue('#width'), '64');
  assert.equal(await p.inputValue('#fps'), '10');
  const t0 = Date.now();
  await generateAndWait(p);
  console.log(`UI generation (2 frames 64×64, 2 steps, incl. model load): ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const statuses = await p.evaluate(() => window.statuses);
  assert.ok(statuses.some((s) => /^Step 1 of 2 · [\d.]+ s\/step · ETA [\d.]+ s$/.test(s)), statuses.join(' | '));
  assert.ok(statuses.some((s) => /^Step 2 of 2 /.test(s)));
  assert.match(await p.textContent('#load-status'), /^Loaded 8\.1 MB of weights \(f32, dense/);
  assert.match(await p.textContent('#video-info'), /2 frames, 64×64, seed 5/);
  const url = new URL(p.url());
  assert.equal(url.searchParams.get('seed'), '5');
  assert.equal(url.searchParams.get('prompt'), 'a corgi');
  assert.equal(url.searchParams.get('preset'), 'tiny');

  // The player draws the frames: screenshot it and look at the pixels.
  const shot = await p.locator('#player').screenshot();
  const s = await pngStats(p, shot);
  console.log(`player screenshot ${s.width}×${s.height}: ${s.colors} colours, luminance std ${s.std.toFixed(1)}`);
  assert.ok(s.colors > 50 && s.std > 5, `the player looks blank: ${JSON.stringify(s)}`);

  // GIF export through the engine's encoder.
  await p.click('#export-gif');
  await p.waitForSelector('#gif-link:not([hidden])');
  const [download] = await Promise.all([p.waitForEvent('download'), p.click('#gif-link')]);
  const gif = await readFile(await download.path());
  assert.equal(download.suggestedFilename(), 'animatediff.gif');
  assert.equal(gif.subarray(0, 6).toString('latin1'), 'GIF89a');
  assert.ok(gif.length > 200, `GIF of ${gif.length} bytes`);
  assert.equal(gif.readUInt16LE(6), 64);
  assert.equal(gif.readUInt16LE(8), 64);

  // Pause / play with the keyboard.
  await p.focus('#play');
  await p.keyboard.press('Enter');
  assert.equal(await p.getAttribute('#play', 'aria-pressed'), 'false');
  await p.keyboard.press('Enter');
  assert.equal(await p.getAttribute('#play', 'aria-pressed'), 'true');
});

test('local files through the file inputs: LDM single file + .ckpt + config folder', async () => {
  const p = b.page;
  await p.check('input[name=preset][value=files]');
  await p.fill('#frames', '2');
  await p.fill('#width', '64');
  await p.fill('#height', '64');
  await p.fill('#steps', '2');
  await p.fill('#seed', '5');
  await p.setInputFiles('#file-model', `${TINY}original/sd15_tiny_ldm_fp16.safetensors`);
  await p.setInputFiles('#file-motion', `${TINY}original/mm_tiny_v2_fp16.ckpt`);
  await p.setInputFiles('#dir-config', `${TINY}diffusers`);
  await p.setInputFiles('#file-motion-config', `${TINY}motion_adapter/config.json`);
  await generateAndWait(p);
  assert.match(await p.textContent('#load-status'), /LDM single file.*original AnimateDiff naming/);
  assert.match(await p.textContent('#video-info'), /2 frames, 64×64, seed 5/);
  const s = await pngStats(p, await p.locator('#player').screenshot());
  assert.ok(s.colors > 50 && s.std > 5, `the player looks blank: ${JSON.stringify(s)}`);
});

test('cancel from the page stops between steps', async () => {
  const p = b.page;
  await p.check('input[name=preset][value=tiny]');
  await p.fill('#frames', '1');
  await p.fill('#width', '64');
  await p.fill('#height', '64');
  await p.fill('#steps', '50');
  await p.evaluate(watchStatus);
  await p.click('#generate');
  await p.waitForFunction(() => /^Step 1 of 50/.test(document.getElementById('gen-status').textContent), null, { timeout: 120_000 });
  assert.equal(await p.isEnabled('#cancel'), true);
  await p.click('#cancel');
  await p.waitForFunction(() => document.getElementById('gen-status').textContent === 'Cancelled.', null, { timeout: 60_000 });
  const steps = new Set((await p.evaluate(() => window.statuses)).map((s) => /^Step (\d+) of 50/.exec(s)?.[1]).filter(Boolean));
  assert.ok(steps.size <= 3, [...steps].join(' '));
  assert.equal(await p.isEnabled('#generate'), true);
  assert.equal(await p.isEnabled('#cancel'), false);
});

// Answer the page's engine calls 'load' and 'generate' on the main thread (no GPU work) and keep
// the options generate() was given in window.generateArgs.
function interceptEngine() {
  const post = Worker.prototype.postMessage;
  Worker.prototype.postMessage = function (msg, transfer) {
    const reply = (data) => setTimeout(() => this.dispatchEvent(new MessageEvent('message', { data: { id: msg.id, ...data } })));
    if (msg?.type === 'load') return reply({ result: { weightBytes: 1, gpuBytes: 1, precision: 'f32', weights: 'dense', description: ['intercepted'], maxFrames: 16 } });
    if (msg?.type === 'generate') {
      window.generateArgs = msg.args;
      return reply({ error: { name: 'InterceptedError', message: 'intercepted' } });
    }
    return post.call(this, msg, transfer);
  };
}

async function interceptedGenerate(page) {
  await page.evaluate(() => { window.generateArgs = null; });
  await page.click('#generate');
  await page.waitForFunction(() => window.generateArgs, null, { timeout: 120_000 });
  return page.evaluate(() => window.generateArgs);
}

test('long videos & motion: prompt travel, FreeNoise, context windows reach generate() and the URL', async () => {
  const page = await b.page.context().newPage();
  await page.addInitScript(interceptEngine);
  await page.goto(`${b.url}?preset=tiny&width=64&height=64&seed=5`);
  await page.waitForFunction(() => window.animatediffApp?.ready);
  assert.equal(await page.$eval('#long-video', (d) => d.open), false);
  await page.focus('#long-video summary');
  await page.keyboard.press('Enter');
  assert.equal(await page.$eval('#long-video', (d) => d.open), true);
  await page.fill('#prompt', '0: a cat sitting\n8: a cat running');
  await page.fill('#negative', 'blurry');
  await page.fill('#free-noise-length', '16');
  await page.fill('#context-length', '16');
  await page.fill('#context-overlap', '4');
  await page.check('#closed-loop');
  await page.selectOption('#prompt-interpolation', 'slerp');
  await page.fill('#motion-effect', 'down=0.5,mid=1,up=1');
  await page.fill('#frames', '48'); // above the module's 32: allowed with FreeNoise / context windows
  const expected = {
    prompt: ['0:a cat sitting', '8:a cat running'], negativePrompt: 'blurry', frames: 48, width: 64, height: 64, seed: '5',
    promptInterpolation: 'slerp', motionEffect: 'down=0.5,mid=1,up=1', freeNoiseLength: 16, contextLength: 16,
    contextOverlap: 4, closedLoop: true,
  };
  const args = await interceptedGenerate(page);
  for (const k of ['freeNoiseStride', 'freeNoiseWeights', 'noiseType', 'contextStride', 'contextFuse', 'motionScale']) {
    assert.ok(!(k in args), `${k} is empty on the page but was sent`);
  }
  assert.deepEqual(Object.fromEntries(Object.keys(expected).map((k) => [k, args[k]])), expected);

  // The URL carries the settings: a fresh page from it fills the same fields and sends the same options.
  const url = page.url();
  assert.equal(new URL(url).searchParams.get('free-noise-length'), '16');
  assert.equal(new URL(url).searchParams.get('closed-loop'), '1');
  await page.goto(url);
  await page.waitForFunction(() => window.animatediffApp?.ready);
  assert.equal(await page.$eval('#long-video', (d) => d.open), true);
  assert.equal(await page.inputValue('#prompt'), '0: a cat sitting\n8: a cat running');
  assert.equal(await page.isChecked('#closed-loop'), true);
  assert.deepEqual(await interceptedGenerate(page), args);
  await page.close();
});

test('every control has a label', async () => {
  const unlabeled = await b.page.$$eval('main input, main select, main textarea, main button',
    (els) => els.filter((e) => !(e.labels?.length || e.textContent.trim() || e.getAttribute('aria-label'))).map((e) => e.outerHTML));
  assert.deepEqual(unlabeled, []);
});

test('without WebGPU the page says so in plain words', async () => {
  const page = await b.page.context().newPage();
  await page.addInitScript(() => {
    delete Navigator.prototype.gpu;
  });
  await page.goto(b.url);
  await page.waitForSelector('#app-error:not([hidden])');
  assert.match(await page.textContent('#app-error'), /WebGPU is not available.*Chrome\/Edge 113\+/);
  assert.equal(await page.isEnabled('#generate'), false);
  await page.close();
});

test('no uncaught errors or panics on the page', () => {
  assert.deepEqual(b.errors, [], b.errors.join('\n'));
});
