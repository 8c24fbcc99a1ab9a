// <animatediff-generator>: a drop-in text → video widget (Shadow DOM, no framework) on top of
// animatediff.js. Importing this module defines the element.
//
//   <script type="module" src="./node_modules/animatediff-wgpu/element.js"></script>
//   <animatediff-generator model="https://…/model.safetensors" motion="https://…/mm_sd_v15_v2.ckpt"
//       prompt="a corgi on the beach" frames="16" steps="25" seed="42"></animatediff-generator>
//
// Attributes: model, motion, vae, config, motion-config (URLs; one ending in "/" is a diffusers
// folder with the standard file names), prompt, negative-prompt, frames, width, height, steps,
// guidance, seed, scheduler, precision, weights, fps, format ("gif" | "webm"), preview ("off"
// turns the live preview off). Property `sources` (the load() argument) overrides the URL
// attributes, e.g. for Files picked by the user.
// Methods: generate() → Promise of the `done` detail, cancel(), dispose().
// Events: progress (detail: a load or generate progress report, or { phase: "export" }),
// preview (detail: { rgba, width, height, step, steps }), done (detail: { frames, result, blob }),
// error (detail: { error }).
import { createGenerator } from './animatediff.js';
import { encodeWebM } from './webm.js';

const SOURCE_ATTRS = ['model', 'motion', 'vae', 'config', 'motion-config'];
const NUMBER_ATTRS = { frames: 'frames', width: 'width', height: 'height', steps: 'steps', guidance: 'guidance' };

// Standard file names of diffusers folders (what a URL ending in "/" expands to).
const PIPELINE_FILES = ['model_index.json', 'unet/config.json', 'unet/diffusion_pytorch_model.safetensors', 'vae/config.json',
  'vae/diffusion_pytorch_model.safetensors', 'text_encoder/config.json', 'text_encoder/model.safetensors', 'scheduler/scheduler_config.json'];
const CONFIG_FILES = PIPELINE_FILES.filter((f) => f.endsWith('.json') && f !== 'model_index.json');
const COMPONENT_FILES = ['config.json', 'diffusion_pytorch_model.safetensors'];

function folderOr(url, files) {
  if (!url) return undefined;
  if (!url.endsWith('/')) return url;
  return Object.fromEntries(files.map((f) => [f, url + f]));
}

// Constructed stylesheets are not inline styles: they work under a strict CSP (style-src 'self').
let sheet = null;
function styles() {
  if (sheet || typeof CSSStyleSheet === 'undefined') return sheet;
  sheet = new CSSStyleSheet();
  sheet.replaceSync(`
    :host { display: block; font: inherit; color: inherit; max-width: 100%; }
    :host([hidden]) { display: none; }
    form { display: grid; gap: .5rem; }
    label { display: grid; gap: .25rem; }
    textarea { font: inherit; min-height: 3em; resize: vertical; }
    .row { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; }
    button, a[download] { font: inherit; padding: .35rem .8rem; }
    button:focus-visible, a:focus-visible, textarea:focus-visible { outline: 2px solid Highlight; outline-offset: 2px; }
    progress { width: 100%; }
    canvas { display: block; max-width: 100%; height: auto; image-rendering: auto; background: #222; margin-top: .5rem; }
    [hidden] { display: none !important; }
  `);
  return sheet;
}

function template() {
  const t = document.createElement('template');
  t.innerHTML = `
    <form part="form">
      <label part="prompt-label">Prompt<textarea name="prompt" rows="2" part="prompt"></textarea></label>
      <div class="row">
        <button type="submit" part="generate">Generate</button>
        <button type="button" part="cancel" class="cancel" disabled>Cancel</button>
      </div>
    </form>
    <progress part="progress" max="1" value="0" hidden></progress>
    <p part="status" class="status" role="status" aria-live="polite"></p>
    <canvas part="player" width="64" height="64" role="img" aria-label="Generated video (none yet)" hidden></canvas>
    <div class="row player-controls" hidden>
      <button type="button" part="play" class="play" aria-pressed="true">Pause</button>
      <a part="download" class="download" download="animatediff.gif" href="#">Download</a>
    </div>`;
  return t;
}

export class AnimateDiffGeneratorElement extends HTMLElement {
  static get observedAttributes() {
    return ['prompt'];
  }

  #ui;
  #generator = null;
  #creating = null;
  #loadedKey = null;
  #abort = null;
  #frames = null; // what the player shows: { images: ImageData[], fps }
  #frameIndex = 0;
  #timer = 0;
  #playing = true;
  #url = null;
  #scratch = null;
  /** The last result (see GenerateResult) and its exported Blob. */
  result = null;
  blob = null;
  /** load() sources; when set, overrides the URL attributes. */
  sources = null;

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    const s = styles();
    if (s) root.adoptedStyleSheets = [s];
    root.append(template().content.cloneNode(true));
    const q = (sel) => root.querySelector(sel);
    this.#ui = {
      form: q('form'), prompt: q('textarea'), generate: q('button[type=submit]'), cancel: q('.cancel'),
      progress: q('progress'), status: q('.status'), canvas: q('canvas'), controls: q('.player-controls'),
      play: q('.play'), download: q('.download'),
    };
    this.#ui.form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      // Failures are reported through the `error` event and the status line.
      this.generate().catch(() => {});
    });
    // Ctrl/Cmd+Enter in the prompt generates (Enter alone is a new line).
    this.#ui.prompt.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        this.#ui.form.requestSubmit();
      }
    });
    this.#ui.cancel.addEventListener('click', () => this.cancel());
    this.#ui.play.addEventListener('click', () => this.#setPlaying(!this.#playing));
  }

  connectedCallback() {
    this.#ui.prompt.value ||= this.getAttribute('prompt') ?? '';
  }

  attributeChangedCallback(name, _old, value) {
    if (name === 'prompt') this.#ui.prompt.value = value ?? '';
  }

  disconnectedCallback() {
    // A move within the document reconnects at once; only a real removal frees the GPU.
    queueMicrotask(() => {
      if (!this.isConnected) this.dispose();
    });
  }

  /** The generator (created on first use). */
  get generator() {
    return this.#generator;
  }

  #num(name) {
    const v = this.getAttribute(name);
    if (v == null || v.trim() === '') return undefined;
    const n = Number(v);
    if (!Number.isFinite(n)) throw Object.assign(new Error(`attribute ${name}="${v}" is not a number`), { name: 'InputError' });
    return n;
  }

  #sources() {
    if (this.sources) return this.sources;
    const a = (n) => this.getAttribute(n) || undefined;
    if (!a('model')) throw Object.assign(new Error('set the model attribute (a URL of an SD1.5 checkpoint or diffusers folder) or the sources property'), { name: 'InputError' });
    const s = { model: folderOr(a('model'), PIPELINE_FILES), motion: folderOr(a('motion'), COMPONENT_FILES) };
    if (a('vae')) s.vae = folderOr(a('vae'), COMPONENT_FILES);
    if (a('config')) s.config = folderOr(a('config'), CONFIG_FILES);
    if (a('motion-config')) s.motionConfig = a('motion-config');
    // Relative URLs are relative to the page.
    const abs = (v) => (typeof v === 'string' ? new URL(v, document.baseURI).href : v && typeof v === 'object' && !(v instanceof Blob) ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, abs(x)])) : v);
    return abs(s);
  }

  #options() {
    const o = { prompt: this.#ui.prompt.value.trim() || this.getAttribute('prompt') || '' };
    const neg = this.getAttribute('negative-prompt');
    if (neg) o.negativePrompt = neg;
    for (const [attr, key] of Object.entries(NUMBER_ATTRS)) {
      const v = this.#num(attr);
      if (v !== undefined) o[key] = v;
    }
    const seed = this.getAttribute('seed');
    if (seed != null && seed.trim() !== '') o.seed = seed.trim();
    const sched = this.getAttribute('scheduler');
    if (sched) o.scheduler = sched;
    return o;
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
  }

  #status(text) {
    this.#ui.status.textContent = text;
  }

  #busy(on) {
    this.#ui.generate.disabled = on;
    this.#ui.cancel.disabled = !on;
    this.#ui.progress.hidden = !on;
    this.toggleAttribute('busy', on);
    this.setAttribute('aria-busy', String(on));
  }

  /** Load the models when needed, then generate; resolves with the `done` event's detail. */
  async generate() {
    if (this.#abort) throw Object.assign(new Error('a generation is already running'), { name: 'InvalidStateError' });
    const abort = new AbortController();
    this.#abort = abort;
    this.#busy(true);
    const { progress } = this.#ui;
    try {
      const sources = this.#sources();
      const options = this.#options();
      if (!options.prompt) throw Object.assign(new Error('type a prompt first'), { name: 'InputError' });
      if (!this.#generator) {
        this.#status('Starting WebGPU…');
        this.#creating ??= createGenerator();
        try {
          this.#generator = await this.#creating;
        } finally {
          this.#creating = null;
        }
      }
      const g = this.#generator;
      const loadOpts = { precision: this.getAttribute('precision') || undefined, weights: this.getAttribute('weights') || undefined };
      const key = this.sources ? this.sources : JSON.stringify([sources, loadOpts]);
      if (this.#loadedKey !== key) {
        this.#loadedKey = null;
        this.#status('Loading the models…');
        await g.load(sources, {
          ...loadOpts,
          signal: abort.signal,
          onProgress: (p) => {
            if (p.phase === 'download' && p.total) {
              progress.max = p.total;
              progress.value = p.loaded;
              this.#status(`Downloading ${p.file.split('/').pop()}: ${(p.loaded / 2 ** 20).toFixed(1)} of ${(p.total / 2 ** 20).toFixed(1)} MiB`);
            } else if (p.phase === 'upload') {
              progress.max = p.totalTensors;
              progress.value = p.tensors;
              this.#status(`Uploading weights to the GPU: ${p.tensors} of ${p.totalTensors} tensors`);
            }
            this.#emit('progress', p);
          },
        });
        this.#loadedKey = key;
      }
      const wantPreview = this.getAttribute('preview') !== 'off';
      progress.value = 0;
      this.#status('Encoding the prompt…');
      const result = await g.generate({
        ...options,
        signal: abort.signal,
        onProgress: (p) => {
          if (p.phase === 'step') {
            progress.max = p.steps;
            progress.value = p.step;
            this.#status(`Step ${p.step} of ${p.steps} (${p.secondsPerStep.toFixed(2)} s/step, about ${Math.ceil(p.etaSeconds)} s left)`);
          } else if (p.phase === 'decode') {
            this.#status('Decoding the frames…');
          }
          this.#emit('progress', p);
        },
        onPreview: wantPreview
          ? (p) => {
            this.#show(p.rgba, p.width, p.height, Number(this.getAttribute('fps')) || 8, `Live preview after step ${p.step} of ${p.steps}`, 8);
            this.#emit('preview', p);
          }
          : undefined,
      });
      const fps = Number(this.getAttribute('fps')) || 8;
      const format = this.getAttribute('format') === 'webm' ? 'webm' : 'gif';
      const formatName = format === 'webm' ? 'WebM' : 'GIF';
      this.#status(`Making the ${formatName}…`);
      this.#emit('progress', { phase: 'export', format });
      const blob = format === 'webm' ? await encodeWebM(result, { fps }) : await g.encodeGif(result, { fps });
      this.result = result;
      this.blob = blob;
      this.#show(result.rgba, result.width, result.height, fps, `Generated video: ${options.prompt}, ${result.frameCount} frames`);
      if (this.#url) URL.revokeObjectURL(this.#url);
      this.#url = URL.createObjectURL(blob);
      this.#ui.download.href = this.#url;
      this.#ui.download.download = `animatediff.${format}`;
      this.#ui.download.textContent = `Download the ${formatName} (${(blob.size / 1e6).toFixed(2)} MB)`;
      this.#status(`Done: ${result.frameCount} frames ${result.width}×${result.height} in ${(result.timings.totalMs / 1000).toFixed(1)} s${result.seed !== undefined ? `, seed ${result.seed}` : ''}.`);
      const detail = { frames: result.rgba, result, blob };
      this.#emit('done', detail);
      return detail;
    } catch (error) {
      this.#status(error.name === 'AbortError' ? 'Cancelled.' : `Error: ${error.message}`);
      if (error.name === 'DeviceLostError' || error.name === 'EngineCrashedError') this.dispose();
      this.#emit('error', { error });
      throw error;
    } finally {
      this.#abort = null;
      this.#busy(false);
    }
  }

  /** Cancel a running load or generation (it stops at the next cancel point: a step, or a block of the VAE decode). */
  cancel() {
    this.#abort?.abort();
  }

  /** Free the GPU (models and device); the next generate() starts again. */
  dispose() {
    this.cancel();
    clearInterval(this.#timer);
    this.#timer = 0;
    const g = this.#generator;
    this.#generator = null;
    this.#loadedKey = null;
    g?.dispose().catch(() => {});
  }

  // The looping player: shows `rgba` frames, drawn `scale`× larger (the 1/8-size previews).
  #show(rgba, width, height, fps, label, scale = 1) {
    const { canvas, controls } = this.#ui;
    canvas.width = width * scale;
    canvas.height = height * scale;
    canvas.hidden = false;
    canvas.setAttribute('aria-label', label);
    controls.hidden = scale !== 1;
    this.#frames = { images: rgba.map((f) => new ImageData(new Uint8ClampedArray(f), width, height)), fps, scaled: scale !== 1 };
    this.#frameIndex = 0;
    clearInterval(this.#timer);
    this.#draw();
    this.#timer = setInterval(() => {
      if (!this.#playing || !this.#frames) return;
      this.#frameIndex = (this.#frameIndex + 1) % this.#frames.images.length;
      this.#draw();
    }, 1000 / fps);
  }

  #draw() {
    const { canvas } = this.#ui;
    const ctx = canvas.getContext('2d');
    const img = this.#frames?.images[this.#frameIndex];
    if (!ctx || !img) return;
    if (!this.#frames.scaled) {
      ctx.putImageData(img, 0, 0);
      return;
    }
    this.#scratch ??= document.createElement('canvas');
    this.#scratch.width = img.width;
    this.#scratch.height = img.height;
    this.#scratch.getContext('2d').putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(this.#scratch, 0, 0, canvas.width, canvas.height);
  }

  #setPlaying(on) {
    this.#playing = on;
    this.#ui.play.setAttribute('aria-pressed', String(on));
    this.#ui.play.textContent = on ? 'Pause' : 'Play';
  }
}

if (typeof customElements !== 'undefined' && !customElements.get('animatediff-generator')) {
  customElements.define('animatediff-generator', AnimateDiffGeneratorElement);
}
