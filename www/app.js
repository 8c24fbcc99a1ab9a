// The page: pick models, type a prompt, watch the steps, play and export the video. The
// engine runs in a Web Worker behind animatediff.js; this file is only UI. Settings live in
// the URL (?prompt=…&seed=…) so a run can be shared and reproduced.
import { createGenerator, cache } from './animatediff.js';
import { HF, HF_PRESETS, checkSizes, presetBytes, presetSources } from './presets.js';
import { encodeWebM } from './webm.js';
import { framesToPngZip } from './zip.js';

const $ = (id) => document.getElementById(id);

const TINY_FILES = ['unet/config.json', 'unet/diffusion_pytorch_model.safetensors', 'vae/config.json',
  'vae/diffusion_pytorch_model.safetensors', 'text_encoder/config.json', 'text_encoder/model.safetensors',
  'scheduler/scheduler_config.json'];
const PRESETS = {
  tiny: {
    sources: () => ({
      model: Object.fromEntries(TINY_FILES.map((f) => [f, `fixtures/tiny/diffusers/${f}`])),
      motion: {
        'config.json': 'fixtures/tiny/motion_adapter/config.json',
        'diffusion_pytorch_model.safetensors': 'fixtures/tiny/motion_adapter/diffusion_pytorch_model.safetensors',
      },
    }),
    // The diffusers reference run of tests/fixtures/tiny.
    defaults: { frames: 8, width: 192, height: 128, steps: 4, guidance: 7.5 },
  },
  files: { sources: localSources, defaults: { frames: 16, width: 512, height: 512, steps: 25, guidance: 7.5 } },
};
// Hugging Face presets (presets.js); ?hf=BASE swaps https://huggingface.co/ for a mirror.
const hfBase = () => new URLSearchParams(location.search).get('hf') || HF;
for (const [k, p] of Object.entries(HF_PRESETS)) {
  PRESETS[k] = { sources: () => presetSources(p, hfBase()), defaults: p.defaults, hf: p };
}
for (const k of ['tiny', 'files']) PRESETS[k].defaults.scheduler = '';
// The "Long videos & motion" fieldset: element id (= URL key = CLI flag) → generate() option.
// Empty (unchecked) = not sent, so the engine's defaults apply.
const LONG = {
  'prompt-interpolation': 'promptInterpolation', 'motion-scale': 'motionScale', 'motion-effect': 'motionEffect',
  'free-noise-length': 'freeNoiseLength', 'free-noise-stride': 'freeNoiseStride', 'free-noise-weights': 'freeNoiseWeights',
  'noise-type': 'noiseType', 'context-length': 'contextLength', 'context-stride': 'contextStride',
  'context-overlap': 'contextOverlap', 'context-fuse': 'contextFuse', 'closed-loop': 'closedLoop',
};
const SETTINGS = ['prompt', 'negative', 'seed', 'steps', 'guidance', 'frames', 'width', 'height', 'fps', 'scheduler', ...Object.keys(LONG)];
// A control's value as a URL string ('' = unset); checkboxes are '1' or ''.
const getValue = (el) => (el.type === 'checkbox' ? (el.checked ? '1' : '') : el.value);
const setValue = (el, v) => (el.type === 'checkbox' ? (el.checked = v === '1' || v === 'true') : (el.value = v));

let generator = null;
let loadedKey = null; // which sources are loaded
let busy = null; // AbortController of the running job
let result = null;
let player = null;

// ---- plain-words messages -------------------------------------------------------------------

function showError(e) {
  const el = $('app-error');
  let msg = e?.message ?? String(e);
  if (e?.name === 'NotSupportedError') msg = `WebGPU is not available: ${msg}`;
  if (e?.name === 'DeviceLostError' || e?.name === 'EngineCrashedError') {
    msg += ' The engine was restarted; press Generate to try again (models are reloaded).';
    resetGenerator();
  }
  el.textContent = msg;
  el.hidden = false;
}

function clearError() {
  $('app-error').hidden = true;
}

// Prompt travel: lines "N: text" (from frame N on) → ["N:text", …]; anything else is sent as typed.
function promptValue(text) {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  if (!lines.some((l) => /^\d+\s*:/.test(l))) return text;
  return lines.map((l) => l.replace(/^(\d+)\s*:\s*/, '$1:'));
}

// The long-video and motion options that are set (see LONG).
function longVideoOptions() {
  const o = {};
  for (const [id, name] of Object.entries(LONG)) {
    const el = $(id);
    const v = getValue(el).trim();
    if (v === '') continue;
    if (el.type === 'checkbox') o[name] = true;
    else if (el.type === 'number' || (id === 'motion-effect' && Number.isFinite(Number(v)))) o[name] = Number(v);
    else o[name] = v;
  }
  return o;
}

// Frames may exceed the motion module's length only with FreeNoise or context windows.
let moduleFrames = 32;
function syncFramesMax() {
  if ($('free-noise-length').value !== '' || $('context-length').value !== '') $('frames').removeAttribute('max');
  else $('frames').max = moduleFrames;
}

const mb = (b) => `${(b / 1e6).toFixed(1)} MB`;
const secs = (s) => (s < 10 ? `${s.toFixed(1)} s` : `${Math.round(s)} s`);

// ---- settings <-> URL -----------------------------------------------------------------------

function preset() {
  return document.querySelector('input[name=preset]:checked').value;
}

function readURL() {
  const q = new URLSearchParams(location.search);
  const p = q.get('preset');
  if (p && PRESETS[p]) document.querySelector(`input[name=preset][value=${p}]`).checked = true;
  const d = PRESETS[preset()].defaults;
  for (const k of ['frames', 'width', 'height', 'steps', 'guidance']) $(k).value = d[k];
  for (const k of SETTINGS) if (q.has(k)) setValue($(k), q.get(k));
  for (const k of ['precision', 'weights']) if (q.has(k)) $(k).value = q.get(k);
  if (Object.keys(LONG).some((k) => getValue($(k)) !== '')) $('long-video').open = true;
  syncFramesMax();
}

function writeURL(extra = {}) {
  const q = new URLSearchParams();
  q.set('preset', preset());
  for (const k of SETTINGS) if (getValue($(k)) !== '') q.set(k, getValue($(k)));
  q.set('precision', $('precision').value);
  q.set('weights', $('weights').value);
  for (const [k, v] of Object.entries(extra)) q.set(k, v);
  history.replaceState(null, '', `${location.pathname}?${q}`);
}

// ---- local files ----------------------------------------------------------------------------

// A folder input's files → { "relative/path": File } below the picked folder.
function folderMap(input) {
  const files = [...input.files];
  if (!files.length) return undefined;
  return Object.fromEntries(files.map((f) => [f.webkitRelativePath.split('/').slice(1).join('/') || f.name, f]));
}

function localSources() {
  const model = $('file-model').files[0] ?? folderMap($('dir-model'));
  const motion = $('file-motion').files[0];
  if (!model) throw Object.assign(new Error('pick a model: a single-file checkpoint or a diffusers folder'), { name: 'InputError' });
  if (!motion && !$('dir-model').files.length) throw Object.assign(new Error('pick a motion module (.ckpt or .safetensors)'), { name: 'InputError' });
  return {
    model,
    motion,
    vae: $('file-vae').files[0],
    config: folderMap($('dir-config')),
    motionConfig: $('file-motion-config').files[0],
  };
}

function sourcesKey() {
  const lora = [...$('file-lora').files].map((f) => [f.name, f.size, f.lastModified, $('lora-weight').value]);
  if (preset() !== 'files') return JSON.stringify([preset(), hfBase(), lora]);
  const ids = ['file-model', 'dir-model', 'file-motion', 'file-vae', 'dir-config', 'file-motion-config'];
  return JSON.stringify([ids.map((id) => [...$(id).files].map((f) => [f.name, f.size, f.lastModified])), lora]);
}

// ---- presets and the model cache -------------------------------------------------------------

// One radio per Hugging Face preset, with its download size, before the local-files one.
function addPresetRadios() {
  const files = document.querySelector('input[name=preset][value=files]').closest('label');
  for (const [k, p] of Object.entries(HF_PRESETS)) {
    const label = document.createElement('label');
    label.className = 'row';
    const input = document.createElement('input');
    input.type = 'radio';
    input.name = 'preset';
    input.value = k;
    label.append(input, ` ${p.title} — ${gb(presetBytes(p))} download from Hugging Face (${Object.values(p.files).map((f) => `${f.label} ${gb(f.bytes)}`).join(', ')}); cached after the first time`);
    files.before(label);
  }
}

const gb = (b) => (b >= 1e9 ? `${(b / 1e9).toFixed(2)} GB` : mb(b));

// Ask the server for the preset's file sizes (HEAD) and say whether they are what the page lists.
async function checkPreset() {
  const el = $('preset-check');
  const p = PRESETS[preset()].hf;
  el.hidden = !p;
  if (!p) return;
  const key = preset();
  el.textContent = 'Checking the file sizes with the server…';
  const rows = await checkSizes(p, hfBase());
  if (preset() !== key) return;
  el.textContent = rows.map((r) => (r.actual === null
    ? `${r.label}: could not ask the server (offline?); listed as ${gb(r.expected)}.`
    : r.ok ? `${r.label}: ${gb(r.actual)}, as listed.`
    : `${r.label}: the server says ${gb(r.actual)}, not the ${gb(r.expected)} listed (a different file?).`)).join(' ');
}

async function updateCacheStatus() {
  try {
    const u = await cache.usage();
    $('cache-size').textContent = `${mb(u.bytes)} in ${u.files} file${u.files === 1 ? '' : 's'}` +
      (Number.isFinite(u.available) ? ` (${gb(u.available)} free for this site)` : '');
    $('cache-clear').disabled = u.files === 0;
    // One line per cached file, each with its own Remove button.
    const list = $('cache-list');
    list.replaceChildren(...(await cache.entries()).map((e) => {
      const li = document.createElement('li');
      const name = decodeURIComponent(new URL(e.url).pathname.split('/').pop());
      li.textContent = `${name}: ${mb(e.cachedBytes)}${e.complete ? '' : ` of ${mb(e.size)} (partial: resumes on the next load)`} `;
      li.title = e.url;
      const rm = document.createElement('button');
      rm.type = 'button';
      rm.className = 'secondary';
      rm.textContent = 'Remove';
      rm.setAttribute('aria-label', `Remove ${name} from the cache`);
      rm.addEventListener('click', async () => {
        await cache.clear([e.url]);
        updateCacheStatus();
      });
      li.append(rm);
      return li;
    }));
    $('cache-details').hidden = u.files === 0;
  } catch (e) {
    $('cache-size').textContent = `unavailable (${e.message})`;
  }
}

// Refuse before downloading when the preset's files that are not cached yet do not fit.
async function checkQuota(urls, bytes) {
  const [u, entries] = await Promise.all([cache.usage(), cache.entries()]);
  const cached = entries.filter((e) => urls.includes(e.url)).reduce((s, e) => s + e.cachedBytes, 0);
  const needed = bytes - cached;
  if (needed > u.available) {
    throw Object.assign(new Error(`these models need ${gb(needed)} more browser storage, ${gb(u.available)} is available. ` +
      'Free disk space, clear cached models below, or pick smaller models.'), { name: 'QuotaError' });
  }
}

// ---- engine ---------------------------------------------------------------------------------

async function ensureGenerator() {
  if (!generator) {
    generator = createGenerator();
    generator.catch(() => { generator = null; });
  }
  return generator;
}

function resetGenerator() {
  const g = generator;
  generator = null;
  loadedKey = null;
  g?.then((x) => x.dispose()).catch(() => {});
}

function setBusy(controller) {
  busy = controller;
  $('cancel').disabled = !controller;
  $('load').disabled = !!controller;
  $('generate').disabled = !!controller;
}

async function loadModels() {
  const g = await ensureGenerator();
  const key = sourcesKey();
  const precision = $('precision').value;
  const weights = $('weights').value;
  if (loadedKey === `${key}|${precision}|${weights}`) return g;
  const sources = PRESETS[preset()].sources();
  const loraFile = $('file-lora').files[0];
  if (loraFile) sources.lora = [{ source: loraFile, weight: Number($('lora-weight').value) || 1 }];
  const hf = PRESETS[preset()].hf;
  if (hf) await checkQuota(Object.values(sources).filter((v) => typeof v === 'string'), presetBytes(hf));
  const bar = $('load-progress');
  const status = $('load-status');
  bar.hidden = false;
  bar.removeAttribute('value');
  status.textContent = 'Loading models…';
  const t0 = performance.now();
  const info = await g.load(sources, {
    precision,
    weights,
    signal: busy?.signal,
    onProgress: (p) => {
      if (p.phase === 'download') {
        if (p.total) {
          bar.max = p.total;
          bar.value = p.loaded;
        }
        const file = p.file.split('/').slice(-2).join('/');
        const from = p.cached > 0 ? `, ${mb(p.cached)} from the cache` : '';
        status.textContent = `Downloading ${file}: ${mb(p.loaded)}${p.total ? ` of ${mb(p.total)}` : ''} (${mb(p.bytesPerSecond)}/s${from})`;
      } else if (p.phase === 'upload') {
        bar.max = p.totalTensors;
        bar.value = p.tensors;
        status.textContent = `Uploading weights to the GPU: ${p.tensors} of ${p.totalTensors} tensors`;
      }
    },
  });
  loadedKey = `${key}|${precision}|${weights}`;
  updateCacheStatus();
  bar.hidden = true;
  status.textContent = `Loaded ${mb(info.weightBytes)} of weights (${info.precision}, ${info.weights}, ${mb(info.gpuBytes)} on the GPU) in ` +
    `${secs((performance.now() - t0) / 1000)}. ${weights === 'auto' && info.weightsReason ? `Weights: ${info.weightsReason}. ` : ''}${info.description.join('; ')}.`;
  moduleFrames = info.maxFrames || 32;
  syncFramesMax();
  return g;
}

function seedValue() {
  const s = $('seed').value.trim();
  if (s === '') return undefined;
  if (!/^\d+$/.test(s)) throw Object.assign(new Error(`the seed must be a whole number (or empty for a random one), not "${s}"`), { name: 'InputError' });
  return s;
}

async function generate() {
  clearError();
  const controller = new AbortController();
  setBusy(controller);
  const status = $('gen-status');
  const bar = $('gen-progress');
  try {
    const seed = seedValue();
    const g = await loadModels();
    const opts = {
      prompt: promptValue($('prompt').value),
      negativePrompt: promptValue($('negative').value),
      frames: Number($('frames').value),
      width: Number($('width').value),
      height: Number($('height').value),
      steps: Number($('steps').value),
      guidance: Number($('guidance').value),
      scheduler: $('scheduler').value || undefined,
      ...longVideoOptions(),
      seed,
      signal: controller.signal,
      onPreview: $('preview-on').checked ? showPreview : undefined,
      onProgress: (p) => {
        if (p.phase === 'encode') status.textContent = 'Encoding the prompt…';
        if (p.phase === 'decode') status.textContent = 'Decoding frames…';
        if (p.phase === 'plan' && p.fallback) status.textContent = `Out of GPU memory: starting again with a smaller plan (${p.levers})…`;
        if (p.phase === 'step') {
          bar.max = p.steps;
          bar.value = p.step;
          status.textContent = `Step ${p.step} of ${p.steps} · ${p.secondsPerStep.toFixed(2)} s/step · ETA ${secs(p.etaSeconds)}`;
        }
      },
    };
    writeURL();
    bar.hidden = false;
    bar.value = 0;
    status.textContent = 'Starting…';
    const t0 = performance.now();
    result = await g.generate(opts);
    const total = (performance.now() - t0) / 1000;
    status.textContent = `Done in ${secs(total)} (${result.timings.secondsPerStep.toFixed(2)} s/step).`;
    writeURL({ seed: String(result.seed) });
    showResult(result);
  } catch (e) {
    if (e?.name === 'AbortError') status.textContent = 'Cancelled.';
    else {
      status.textContent = '';
      showError(e);
    }
  } finally {
    bar.hidden = true;
    stopPreview();
    setBusy(null);
    updateCacheStatus();
  }
}

// ---- live preview: each step's predicted video at 1/8 size, scaled up and looping --------------

let preview = null;

function showPreview(p) {
  const canvas = $('live-preview');
  canvas.width = p.width * 8;
  canvas.height = p.height * 8;
  canvas.hidden = false;
  canvas.setAttribute('aria-label', `Live preview of the current prediction after step ${p.step} of ${p.steps}`);
  const small = preview?.small ?? document.createElement('canvas');
  small.width = p.width;
  small.height = p.height;
  const images = p.rgba.map((px) => new ImageData(new Uint8ClampedArray(px), p.width, p.height));
  let frame = 0;
  const draw = () => {
    small.getContext('2d').putImageData(images[frame], 0, 0);
    const ctx = canvas.getContext('2d');
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
    frame = (frame + 1) % images.length;
  };
  clearInterval(preview?.timer);
  draw();
  preview = { small, timer: setInterval(draw, 1000 / Math.max(1, Number($('fps').value) || 8)) };
}

function stopPreview() {
  clearInterval(preview?.timer);
  preview = null;
  $('live-preview').hidden = true;
}

// ---- player and export ----------------------------------------------------------------------

function showResult(r) {
  $('video').hidden = false;
  const canvas = $('player');
  canvas.width = r.width;
  canvas.height = r.height;
  canvas.style.aspectRatio = `${r.width} / ${r.height}`;
  const ctx = canvas.getContext('2d');
  const images = r.rgba.map((px) => new ImageData(px, r.width, r.height));
  $('video-info').textContent = `${r.frameCount} frames, ${r.width}×${r.height}, seed ${r.seed ?? '(given latents)'}.`;
  for (const id of ['gif-link', 'webm-link', 'png-link']) $(id).hidden = true;
  let frame = 0;
  clearInterval(player?.timer);
  const fps = () => Math.max(1, Number($('fps').value) || 8);
  const draw = () => {
    ctx.putImageData(images[frame], 0, 0);
    frame = (frame + 1) % images.length;
  };
  draw();
  player = { playing: true, timer: setInterval(draw, 1000 / fps()), draw, fps };
  $('play').textContent = 'Pause';
  $('play').setAttribute('aria-pressed', 'true');
}

function togglePlay() {
  if (!player) return;
  player.playing = !player.playing;
  clearInterval(player.timer);
  if (player.playing) player.timer = setInterval(player.draw, 1000 / player.fps());
  $('play').textContent = player.playing ? 'Pause' : 'Play';
  $('play').setAttribute('aria-pressed', String(player.playing));
}

async function exportGif() {
  if (!result) return;
  clearError();
  try {
    const g = await ensureGenerator();
    const blob = await g.encodeGif(result, { fps: Number($('fps').value) || 8 });
    const link = $('gif-link');
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(blob);
    link.textContent = `Download the GIF (${mb(blob.size)})`;
    link.hidden = false;
    link.focus();
  } catch (e) {
    showError(e);
  }
}

// WebM (WebCodecs, or MediaRecorder in real time) and a zip of PNG frames, made on the page.
async function exportWith(button, linkId, what, encode) {
  if (!result) return;
  clearError();
  const label = button.textContent;
  button.disabled = true;
  button.textContent = `Making the ${what}…`;
  try {
    const blob = await encode(result);
    const link = $(linkId);
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(blob);
    link.textContent = `Download the ${what} (${mb(blob.size)})`;
    link.hidden = false;
    link.focus();
  } catch (e) {
    showError(e);
  } finally {
    button.disabled = false;
    button.textContent = label;
  }
}

// ---- wiring ---------------------------------------------------------------------------------

function main() {
  addPresetRadios();
  readURL();
  const syncPreset = () => {
    $('local-files').hidden = preset() !== 'files';
    checkPreset();
  };
  updateCacheStatus();
  $('cache-clear').addEventListener('click', async () => {
    await cache.clear();
    updateCacheStatus();
  });
  syncPreset();
  for (const r of document.querySelectorAll('input[name=preset]')) {
    r.addEventListener('change', () => {
      syncPreset();
      const d = PRESETS[preset()].defaults;
      for (const k of Object.keys(d)) $(k).value = d[k];
      writeURL();
    });
  }
  for (const k of [...SETTINGS, 'precision', 'weights']) $(k).addEventListener('change', () => writeURL());
  for (const k of ['free-noise-length', 'context-length']) $(k).addEventListener('input', syncFramesMax);
  $('fps').addEventListener('change', () => {
    if (player?.playing) {
      clearInterval(player.timer);
      player.timer = setInterval(player.draw, 1000 / player.fps());
    }
  });
  $('random-seed').addEventListener('click', () => {
    $('seed').value = String(Math.floor(Math.random() * 2 ** 32));
    writeURL();
  });
  $('gen-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    generate();
  });
  $('model-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError();
    const controller = new AbortController();
    setBusy(controller);
    try {
      await loadModels();
    } catch (e) {
      if (e?.name === 'AbortError') $('load-status').textContent = 'Cancelled.';
      else {
        $('load-status').textContent = '';
        showError(e);
      }
    } finally {
      $('load-progress').hidden = true;
      setBusy(null);
      updateCacheStatus();
    }
  });
  $('cancel').addEventListener('click', () => busy?.abort());
  $('play').addEventListener('click', togglePlay);
  $('export-gif').addEventListener('click', exportGif);
  $('export-webm').addEventListener('click', () => exportWith($('export-webm'), 'webm-link', 'WebM', (r) => encodeWebM(r, { fps: Number($('fps').value) || 8 })));
  $('export-png').addEventListener('click', () => exportWith($('export-png'), 'png-link', 'PNG frames', (r) => framesToPngZip(r)));
  if (!('gpu' in navigator)) {
    showError(Object.assign(new Error('this browser does not expose WebGPU (navigator.gpu is missing). ' +
      'Use Chrome/Edge 113+, Firefox 141+ (Windows) or Safari 26+, over https or localhost.'), { name: 'NotSupportedError' }));
    return;
  }
  $('load').disabled = false;
  $('generate').disabled = false;
  window.animatediffApp = { ready: true, get result() { return result; } };
}

main();
