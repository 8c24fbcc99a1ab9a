// Model presets for the page: real SD1.5 + AnimateDiff files on Hugging Face, with their sizes
// shown before anything is downloaded (the page also asks the server with a HEAD request and
// says so when it disagrees). Files are downloaded once into the model cache (cache.js).
//
// Sizes (bytes where the source gives them), from the Hugging Face file listings:
// - SD1.5 fp16 single file: Comfy-Org/stable-diffusion-v1-5-archive, v1-5-pruned-emaonly-fp16.safetensors
//   "2.13 GB" (https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/tree/main)
// - AnimateDiff v2: guoyww/animatediff mm_sd_v15_v2.ckpt, 1,817,888,431 bytes (its git-LFS pointer,
//   oid sha256:69ed0f5f…, as mirrored in https://huggingface.co/Drditone/LoRA/commit/d0e4c5239f1497c78ef9006159c61ec6f7d91fba)
// - AnimateDiff v3: guoyww/animatediff v3_sd15_mm.ckpt, 1,673,262,583 bytes ("1.67GB" in ComfyUI-Manager's
//   model list, https://huggingface.co/guoyww/animatediff/resolve/main/v3_sd15_mm.ckpt)
// - AnimateDiff-Lightning 4-step: ByteDance/AnimateDiff-Lightning animatediff_lightning_4step_diffusers.safetensors
//   "908 MB" (https://huggingface.co/ByteDance/AnimateDiff-Lightning/tree/main); its recipe (model card):
//   Euler, trailing timestep spacing, 4 steps, guidance 1 (no CFG).

export const HF = 'https://huggingface.co/';

const SD15 = {
  label: 'Stable Diffusion 1.5 (fp16)',
  path: 'Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly-fp16.safetensors',
  bytes: 2.13e9,
};
const MOTION = {
  v2: { label: 'AnimateDiff v2 motion module', path: 'guoyww/animatediff/resolve/main/mm_sd_v15_v2.ckpt', bytes: 1817888431 },
  v3: { label: 'AnimateDiff v3 motion module', path: 'guoyww/animatediff/resolve/main/v3_sd15_mm.ckpt', bytes: 1673262583 },
  lightning: {
    label: 'AnimateDiff-Lightning 4-step motion module',
    path: 'ByteDance/AnimateDiff-Lightning/resolve/main/animatediff_lightning_4step_diffusers.safetensors',
    bytes: 908e6,
  },
};

const DDIM_DEFAULTS = { frames: 16, width: 512, height: 512, steps: 25, guidance: 7.5, scheduler: '' };

/** Presets downloaded from Hugging Face (or a mirror: see `presetSources`). */
export const HF_PRESETS = {
  'sd15-v2': { title: 'SD1.5 + AnimateDiff v2', files: { model: SD15, motion: MOTION.v2 }, defaults: DDIM_DEFAULTS },
  'sd15-v3': { title: 'SD1.5 + AnimateDiff v3', files: { model: SD15, motion: MOTION.v3 }, defaults: DDIM_DEFAULTS },
  'sd15-lightning': {
    title: 'SD1.5 + AnimateDiff-Lightning (4 steps, fast)',
    files: { model: SD15, motion: MOTION.lightning },
    defaults: { frames: 16, width: 512, height: 512, steps: 4, guidance: 1, scheduler: 'euler' },
  },
};

/** Total bytes a preset downloads (as listed). */
export const presetBytes = (p) => Object.values(p.files).reduce((s, f) => s + f.bytes, 0);

/**
 * `{ model: url, motion: url }` of a preset. `base` replaces https://huggingface.co/ (a mirror
 * with the same layout, e.g. hf-mirror.com, or a local copy; the page takes it from ?hf=).
 */
export function presetSources(p, base = HF) {
  const root = base.endsWith('/') ? base : `${base}/`;
  return Object.fromEntries(Object.entries(p.files).map(([k, f]) => [k, new URL(f.path, new URL(root, globalThis.location?.href)).href]));
}

/**
 * Ask the server for each file's size (HEAD). → [{ key, url, expected, actual (null if
 * unknown), ok }]; network failures give actual null (the page says it could not check).
 */
export async function checkSizes(p, base = HF, signal) {
  const urls = presetSources(p, base);
  return Promise.all(Object.entries(p.files).map(async ([key, f]) => {
    let actual = null;
    try {
      const res = await fetch(urls[key], { method: 'HEAD', cache: 'no-store', signal });
      const n = Number(res.headers.get('content-length'));
      if (res.ok && Number.isFinite(n) && n > 0) actual = n;
    } catch {
      actual = null;
    }
    // The listings round to 3 digits: within 0.5 % is the same file.
    const ok = actual !== null && Math.abs(actual - f.bytes) <= f.bytes * 0.005;
    return { key, label: f.label, url: urls[key], expected: f.bytes, actual, ok };
  }));
}
