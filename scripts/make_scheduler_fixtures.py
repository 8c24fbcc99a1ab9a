#!/usr/bin/env python3
"""Few-step scheduler references (diffusers 0.42.1): EulerDiscreteScheduler (trailing / linspace / leading, the
AnimateDiff-Lightning recipe) and LCMScheduler (AnimateLCM), plus two short end-to-end AnimateDiffPipeline runs on the
tiny fixture models.

    "$(scripts/fixtures-env)/bin/python" scripts/make_scheduler_fixtures.py [--out tests/fixtures]

Reads the tiny models written by make_fixtures.py (tests/fixtures/tiny/{diffusers,motion_adapter}) and writes
tests/fixtures/tiny/reference/schedulers_fewstep.{safetensors,json}. Deterministic (seeded CPU generators, 1 thread).

Schedulers are built the way the model cards do it, from the tiny pipeline's DDIM config:
  Euler: EulerDiscreteScheduler.from_config(cfg, timestep_spacing=..., beta_schedule="linear")
  LCM:   LCMScheduler.from_config(cfg, beta_schedule="linear")
(cfg: linear 0.00085..0.012, steps_offset 1, set_alpha_to_one False, clip_sample False.)

safetensors keys:
  euler_{spacing}_{N}.timesteps / .sigmas / .init_noise_sigma     spacing in trailing, linspace, leading; N steps
  euler_chain.step{i}.{sample,model_input,model_output,prev_sample}  trailing, 4 steps, on [1,4,2,8,8]; the
      sample starts as randn * init_noise_sigma, model_output is random
  lcm_{N}.timesteps / .c_skip / .c_out / .alpha_prev                 N in 1, 2, 4, 6, 8
  lcm_chain.step{i}.{sample,model_output,noise,denoised,prev_sample}  4 steps, noise drawn from
      torch.Generator('cpu').manual_seed(LCM_CHAIN_SEED) inside step() (recorded; none on the last step)
  e2e_euler.*  AnimateDiffPipeline, Euler trailing 4 steps, guidance 1.0 (no CFG), generator seed E2E_EULER_SEED
  e2e_lcm.*    AnimateDiffPipeline, LCM 4 steps, guidance 1.5, generator seed E2E_LCM_SEED (initial latents and
               the step noise both come from that generator)
  e2e_*: timesteps, init_latents (the generator's first randn, before init_noise_sigma), step{i}.latents_after,
         final_latents (f32), frames (f16, [1, F, H, W, 3])
The JSON has the same timestep tables for N = 1..50 (euler trailing/linspace/leading, lcm).
"""

import argparse
import functools
import inspect
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402  (sets 1 torch thread, offline HF env)

from diffusers import (  # noqa: E402
    AnimateDiffPipeline,
    AutoencoderKL,
    DDIMScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    MotionAdapter,
    UNet2DConditionModel,
)
from safetensors.torch import save_file  # noqa: E402
from transformers import CLIPTextModel  # noqa: E402

SEED = 1234
EULER_CHAIN_SEED = SEED + 50
LCM_CHAIN_SEED = SEED + 51
E2E_EULER_SEED = SEED + 52
E2E_LCM_SEED = SEED + 53
E2E_FRAMES, E2E_H, E2E_W, E2E_STEPS = 8, 64, 64, 4


def gen(seed):
    return torch.Generator("cpu").manual_seed(seed)


def euler(cfg, spacing):
    return EulerDiscreteScheduler.from_config(cfg, timestep_spacing=spacing, beta_schedule="linear")


def lcm(cfg):
    return LCMScheduler.from_config(cfg, beta_schedule="linear")


def scalar(x):
    return torch.as_tensor(x, dtype=torch.float32).reshape(1)


def euler_tables(cfg, out, js):
    for spacing in ("trailing", "linspace", "leading"):
        js[f"euler_{spacing}"] = {}
        for n in range(1, 51):
            s = euler(cfg, spacing)
            s.set_timesteps(n)
            js[f"euler_{spacing}"][str(n)] = {
                "timesteps": [float(t) for t in s.timesteps],
                "sigmas": [float(x) for x in s.sigmas],
                "init_noise_sigma": float(s.init_noise_sigma),
            }
            if n in (1, 2, 4, 8, 25):
                out[f"euler_{spacing}_{n}.timesteps"] = s.timesteps.to(torch.float32).clone()
                out[f"euler_{spacing}_{n}.sigmas"] = s.sigmas.to(torch.float32).clone()
                out[f"euler_{spacing}_{n}.init_noise_sigma"] = scalar(s.init_noise_sigma)


def euler_chain(cfg, out):
    s = euler(cfg, "trailing")
    s.set_timesteps(4)
    g = gen(EULER_CHAIN_SEED)
    sample = torch.randn([1, 4, 2, 8, 8], generator=g) * s.init_noise_sigma
    for i, t in enumerate(s.timesteps):
        mi = s.scale_model_input(sample, t)
        eps = torch.randn([1, 4, 2, 8, 8], generator=g)
        prev = s.step(eps, t, sample).prev_sample
        p = f"euler_chain.step{i}."
        out[p + "sample"], out[p + "model_input"], out[p + "model_output"], out[p + "prev_sample"] = sample, mi, eps, prev
        sample = prev


def lcm_tables(cfg, out, js):
    js["lcm"] = {}
    for n in range(1, 51):
        s = lcm(cfg)
        s.set_timesteps(n)
        ts = [int(t) for t in s.timesteps]
        c = [s.get_scalings_for_boundary_condition_discrete(t) for t in s.timesteps]
        alpha_prev = []
        for i in range(len(ts)):
            prev = ts[i + 1] if i + 1 < len(ts) else ts[i]
            alpha_prev.append(float(s.alphas_cumprod[prev]) if prev >= 0 else float(s.final_alpha_cumprod))
        js["lcm"][str(n)] = {"timesteps": ts, "c_skip": [float(a) for a, _ in c], "c_out": [float(b) for _, b in c]}
        if n in (1, 2, 4, 6, 8):
            out[f"lcm_{n}.timesteps"] = s.timesteps.to(torch.int64).clone()
            out[f"lcm_{n}.c_skip"] = torch.stack([torch.as_tensor(a, dtype=torch.float32) for a, _ in c])
            out[f"lcm_{n}.c_out"] = torch.stack([torch.as_tensor(b, dtype=torch.float32) for _, b in c])
            out[f"lcm_{n}.alpha_prev"] = torch.tensor(alpha_prev, dtype=torch.float32)


def lcm_chain(cfg, out):
    s = lcm(cfg)
    s.set_timesteps(4)
    g_in = gen(LCM_CHAIN_SEED + 1000)
    sample = torch.randn([1, 4, 2, 8, 8], generator=g_in)
    g = gen(LCM_CHAIN_SEED)
    g_copy = gen(LCM_CHAIN_SEED)
    for i, t in enumerate(s.timesteps):
        eps = torch.randn([1, 4, 2, 8, 8], generator=g_in)
        res = s.step(eps, t, sample, generator=g)
        p = f"lcm_chain.step{i}."
        out[p + "sample"], out[p + "model_output"] = sample, eps
        out[p + "denoised"], out[p + "prev_sample"] = res.denoised, res.prev_sample
        if i + 1 < len(s.timesteps):
            out[p + "noise"] = torch.randn([1, 4, 2, 8, 8], generator=g_copy)
        sample = res.prev_sample
    assert torch.equal(g.get_state(), g_copy.get_state())


def e2e(tiny, tok, sched, guidance, seed, prefix, out):
    dd = tiny / "diffusers"
    pipe = AnimateDiffPipeline(
        vae=AutoencoderKL.from_pretrained(dd / "vae").eval(),
        text_encoder=CLIPTextModel.from_pretrained(dd / "text_encoder").eval(),
        tokenizer=tok,
        unet=UNet2DConditionModel.from_pretrained(dd / "unet").eval(),
        motion_adapter=MotionAdapter.from_pretrained(tiny / "motion_adapter").eval(),
        scheduler=sched,
    )
    pipe.set_progress_bar_config(disable=True)
    lat = []
    orig_step = pipe.scheduler.step

    # functools.wraps keeps step's signature visible: the pipeline only passes `generator` to
    # schedulers whose step() declares it (inspect.signature), and LCM needs it.
    @functools.wraps(orig_step)
    def step(*a, **kw):
        assert "generator" not in inspect.signature(orig_step).parameters or kw.get("generator") is not None
        r = orig_step(*a, **kw)
        lat.append(r.prev_sample.detach().clone())
        return r

    pipe.scheduler.step = step
    with torch.no_grad():
        frames = pipe(mf.PROMPT, negative_prompt=mf.NEGATIVE, num_frames=E2E_FRAMES, height=E2E_H, width=E2E_W,
                      num_inference_steps=E2E_STEPS, guidance_scale=guidance, generator=gen(seed),
                      output_type="np").frames
    assert len(lat) == E2E_STEPS
    out[prefix + "timesteps"] = pipe.scheduler.timesteps.to(torch.float32).clone()
    out[prefix + "init_latents"] = torch.randn([1, 4, E2E_FRAMES, E2E_H // 8, E2E_W // 8], generator=gen(seed))
    for i, l in enumerate(lat):
        out[prefix + f"step{i}.latents_after"] = l
    out[prefix + "final_latents"] = lat[-1]
    out[prefix + "frames"] = torch.from_numpy(frames.copy()).half()
    mf.log(f"{prefix}: timesteps {[float(t) for t in pipe.scheduler.timesteps]}, |final| max "
           f"{lat[-1].abs().max():.3f}, frames mean {frames.mean():.4f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "tests" / "fixtures"))
    ap.add_argument("--clip-bpe", default=str(Path(sys.prefix) / "clip-bpe" / "open_clip_torch-3.3.0-py3-none-any.whl"))
    args = ap.parse_args()
    tiny = Path(args.out) / "tiny"
    ref = tiny / "reference"
    cfg = DDIMScheduler.from_pretrained(tiny / "diffusers" / "scheduler").config
    out, js = {}, {"config": dict(cfg), "versions": mf.VERSIONS}
    euler_tables(cfg, out, js)
    euler_chain(cfg, out)
    lcm_tables(cfg, out, js)
    lcm_chain(cfg, out)
    tok = mf.build_tokenizer(args.clip_bpe)
    e2e(tiny, tok, euler(cfg, "trailing"), 1.0, E2E_EULER_SEED, "e2e_euler.", out)
    e2e(tiny, tok, lcm(cfg), 1.5, E2E_LCM_SEED, "e2e_lcm.", out)
    out = {k: v.detach().contiguous().clone() for k, v in sorted(out.items())}
    meta = {"generator": "scripts/make_scheduler_fixtures.py", "versions": {k: v for k, v in mf.VERSIONS.items() if k != "python"},
            "seeds": {"euler_chain": EULER_CHAIN_SEED, "lcm_chain": LCM_CHAIN_SEED, "e2e_euler": E2E_EULER_SEED,
                      "e2e_lcm": E2E_LCM_SEED},
            "e2e": {"frames": E2E_FRAMES, "height": E2E_H, "width": E2E_W, "steps": E2E_STEPS, "prompt": mf.PROMPT,
                    "negative": mf.NEGATIVE, "euler_guidance": 1.0, "lcm_guidance": 1.5}}
    save_file(out, str(ref / "schedulers_fewstep.safetensors"), metadata=mf.one_key_metadata(meta))
    js["meta"] = meta
    (ref / "schedulers_fewstep.json").write_text(json.dumps(js, sort_keys=True, separators=(",", ":")) + "\n")
    for f in ("schedulers_fewstep.safetensors", "schedulers_fewstep.json"):
        mf.log(f"{f}: {(ref / f).stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
