#!/usr/bin/env python3
"""Long-video references (diffusers 0.42.1) on the tiny fixture models: prompt travel, FreeNoise, whole-UNet
context windows and the motion-module effect blend.

    "$(scripts/fixtures-env)/bin/python" scripts/make_long_video_fixtures.py [--out tests/fixtures]

Reads tests/fixtures/tiny/{diffusers,motion_adapter} (make_fixtures.py) and writes
tests/fixtures/tiny/long/long_video.{safetensors,json}. Deterministic (seeded CPU generators, 1 thread).
All runs: 64×64, DDIM from the tiny pipeline's scheduler config, 3 steps, CFG 7.5, explicit initial latents
(`*.init_latents`, the f32 randn of seed META["seeds"][...] unless said otherwise).

Oracles:
  travel_lerp   AnimateDiffPipeline.enable_free_noise(context_length=F) (one window = plain motion modules) with
                prompt / negative_prompt dicts: diffusers' `_encode_prompt_free_noise` + default `_lerp`.
                Keys: embeds [2F, 77, D] (negative rows first), final_latents, frames_5_8 (f16 [1,3,64,64,3]).
  travel_slerp  the same embeddings with `prompt_interpolation_callback` = A1111's slerp over the whole [77, D]
                tensor (scripts/animatediff_prompt.py in continue-revolution/sd-webui-animatediff: lerp when
                |cos| > 0.9995). Keys: embeds.
  fn_pyramid    FreeNoise, 12 frames, context 8, stride 2, pyramid weights: final_latents.
  fn_flat_misaligned  FreeNoise, 11 frames, context 8, stride 2, flat: the last window (3, 11) only
                accumulates its new frame (diffusers' count uses weights[-k] for all k tail frames).
  fn_seed       FreeNoise, 12 frames, context 8 stride 2, pyramid, noise_type shuffle_context, latents from
                `generator=torch.Generator().manual_seed(seed)`: init_latents = what prepare_latents returns
                (randn [1,4,F,h,w] then frames >= 8 overwritten by randperm-shuffled blocks of `stride`
                earlier frames, in place, in order), final_latents, frames_8_12 (f16 [1,4,64,64,3]: frames 8..11).
  ctx_*         whole-UNet context windows (ComfyUI-AnimateDiff-Evolved `context.py` "looped_uniform" schedule,
                written here from its description: window starts rotate by ordered_halving(step), wrap modulo F;
                closed_loop extends the last start to F + pad instead of F + pad - overlap): every step runs
                diffusers' UNetMotionModel on each window's frames (CFG batch [uncond, cond]), fuses ε with
                Σ w·ε / Σ w (ADE `sliding_calc_cond_batch`), then guidance and the DDIM step.
                ctx_pyramid: 12 frames, length 8, overlap 2, stride 1, open; ctx_flat_loop: overlap 4, closed loop, flat.
                JSON: the windows per step. ctx_flat_loop.frames_8_12: decode_latents + postprocess_video of frames 8..11.
  effect        8 frames, every motion module blended out = x + e·(mm(x) − x) (ADE `effect_multival`) with
                e = 0.3 in down blocks, 1.0 in the mid block, 0.7 in up blocks (forward hooks).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402  (sets 1 torch thread, offline HF env)

from diffusers import AnimateDiffPipeline, AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import CLIPTextModel  # noqa: E402

SEED = 4321
H = W = 64
STEPS = 3
GUIDANCE = 7.5
PROMPTS = {0: "a cat sitting on a sofa", 5: "a dog running in the snow"}
NEGATIVES = {0: "blurry", 3: "low quality, watermark"}
PROMPT = "a lighthouse on a cliff at sunset"
NEGATIVE = "blurry, low quality"
EFFECT = {"down": 0.3, "mid": 1.0, "up": 0.7}


def gen(seed):
    return torch.Generator("cpu").manual_seed(seed)


def randn_latents(frames, seed):
    return torch.randn([1, 4, frames, H // 8, W // 8], generator=gen(seed))


def make_pipe(tiny, tok):
    dd = tiny / "diffusers"
    pipe = AnimateDiffPipeline(
        vae=AutoencoderKL.from_pretrained(dd / "vae").eval(),
        text_encoder=CLIPTextModel.from_pretrained(dd / "text_encoder").eval(),
        tokenizer=tok,
        unet=UNet2DConditionModel.from_pretrained(dd / "unet").eval(),
        motion_adapter=MotionAdapter.from_pretrained(tiny / "motion_adapter").eval(),
        scheduler=DDIMScheduler.from_pretrained(dd / "scheduler"),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def slerp_callback(start_frame, end_frame, start, end):
    """A1111's slerp between two [1, 77, D] embeddings, one tensor as one vector."""
    n = end_frame - start_frame + 1
    out = []
    u0, u1 = start / start.norm(), end / end.norm()
    dot = (u0 * u1).sum()
    for i in range(n):
        t = i / (n - 1)
        if dot.abs() > 0.9995:
            out.append((1.0 - t) * start + t * end)
        else:
            omega = dot.acos()
            out.append((((1.0 - t) * omega).sin() * start + (t * omega).sin() * end) / omega.sin())
    return torch.cat(out)


def run(pipe, prompt, negative, frames, latents=None, generator=None, output_type="latent"):
    with torch.no_grad():
        return pipe(prompt, negative_prompt=negative, num_frames=frames, height=H, width=W, num_inference_steps=STEPS,
                    guidance_scale=GUIDANCE, latents=latents, generator=generator, output_type=output_type).frames


def travel(pipe, out):
    frames = 8
    lat = randn_latents(frames, SEED)
    pipe.enable_free_noise(context_length=frames, context_stride=1)
    with torch.no_grad():
        emb, _ = pipe._encode_prompt_free_noise(PROMPTS, frames, "cpu", 1, True, NEGATIVES)
    out["travel_lerp.init_latents"] = lat
    out["travel_lerp.embeds"] = emb
    out["travel_lerp.final_latents"] = run(pipe, PROMPTS, NEGATIVES, frames, latents=lat.clone())
    video = run(pipe, PROMPTS, NEGATIVES, frames, latents=lat.clone(), output_type="np")
    out["travel_lerp.frames_5_8"] = torch.from_numpy(video[:, 5:].copy()).half()  # after the second keyframe
    pipe.enable_free_noise(context_length=frames, context_stride=1,
                           prompt_interpolation_callback=lambda s, e, a, b: slerp_callback(s, e, a, b))
    with torch.no_grad():
        emb, _ = pipe._encode_prompt_free_noise(PROMPTS, frames, "cpu", 1, True, NEGATIVES)
    out["travel_slerp.embeds"] = emb
    pipe.disable_free_noise()


def free_noise(pipe, out, js):
    pipe.enable_free_noise(context_length=8, context_stride=2, weighting_scheme="pyramid")
    lat = randn_latents(12, SEED + 1)
    out["fn_pyramid.init_latents"] = lat
    out["fn_pyramid.final_latents"] = run(pipe, PROMPT, NEGATIVE, 12, latents=lat.clone())

    pipe.enable_free_noise(context_length=8, context_stride=2, weighting_scheme="flat")
    lat = randn_latents(11, SEED + 2)
    out["fn_flat_misaligned.init_latents"] = lat
    out["fn_flat_misaligned.final_latents"] = run(pipe, PROMPT, NEGATIVE, 11, latents=lat.clone())

    pipe.enable_free_noise(context_length=8, context_stride=2, weighting_scheme="pyramid", noise_type="shuffle_context")
    seed = SEED + 3
    with torch.no_grad():
        init = pipe.prepare_latents(1, 4, 12, H, W, torch.float32, torch.device("cpu"), gen(seed))
    out["fn_seed.init_latents"] = init
    out["fn_seed.final_latents"] = run(pipe, PROMPT, NEGATIVE, 12, generator=gen(seed))
    frames = run(pipe, PROMPT, NEGATIVE, 12, generator=gen(seed), output_type="np")
    out["fn_seed.frames_8_12"] = torch.from_numpy(frames[:, 8:].copy()).half()  # the shuffled-noise frames
    js["seeds"]["fn_seed"] = seed
    pipe.disable_free_noise()


def ordered_halving(step):
    """step's 64 bits reversed, as a fraction of 2^64."""
    return int(f"{step:064b}"[::-1], 2) / (1 << 64)


def looped_uniform(frames, length, stride, overlap, closed_loop, step):
    if frames <= length:
        return [list(range(frames))]
    stride = min(stride, int(np.ceil(np.log2(frames / length))) + 1)
    oh = ordered_halving(step)
    windows = []
    for k in range(stride):
        hop = 1 << k
        pad = int(round(frames * oh))
        first = int(oh * hop) + pad
        stop = frames + pad - (0 if closed_loop else overlap)
        for j in range(first, stop, length * hop - overlap):
            windows.append([e % frames for e in range(j, j + length * hop, hop)])
    return windows


def fuse_weights(n, fuse):
    if fuse == "flat":
        return [1.0] * n
    half = n // 2 if n % 2 == 0 else (n + 1) // 2
    up = list(range(1, half + 1)) if n % 2 == 0 else list(range(1, half))
    return up + (up[::-1] if n % 2 == 0 else [half] + up[::-1])


def context_run(pipe, lat, prompt_embeds, length, overlap, closed_loop, fuse, js_windows):
    """DDIM with CFG, ε fused over whole-UNet windows each step."""
    sched = pipe.scheduler
    sched.set_timesteps(STEPS)
    frames = lat.shape[2]
    x = lat * sched.init_noise_sigma
    for i, t in enumerate(sched.timesteps):
        windows = looped_uniform(frames, length, 1, overlap, closed_loop, i)
        js_windows.append(windows)
        eps = torch.zeros([2, 4, frames, H // 8, W // 8])
        count = torch.zeros([1, 1, frames, 1, 1])
        for win in windows:
            sub = x[:, :, win]
            inp = sched.scale_model_input(torch.cat([sub] * 2), t)
            ehs = prompt_embeds.repeat_interleave(len(win), dim=0)
            with torch.no_grad():
                e = pipe.unet(inp, t, encoder_hidden_states=ehs).sample
            w = torch.tensor(fuse_weights(len(win), fuse), dtype=torch.float32).view(1, 1, -1, 1, 1)
            eps[:, :, win] += e * w
            count[:, :, win] += w
        eps = eps / count
        u, c = eps.chunk(2)
        x = sched.step(u + GUIDANCE * (c - u), t, x).prev_sample
    return x


def context_windows(pipe, out, js):
    with torch.no_grad():
        pe, ne = pipe.encode_prompt(PROMPT, "cpu", 1, True, NEGATIVE)
    embeds = torch.cat([ne, pe])
    for name, overlap, loop, fuse, seed in (("ctx_pyramid", 2, False, "pyramid", SEED + 4), ("ctx_flat_loop", 4, True, "flat", SEED + 5)):
        lat = randn_latents(12, seed)
        wins = []
        out[f"{name}.init_latents"] = lat
        x = context_run(pipe, lat.clone(), embeds, 8, overlap, loop, fuse, wins)
        out[f"{name}.final_latents"] = x
        if name == "ctx_flat_loop":
            with torch.no_grad():
                video = pipe.video_processor.postprocess_video(video=pipe.decode_latents(x, 16), output_type="np")
            out[f"{name}.frames_8_12"] = torch.from_numpy(video[:, 8:].copy()).half()
        js["windows"][name] = wins


def effect(pipe, out):
    handles = []

    def hook(e):
        def f(module, args, output):
            x = args[0]
            return x + e * (output - x)
        return f

    unet = pipe.unet
    for blk in unet.down_blocks:
        handles += [m.register_forward_hook(hook(EFFECT["down"])) for m in blk.motion_modules]
    handles += [m.register_forward_hook(hook(EFFECT["mid"])) for m in unet.mid_block.motion_modules]
    for blk in unet.up_blocks:
        handles += [m.register_forward_hook(hook(EFFECT["up"])) for m in blk.motion_modules]
    lat = randn_latents(8, SEED + 6)
    out["effect.init_latents"] = lat
    out["effect.final_latents"] = run(pipe, PROMPT, NEGATIVE, 8, latents=lat.clone())
    for h in handles:
        h.remove()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "tests" / "fixtures"))
    ap.add_argument("--clip-bpe", default=str(Path(sys.prefix) / "clip-bpe" / "open_clip_torch-3.3.0-py3-none-any.whl"))
    args = ap.parse_args()
    tiny = Path(args.out) / "tiny"
    dst = tiny / "long"
    dst.mkdir(parents=True, exist_ok=True)
    pipe = make_pipe(tiny, mf.build_tokenizer(args.clip_bpe))
    out = {}
    js = {"generator": "scripts/make_long_video_fixtures.py",
          "versions": {k: v for k, v in mf.VERSIONS.items() if k != "python"},
          "size": [H, W], "steps": STEPS, "guidance": GUIDANCE, "prompt": PROMPT, "negative": NEGATIVE,
          "travel": {"prompts": {str(k): v for k, v in PROMPTS.items()}, "negatives": {str(k): v for k, v in NEGATIVES.items()}},
          "effect": EFFECT, "seeds": {}, "windows": {}}
    travel(pipe, out)
    free_noise(pipe, out, js)
    context_windows(pipe, out, js)
    effect(pipe, out)
    out = {k: v.detach().contiguous().clone() for k, v in sorted(out.items())}
    save_file(out, str(dst / "long_video.safetensors"), metadata=mf.one_key_metadata({"generator": js["generator"]}))
    (dst / "long_video.json").write_text(json.dumps(js, sort_keys=True, indent=1) + "\n")
    for k, v in out.items():
        mf.log(f"{k}: {list(v.shape)} |max| {v.float().abs().max():.3f}")
    for f in ("long_video.safetensors", "long_video.json"):
        mf.log(f"{f}: {(dst / f).stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
