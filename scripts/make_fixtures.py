#!/usr/bin/env python3
"""Regenerates tests/fixtures/: tiny random-init SD1.5 + AnimateDiff models and diffusers reference tensors.

HuggingFace diffusers (CPU, fp32, 1 torch thread) is the numerical oracle. The Rust tests read the files
written here; Python is never needed at test time.

Usage (the venv comes from scripts/fixtures-env, which pins torch 2.15.0, diffusers 0.42.1,
transformers 5.24.0, safetensors 0.8.0, accelerate 1.15.0, ftfy and fetches the open_clip_torch 3.3.0
wheel for the CLIP BPE vocabulary):

    "$(scripts/fixtures-env)/bin/python" scripts/make_fixtures.py [--out tests/fixtures] [--clip-bpe FILE]

--clip-bpe takes the open_clip_torch wheel, bpe_simple_vocab_16e6.txt.gz or the plain .txt; by default
the wheel in <venv>/clip-bpe/ is used.

What it does:
  1. builds tiny models with the real SD1.5 topology (UNet2DConditionModel, MotionAdapter v2-like,
     AutoencoderKL, CLIPTextModel; configs below), random init (seeded torch.Generator streams), then rounds
     every parameter to an fp16-representable value so the fp16 and fp32 files hold identical weights;
  2. saves them as diffusers folders (fp32), an LDM/civitai single file (fp16) and original-AnimateDiff
     motion-module files (.ckpt fp16, .safetensors fp32), and checks every conversion bit-exactly against
     diffusers' own converters and from_single_file loaders;
  3. runs AnimateDiffPipeline with explicit initial latents and records reference tensors (see README.md
     in the output folder, which this script also writes).

Deterministic: all randomness comes from explicitly seeded CPU generators and torch runs with one thread;
two runs produce byte-identical files (weights, configs and reference tensors alike).
"""

import argparse
import contextlib
import functools
import gzip
import hashlib
import io
import json
import math
import os
import shutil
import sys
import unicodedata
import zipfile
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
torch.set_num_interop_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import diffusers  # noqa: E402
import safetensors  # noqa: E402
import transformers  # noqa: E402
from diffusers import (  # noqa: E402
    AnimateDiffPipeline,
    AutoencoderKL,
    DDIMScheduler,
    MotionAdapter,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.loaders.single_file_utils import (  # noqa: E402
    convert_animatediff_checkpoint_to_diffusers,
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
)
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402

diffusers.utils.logging.set_verbosity_error()
transformers.utils.logging.set_verbosity_error()
try:
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
except AttributeError:
    pass

VERSIONS = {
    "torch": torch.__version__,
    "diffusers": diffusers.__version__,
    "transformers": transformers.__version__,
    "safetensors": safetensors.__version__,
    "numpy": np.__version__,
    "python": sys.version.split()[0],
}

SEED = 1234  # +1 CLIP, +2 UNet, +3 VAE, +4 adapter, +10 latents, +20.. components, +30 DDIM chain

PROMPT = "a corgi running on the beach, golden hour, highly detailed"
NEGATIVE = "blurry, low quality"
NUM_FRAMES, HEIGHT, WIDTH, STEPS, CFG = 8, 128, 192, 4, 7.5
LATENT_SHAPE = [1, 4, NUM_FRAMES, HEIGHT // 8, WIDTH // 8]
SIZE_BUDGET = 20 * 1000 * 1000  # bytes, whole output folder (apparent size); also checked as < 19 MiB on disk

# What the committed (default) fixture set keeps. The weight files alone are ~13.9 MB, so the reference
# tensors have to be trimmed to stay under SIZE_BUDGET; --full writes everything (~31 MB, not committed).
# Per file: "drop" = keys left out, "keep" = only these keys, "f16" = stored as float16 (values used only
# with loose end-to-end tolerances). Everything else is float32/int64 exactly as torch computed it.
INTERMEDIATES_KEEP = [
    "time_proj.out", "time_embedding.out",
    "down_blocks.0.out", "down_blocks.1.out", "down_blocks.2.out", "down_blocks.3.out",
    "mid_block.motion_modules.0.out", "mid_block.out", "up_blocks.0.out",
]
TRIM = {
    "pipeline_diffusers": {"drop": ["video_decoded_raw"], "f16": ["frames"]},
    "components": {"f16_exact": ["vae_encode.in"]},
    "unet_call0_intermediates": {"keep": INTERMEDIATES_KEEP},
    "pipeline_original_mm_norm": {"keep": ["timesteps", "step0.unet_out", "final_latents"]},
    "pipeline_leading_sched": {"keep": ["timesteps", "final_latents"]},
}
FULL_VARIANT_KEYS = ["timesteps", "final_latents", "frames"] + [
    f"step{s}.{k}" for s in range(STEPS) for k in ("unet_out", "latents_after")]

UNET_CONFIG = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    block_out_channels=(8, 16, 32, 32),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    norm_num_groups=4,
    cross_attention_dim=16,
    attention_head_dim=2,  # legacy meaning: number of heads (SD1.5 has 8)
    use_linear_projection=False,
    flip_sin_to_cos=True,
    freq_shift=0,
)
ADAPTER_CONFIG = dict(
    block_out_channels=(8, 16, 32, 32),
    motion_layers_per_block=2,
    motion_transformer_layers_per_block=1,
    motion_mid_block_layers_per_block=1,
    motion_num_attention_heads=2,
    motion_norm_num_groups=4,
    motion_max_seq_length=32,
    use_motion_mid_block=True,
)
VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(8, 16, 32, 32),
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=4,
    sample_size=128,
    scaling_factor=0.18215,
)
CLIP_CONFIG = dict(
    vocab_size=49408,
    hidden_size=16,
    intermediate_size=37,
    num_hidden_layers=2,
    num_attention_heads=2,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
)
SCHED_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="linear",
    steps_offset=1,
    clip_sample=False,
    set_alpha_to_one=False,
    timestep_spacing="linspace",
)


def log(msg):
    print(msg, flush=True)


def gen(offset):
    return torch.Generator("cpu").manual_seed(SEED + offset)


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def random_init_(model, generator):
    """Notes §4.2: matrices/kernels N(0, 1/fan_in), CLIP token/pos embeddings std 0.5, biases std 0.1,
    norm gammas 1 + N(0, 0.1); then round every parameter to an fp16-representable value."""
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=generator, dtype=torch.float32)
        if name.endswith("token_embedding.weight") or name.endswith("position_embedding.weight"):
            value = noise * 0.5
        elif p.ndim >= 2:
            value = noise / math.sqrt(math.prod(p.shape[1:]))
        elif name.endswith(".bias"):
            value = noise * 0.1
        elif name.endswith(".weight"):  # 1-D weights are GroupNorm/LayerNorm gammas only
            value = 1.0 + noise * 0.1
        else:
            raise ValueError(f"unexpected parameter {name} {tuple(p.shape)}")
        p.copy_(value.half().float())


def build_models():
    torch.manual_seed(SEED)  # module constructors draw from the global RNG; we overwrite everything anyway
    te = CLIPTextModel(CLIPTextConfig(**CLIP_CONFIG)).eval()
    random_init_(te, gen(1))
    unet = UNet2DConditionModel(**UNET_CONFIG).eval()
    random_init_(unet, gen(2))
    vae = AutoencoderKL(**VAE_CONFIG).eval()
    random_init_(vae, gen(3))
    adapter = MotionAdapter(**ADAPTER_CONFIG).eval()
    random_init_(adapter, gen(4))
    for m in (te, unet, vae, adapter):
        for name, p in m.named_parameters():
            assert torch.equal(p, p.half().float()), name
        assert all(p.abs().sum() > 0 for p in m.parameters())
    return te, unet, vae, adapter


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def read_clip_bpe(path):
    path = Path(path)
    data = path.read_bytes()
    if path.suffix == ".whl":
        data = zipfile.ZipFile(io.BytesIO(data)).read("open_clip/bpe_simple_vocab_16e6.txt.gz")
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.decode("utf-8")


def build_tokenizer(bpe_path):
    """Notes §5: vocab = 256 byte chars + same with </w> + merges (lines[1:48895]) + the 2 specials."""
    lines = read_clip_bpe(bpe_path).split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408
    tok = CLIPTokenizer(
        vocab={v: i for i, v in enumerate(vocab)},
        merges=merges,
        unk_token="<|endoftext|>",
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=77,
    )
    expect = [49406, 320, 31320, 2761, 525, 518, 2117, 267, 3878, 2232, 267, 5302, 12609, 49407]
    got = tok(PROMPT, padding="max_length", max_length=77, truncation=True).input_ids
    assert got == expect + [49407] * (77 - len(expect)), got
    return tok


def tokenize(tok, prompts):
    return torch.tensor(
        tok(prompts, padding="max_length", max_length=77, truncation=True).input_ids, dtype=torch.int64
    )


# ----------------------------------------------------------------------------------------------
# Format conversions (diffusers -> LDM / original AnimateDiff), validated with diffusers' converters
# ----------------------------------------------------------------------------------------------

UNET_RESNET_RENAMES = [
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("conv_shortcut", "skip_connection"),
]


def unet_key_to_ldm(k, has_attn_up):
    """model-spec §2.3 in reverse."""
    parts = k.split(".")
    simple = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    head = ".".join(parts[:-1])
    if head in simple:
        return simple[head] + "." + parts[-1]

    def resnet_inner(rest):
        for a, b in UNET_RESNET_RENAMES:
            if rest.startswith(a + "."):
                return b + rest[len(a) :]
        raise KeyError(k)

    if parts[0] == "down_blocks":
        b, kind = int(parts[1]), parts[2]
        if kind == "downsamplers":  # down_blocks.b.downsamplers.0.conv.X
            return f"input_blocks.{3 + 3 * b}.0.op.{parts[-1]}"
        j = int(parts[3])
        rest = ".".join(parts[4:])
        i = 1 + 3 * b + j
        if kind == "resnets":
            return f"input_blocks.{i}.0.{resnet_inner(rest)}"
        if kind == "attentions":
            return f"input_blocks.{i}.1.{rest}"
    if parts[0] == "mid_block":
        kind, j = parts[1], int(parts[2])
        rest = ".".join(parts[3:])
        if kind == "resnets":
            return f"middle_block.{2 * j}.{resnet_inner(rest)}"
        if kind == "attentions":
            return f"middle_block.1.{rest}"
    if parts[0] == "up_blocks":
        b, kind = int(parts[1]), parts[2]
        if kind == "upsamplers":  # up_blocks.b.upsamplers.0.conv.X
            return f"output_blocks.{3 * b + 2}.{2 if has_attn_up[b] else 1}.conv.{parts[-1]}"
        j = int(parts[3])
        rest = ".".join(parts[4:])
        o = 3 * b + j
        if kind == "resnets":
            return f"output_blocks.{o}.0.{resnet_inner(rest)}"
        if kind == "attentions":
            return f"output_blocks.{o}.1.{rest}"
    raise KeyError(k)


def vae_key_to_ldm(k, n_up=4):
    parts = k.split(".")
    simple = {
        "encoder.conv_norm_out": "encoder.norm_out",
        "decoder.conv_norm_out": "decoder.norm_out",
    }
    head = ".".join(parts[:-1])
    if head in simple:
        return simple[head] + "." + parts[-1]
    if head in ("encoder.conv_in", "encoder.conv_out", "decoder.conv_in", "decoder.conv_out", "quant_conv", "post_quant_conv"):
        return k
    side = parts[0]
    if parts[1] == "mid_block":
        if parts[2] == "resnets":
            j = int(parts[3])
            rest = ".".join(parts[4:]).replace("conv_shortcut", "nin_shortcut")
            return f"{side}.mid.block_{j + 1}.{rest}"
        if parts[2] == "attentions":
            rest = ".".join(parts[4:])
            ren = {
                "group_norm": "norm",
                "to_q": "q",
                "to_k": "k",
                "to_v": "v",
                "to_out.0": "proj_out",
            }
            for a, b in ren.items():
                if rest.startswith(a + "."):
                    return f"{side}.mid.attn_1.{b}{rest[len(a):]}"
    if side == "encoder" and parts[1] == "down_blocks":
        i = int(parts[2])
        if parts[3] == "downsamplers":
            return f"encoder.down.{i}.downsample.conv.{parts[-1]}"
        j = int(parts[4])
        rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
        return f"encoder.down.{i}.block.{j}.{rest}"
    if side == "decoder" and parts[1] == "up_blocks":
        i = int(parts[2])
        li = n_up - 1 - i
        if parts[3] == "upsamplers":
            return f"decoder.up.{li}.upsample.conv.{parts[-1]}"
        j = int(parts[4])
        rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
        return f"decoder.up.{li}.block.{j}.{rest}"
    raise KeyError(k)


def ldm_ddpm_buffers():
    """The 12 LDM DDPM buffers (ldm/models/diffusion/ddpm.py register_schedule, LDM "linear" schedule =
    diffusers scaled_linear), computed in float64 and stored as float32 like LDM does."""
    n = 1000
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, n, dtype=torch.float64) ** 2
    betas = betas.numpy()
    alphas = 1.0 - betas
    ac = np.cumprod(alphas, axis=0)
    ac_prev = np.append(1.0, ac[:-1])
    post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
    bufs = {
        "betas": betas,
        "alphas_cumprod": ac,
        "alphas_cumprod_prev": ac_prev,
        "sqrt_alphas_cumprod": np.sqrt(ac),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - ac),
        "log_one_minus_alphas_cumprod": np.log(1.0 - ac),
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / ac),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / ac - 1),
        "posterior_variance": post_var,
        "posterior_log_variance_clipped": np.log(np.maximum(post_var, 1e-20)),
        "posterior_mean_coef1": betas * np.sqrt(ac_prev) / (1.0 - ac),
        "posterior_mean_coef2": (1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac),
    }
    return {k: torch.tensor(v, dtype=torch.float32) for k, v in bufs.items()}


def build_ldm_state_dict(unet, vae, te, dtype):
    sd = {}
    has_attn_up = ["CrossAttn" in t for t in unet.config.up_block_types]
    for k, v in unet.state_dict().items():
        sd["model.diffusion_model." + unet_key_to_ldm(k, has_attn_up)] = v.to(dtype)
    for k, v in vae.state_dict().items():
        lk = vae_key_to_ldm(k)
        if ".mid.attn_1." in lk and v.ndim == 2:
            v = v[:, :, None, None]  # LDM uses 1x1 convs here
        sd["first_stage_model." + lk] = v.to(dtype)
    for k, v in te.state_dict().items():
        k = k if k.startswith("text_model.") else "text_model." + k
        sd["cond_stage_model.transformer." + k] = v.to(dtype)
    sd["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77, dtype=torch.int64)[None]
    for k, v in ldm_ddpm_buffers().items():
        sd[k] = v.to(dtype)
    return {k: v.contiguous() for k, v in sd.items()}


def adapter_key_to_original(k):
    # down_blocks.0.motion_modules.0.<rest> -> down_blocks.0.motion_modules.0.temporal_transformer.<rest>
    parts = k.split(".")
    n = 4 if parts[0] in ("down_blocks", "up_blocks") else 3
    prefix, rest = ".".join(parts[:n]), ".".join(parts[n:])
    rest = (
        rest.replace(".attn1.", ".attention_blocks.0.")
        .replace(".attn2.", ".attention_blocks.1.")
        .replace(".norm1.", ".norms.0.")
        .replace(".norm2.", ".norms.1.")
        .replace(".norm3.", ".ff_norm.")
    )
    return f"{prefix}.temporal_transformer.{rest}"


def build_original_mm_state_dict(adapter, dtype):
    """model-spec §1.5 layout; one diffusers pos_embed.pe -> two attention_blocks.{0,1}.pos_encoder.pe."""
    sd = adapter.state_dict()
    out = {}
    order = {"norm": 0, "proj_in": 1, "transformer_blocks": 2, "proj_out": 3}

    def module_prefixes():
        seen = []
        for k in sd:
            p = ".".join(k.split(".")[: 4 if k.startswith(("down_blocks", "up_blocks")) else 3])
            if p not in seen:
                seen.append(p)
        return seen

    for p in module_prefixes():
        keys = [k for k in sd if k.startswith(p + ".")]
        keys.sort(key=lambda k: order[k[len(p) + 1 :].split(".")[0]])
        blk = f"{p}.transformer_blocks.0."
        pe = sd[blk + "pos_embed.pe"]
        ordered = []
        for k in keys:
            if k.startswith(blk):
                continue
            ordered.append(k)
        # transformer block in the original order: attention_blocks.{0,1} (+pe), norms.{0,1}, ff, ff_norm
        tb = []
        for a in ("attn1", "attn2"):
            for s in ("to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight", "to_out.0.bias"):
                tb.append(blk + f"{a}.{s}")
            tb.append(("PE", a))
        for s in ("norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias", "ff.net.0.proj.weight",
                  "ff.net.0.proj.bias", "ff.net.2.weight", "ff.net.2.bias", "norm3.weight", "norm3.bias"):
            tb.append(blk + s)
        used = {k for k in tb if isinstance(k, str)} | {blk + "pos_embed.pe"}
        assert used == {k for k in keys if k.startswith(blk)}, sorted({k for k in keys if k.startswith(blk)} ^ used)
        idx = ordered.index(f"{p}.proj_out.weight")
        ordered = ordered[:idx] + tb + ordered[idx:]
        for k in ordered:
            if isinstance(k, tuple):
                n = 0 if k[1] == "attn1" else 1
                out[f"{p}.temporal_transformer.transformer_blocks.0.attention_blocks.{n}.pos_encoder.pe"] = pe.to(dtype).clone()
            else:
                out[adapter_key_to_original(k)] = sd[k].to(dtype)
    return {k: v.contiguous().clone() for k, v in out.items()}


def assert_same_state(a, b, what):
    ka, kb = set(a), set(b)
    assert ka == kb, f"{what}: key mismatch: only-left {sorted(ka - kb)[:5]} only-right {sorted(kb - ka)[:5]}"
    for k in a:
        x, y = a[k], b[k]
        assert x.shape == y.shape, f"{what}: {k} shape {tuple(x.shape)} vs {tuple(y.shape)}"
        assert torch.equal(x.float(), y.float()), f"{what}: {k} differs"


# ----------------------------------------------------------------------------------------------
# Pipeline runs
# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def mm_norm_per_frame():
    """Original AnimateDiff semantics: the motion-module GroupNorm normalises each frame on its own
    (statistics over C/G x H x W of one frame) instead of jointly over (C/G, F, H, W) as diffusers does.
    Everything else is diffusers' AnimateDiffTransformer3D.forward unchanged."""
    orig = AnimateDiffTransformer3D.forward

    def forward(self, hidden_states, encoder_hidden_states=None, timestep=None, class_labels=None,
                num_frames=1, cross_attention_kwargs=None):
        batch_frames, channel, height, width = hidden_states.shape
        batch_size = batch_frames // num_frames
        residual = hidden_states
        hidden_states = self.norm(hidden_states)  # GroupNorm on (B*F, C, H, W): per frame
        hidden_states = hidden_states.reshape(batch_size, num_frames, channel, height, width)
        hidden_states = hidden_states.permute(0, 3, 4, 1, 2).reshape(batch_size * height * width, num_frames, channel)
        hidden_states = self.proj_in(input=hidden_states)
        for block in self.transformer_blocks:
            hidden_states = block(
                hidden_states=hidden_states,
                encoder_hidden_states=encoder_hidden_states,
                timestep=timestep,
                cross_attention_kwargs=cross_attention_kwargs,
                class_labels=class_labels,
            )
        hidden_states = self.proj_out(input=hidden_states)
        hidden_states = (
            hidden_states[None, None, :]
            .reshape(batch_size, height, width, num_frames, channel)
            .permute(0, 3, 4, 1, 2)
            .contiguous()
        )
        hidden_states = hidden_states.reshape(batch_frames, channel, height, width)
        return hidden_states + residual

    AnimateDiffTransformer3D.forward = forward
    try:
        yield
    finally:
        AnimateDiffTransformer3D.forward = orig


def run_pipeline(pipe, latents, record_steps=True, record_raw=True, unet_hooks=None):
    """One AnimateDiffPipeline call; returns dict of recorded tensors."""
    rec = {}
    calls = []

    def unet_hook(module, args, kwargs, output):
        sample = args[0] if args else kwargs["sample"]
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        calls.append(
            dict(
                sample=sample.detach().clone(),
                t=torch.as_tensor(t).reshape(1).to(torch.int64),
                ehs=kwargs["encoder_hidden_states"].detach().clone(),
                out=(output.sample if hasattr(output, "sample") else output[0]).detach().clone(),
            )
        )

    steps = []
    sched = pipe.scheduler
    orig_step = sched.step

    @functools.wraps(orig_step)
    def step(model_output, timestep, sample, *a, **kw):
        res = orig_step(model_output, timestep, sample, *a, **kw)
        prev = res.prev_sample if hasattr(res, "prev_sample") else res[0]
        steps.append(dict(model_output=model_output.detach().clone(), sample=sample.detach().clone(),
                          prev=prev.detach().clone()))
        return res

    raw = []
    orig_decode = pipe.decode_latents

    def decode_latents(lat, decode_chunk_size=16):
        v = orig_decode(lat, decode_chunk_size)
        raw.append(v.detach().clone())
        return v

    h = pipe.unet.register_forward_hook(unet_hook, with_kwargs=True)
    sched.step = step
    pipe.decode_latents = decode_latents
    extra = [] if unet_hooks is None else unet_hooks(pipe.unet)
    try:
        with torch.no_grad():
            frames = pipe(
                PROMPT,
                negative_prompt=NEGATIVE,
                num_frames=NUM_FRAMES,
                height=HEIGHT,
                width=WIDTH,
                num_inference_steps=STEPS,
                guidance_scale=CFG,
                eta=0.0,
                latents=latents.clone(),
                output_type="np",
            ).frames
    finally:
        h.remove()
        for e in extra:
            e.remove()
        del sched.step
        del pipe.decode_latents
    assert len(calls) == STEPS and len(steps) == STEPS and len(raw) == 1
    rec["timesteps"] = sched.timesteps.to(torch.int64).clone()
    for s in range(STEPS):
        c, st = calls[s], steps[s]
        if record_steps:
            rec[f"step{s}.timestep"] = c["t"]
            rec[f"step{s}.unet_in_sample"] = c["sample"]
            rec[f"step{s}.unet_in_encoder_hidden_states"] = c["ehs"]
            rec[f"step{s}.noise_pred_guided"] = st["model_output"]
            rec[f"step{s}.latents_after"] = st["prev"]
        rec[f"step{s}.unet_out"] = c["out"]
        u, t = c["out"].chunk(2)
        assert torch.equal(st["model_output"], u + CFG * (t - u))
    rec["final_latents"] = steps[-1]["prev"]
    if record_raw:
        rec["video_decoded_raw"] = raw[0]
    rec["frames"] = torch.from_numpy(np.ascontiguousarray(frames)).float()
    rec["_calls"] = calls
    return rec


def intermediates_hooks(store):
    """Forward hooks for the first UNetMotionModel call (model-spec §11 key list)."""
    names_out = [
        "time_proj",
        "time_embedding",
        "conv_in",
        "down_blocks.0.resnets.0",
        "down_blocks.0.attentions.0",
        "down_blocks.0.motion_modules.0",
        "down_blocks.0",
        "down_blocks.1",
        "down_blocks.2",
        "down_blocks.3",
        "mid_block.motion_modules.0",
        "mid_block",
        "up_blocks.0",
        "up_blocks.1",
        "up_blocks.2",
        "up_blocks.3.motion_modules.2",
        "up_blocks.3",
        "conv_norm_out",
        "conv_out",
    ]
    names_in = ["down_blocks.0.motion_modules.0"]

    def first(x):
        if isinstance(x, torch.Tensor):
            return x
        if hasattr(x, "sample"):
            return x.sample
        return x[0]

    def install(unet):
        mods = dict(unet.named_modules())
        hs = []
        for n in names_out:
            def hook(m, a, kw, o, n=n):
                store.setdefault(f"{n}.out", first(o).detach().clone())
            hs.append(mods[n].register_forward_hook(hook, with_kwargs=True))
        for n in names_in:
            def pre(m, a, kw, n=n):
                x = a[0] if a else kw["hidden_states"]
                store.setdefault(f"{n}.in", x.detach().clone())
            hs.append(mods[n].register_forward_pre_hook(pre, with_kwargs=True))
        return hs

    return install


def make_pipe(te, tok, unet, vae, adapter, sched_config):
    pipe = AnimateDiffPipeline(
        vae=vae,
        text_encoder=te,
        tokenizer=tok,
        unet=unet,
        motion_adapter=adapter,
        scheduler=DDIMScheduler.from_config(sched_config),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ----------------------------------------------------------------------------------------------
# Tokenizer / randn / scheduler fixtures
# ----------------------------------------------------------------------------------------------

TOKENIZER_PROMPTS = [
    ("basic", PROMPT),
    ("negative", NEGATIVE),
    ("empty", ""),
    ("whitespace only", "   \t\n  "),
    ("punctuation", "masterpiece, best quality!!! (detailed)... [sharp]; {vivid}: 'quoted' \"double\" ?!"),
    ("a1111 weight", "a (corgi:1.2) on the ((beach)), [[sunset]], (golden hour:0.8)"),
    ("a1111 escaped parens and lora", "a photo of \\(cat\\) <lora:add_detail:0.7> BREAK night sky"),
    ("tabs newlines multiple spaces", "a\tcorgi\n\nrunning   on    the\r\nbeach  "),
    ("accents NFC", "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e, M\u00fcnchen, \u00e5ngstr\u00f6m, na\u00efve"),
    ("accents NFD", "cafe\u0301 cre\u0300me bru\u0302le\u0301e, Mu\u0308nchen, a\u030angstro\u0308m, nai\u0308ve"),
    ("curly quotes", "\u201ca corgi\u201d said the dog\u2019s owner \u2018hello\u2019"),
    ("dashes and nbsp", "high\u2013quality \u2014 ultra\u00a0detailed \u2026 photo"),
    ("digits years", "1990s photo, year 2024, 35mm film, f/1.8, 1920x1080, 8k uhd, 3.14159, 1,000,000"),
    ("emoji", "a corgi \U0001F436 on fire \U0001F525\U0001F525 with sparkles \u2728 and a flag \U0001F1EF\U0001F1F5"),
    ("cjk", "\u6771\u4eac\u306e\u591c\u666f, \u4e00\u53ea\u53ef\u7231\u7684\u72d7, \ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8"),
    ("cyrillic greek arabic", "\u0441\u043e\u0431\u0430\u043a\u0430 \u03ba\u03cd\u03c9\u03bd \u0643\u0644\u0628"),
    ("contractions", "it's a dog's life, they're here, we've seen, I'll go, don't stop, you'd, she'S"),
    ("html entities", "cats &amp; dogs &lt;3 &gt; &quot;hi&quot; &#39;x&#39; &nbsp;"),
    ("uppercase", "A CORGI Running ON The BEACH, GOLDEN Hour"),
    ("long words", "supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism"),
    ("hyphens underscores", "high-quality, ultra-detailed, 8k-uhd, state-of-the-art, snake_case_word, --ar 16:9"),
    ("endoftext literal", "a corgi <|endoftext|> on the beach"),
    ("startoftext literal", "<|startoftext|>a corgi"),
    ("math symbols", "x^2 + y^2 = r^2, 50% off, $100, #hashtag, @user, a/b\\c, ~tilde`, |pipe|, <>"),
    ("leading trailing space", "   corgi   "),
    ("single char", "a"),
    ("single punctuation", ","),
    ("repeated punctuation", "!!!!!!!!!!????????........,,,,,,,,"),
    ("zero width and combining", "cor\u200bgi, e\u0301\u0301, \ufeffbom"),
    ("fullwidth", "\uff21\uff22\uff23 \uff11\uff12\uff13 \uff08test\uff09"),
    ("ligatures", "\ufb01sh \ufb02ower \u2163 \u00bd \u2122"),
    ("german sharp s", "Stra\u00dfe gro\u00df \u1e9e"),
    ("turkish i", "\u0130stanbul \u0131\u015f\u0131k"),
    ("exactly 75 tokens", " ".join(["cat"] * 75)),
    ("76 tokens truncated", " ".join(["cat"] * 76)),
    ("long truncation", ", ".join(
        ["masterpiece", "best quality", "ultra detailed", "a corgi running on the beach", "golden hour",
         "cinematic lighting", "depth of field", "bokeh", "8k", "photorealistic", "sharp focus",
         "volumetric fog", "soft shadows", "rim light", "highly detailed fur", "wet sand", "ocean waves",
         "seagulls in the sky", "warm colors", "film grain", "award winning photograph", "trending on artstation",
         "octane render", "unreal engine 5", "wide angle lens", "motion blur", "dynamic pose", "happy dog"])),
    ("numbers glued", "abc123def 4ever l33t h4x0r v1.5 sd15 mm_sd_v15_v2"),
    ("apostrophe variants", "dog's dog\u2019s dog`s dog\u00b4s"),
    ("url", "https://example.com/path?query=1&x=y#frag"),
    ("mixed case contraction", "IT'S THEY'RE I'M"),
    ("newline only between words", "corgi\nbeach"),
    ("prompt travel style", "0: a corgi sitting, 8: a corgi running, 16: a corgi jumping"),
]


def make_tokenizer_cases(tok):
    cases = []
    for name, prompt in TOKENIZER_PROMPTS:
        ids = tok(prompt, padding="max_length", max_length=77, truncation=True).input_ids
        full = tok(prompt).input_ids
        assert len(ids) == 77
        cases.append(
            {
                "name": name,
                "prompt": prompt,
                "is_nfc": unicodedata.is_normalized("NFC", prompt),
                "ids": ids,
                "ids_untruncated": full,
            }
        )
    return {
        "description": "SD1.5 tokenisation: transformers CLIPTokenizer built from the OpenAI CLIP BPE "
        "(open_clip_torch 3.3.0 bpe_simple_vocab_16e6.txt), padding='max_length', max_length=77, "
        "truncation=True, pad = <|endoftext|> (49407). ids_untruncated: same without padding/truncation.",
        "versions": {"transformers": VERSIONS["transformers"], "tokenizers": __import__("tokenizers").__version__},
        "bos": 49406,
        "eos": 49407,
        "pad": 49407,
        "max_length": 77,
        "cases": cases,
    }


RANDN_CASES = [
    (0, [1, 4, 8, 16, 24]),
    (42, [1, 4, 16, 8, 8]),
    (1234567890123, [2, 3, 5]),
    (7, [17]),
    (3, [1, 4, 16, 64, 64]),
    (5, [7]),
    (11, [15]),
    (11, [16]),
]


def make_randn_cases():
    tensors, listing = {}, []
    for seed, shape in RANDN_CASES:
        name = f"seed{seed}_" + "x".join(str(d) for d in shape)
        tensors[name] = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)
        listing.append({"name": name, "seed": seed, "shape": shape})
    return tensors, listing


def make_scheduler_fixtures():
    out = {}
    lin = DDIMScheduler(**SCHED_CONFIG)
    out["betas_linear"] = lin.betas.clone()
    out["alphas_cumprod_linear"] = lin.alphas_cumprod.clone()
    sl = DDIMScheduler(**{**SCHED_CONFIG, "beta_schedule": "scaled_linear"})
    out["alphas_cumprod_scaled_linear"] = sl.alphas_cumprod.clone()
    # a 4-step DDIM chain (linspace, set_alpha_to_one False) driven by random eps
    lin.set_timesteps(4)
    g = gen(30)
    x = torch.randn([1, 4, 2, 8, 8], generator=g)
    for i, t in enumerate(lin.timesteps):
        eps = torch.randn(x.shape, generator=g)
        prev = lin.step(eps, t, x, eta=0.0).prev_sample
        out[f"ddim_step{i}.t"] = t.reshape(1).to(torch.int64)
        out[f"ddim_step{i}.model_output"] = eps
        out[f"ddim_step{i}.sample"] = x
        out[f"ddim_step{i}.prev_sample"] = prev
        x = prev

    table = {}
    for name, spacing, one in (("linspace", "linspace", False), ("leading", "leading", True), ("trailing", "trailing", False)):
        s = DDIMScheduler(**{**SCHED_CONFIG, "timestep_spacing": spacing, "set_alpha_to_one": one})
        by = {}
        for n in range(1, 51):
            s.set_timesteps(n)
            ts = [int(t) for t in s.timesteps]
            by[str(n)] = {
                "timesteps": ts,
                "final_alpha_cumprod": float(s.final_alpha_cumprod),
                "prev_timesteps": [t - 1000 // n for t in ts],
            }
        table[name] = {"timestep_spacing": spacing, "set_alpha_to_one": one, "steps_offset": 1,
                       "num_train_timesteps": 1000, "by_num_steps": by}
    return out, table


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------


FULL = False  # set by --full
DROPPED = {}  # file stem -> list of (key, reason) left out of the default set
STORED_F16 = {}
STORED_F16_EXACT = {}


def one_key_metadata(meta):
    """safetensors (Rust HashMap) writes several metadata entries in random order; one entry holding a
    JSON string keeps the files byte-identical between runs."""
    return {"fixture": json.dumps(meta, sort_keys=True)}


def save_ref(path, tensors, description):
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items() if not k.startswith("_")}
    stem = Path(path).name.split(".")[0]
    if not FULL and stem in TRIM:
        rule = TRIM[stem]
        keep = rule.get("keep")
        gone = [k for k in tensors if (keep is not None and k not in keep) or k in rule.get("drop", [])]
        assert keep is None or all(k in tensors for k in keep), (stem, keep)
        DROPPED[stem] = gone
        tensors = {k: v for k, v in tensors.items() if k not in gone}
        for k in rule.get("f16", []):
            tensors[k] = tensors[k].half()
            STORED_F16.setdefault(stem, []).append(k)
        for k in rule.get("f16_exact", []):
            h = tensors[k].half()
            assert torch.equal(h.float(), tensors[k]), k
            tensors[k] = h
            STORED_F16_EXACT.setdefault(stem, []).append(k)
    meta = {"description": description, "generator": "scripts/make_fixtures.py",
            "set": "full" if FULL else "default (trimmed to the size budget, see README.md)",
            "versions": {k: v for k, v in VERSIONS.items() if k != "python"}}
    save_file(tensors, str(path), metadata=one_key_metadata(meta))
    return tensors


def compact_json(obj, leaf_keys):
    """Indented JSON, but every dict that has one of leaf_keys is written on a single line."""

    def enc(o, ind):
        pad = " " * ind
        if isinstance(o, dict) and not any(k in o for k in leaf_keys):
            items = [f'{pad} {json.dumps(k)}: {enc(v, ind + 1).lstrip()}' for k, v in o.items()]
            return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(o, list) and any(isinstance(x, dict) for x in o):
            return pad + "[\n" + ",\n".join(enc(x, ind + 1) for x in o) + "\n" + pad + "]"
        return pad + json.dumps(o, ensure_ascii=False, separators=(",", ":"))

    text = enc(obj, 0) + "\n"
    assert json.loads(text) == obj
    return text


def describe(tensors):
    return [(k, str(v.dtype).replace("torch.", ""), list(v.shape)) for k, v in sorted(tensors.items())]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "tests" / "fixtures"))
    ap.add_argument("--full", action="store_true",
                    help="write every reference tensor (no trimming to the 20 MB budget; ~31 MB)")
    ap.add_argument("--clip-bpe", default=str(Path(sys.prefix) / "clip-bpe" / "open_clip_torch-3.3.0-py3-none-any.whl"))
    args = ap.parse_args()
    global FULL
    FULL = args.full
    out = Path(args.out)
    tiny = out / "tiny"
    dd, mmd, orig, ref = tiny / "diffusers", tiny / "motion_adapter", tiny / "original", tiny / "reference"
    if tiny.exists():
        shutil.rmtree(tiny)
    for d in (dd, mmd, orig, ref):
        d.mkdir(parents=True, exist_ok=True)
    log(f"versions: {VERSIONS}")
    summary = {}  # file -> list of (key, dtype, shape)

    # --- models --------------------------------------------------------------------------------
    tok = build_tokenizer(args.clip_bpe)
    te, unet, vae, adapter = build_models()
    n_params = {n: sum(p.numel() for p in m.parameters()) for n, m in
                (("unet", unet), ("vae", vae), ("text_encoder", te), ("motion_adapter", adapter))}
    log(f"params: {n_params}")

    unet.save_pretrained(dd / "unet", safe_serialization=True)
    vae.save_pretrained(dd / "vae", safe_serialization=True)
    te.save_pretrained(dd / "text_encoder", safe_serialization=True)
    DDIMScheduler(**SCHED_CONFIG).save_pretrained(dd / "scheduler")
    adapter.save_pretrained(mmd, safe_serialization=True)
    model_index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (dd / "model_index.json").write_text(json.dumps(model_index, indent=2, sort_keys=True) + "\n")
    te_keys = list(load_file(str(dd / "text_encoder" / "model.safetensors")).keys())
    te_prefix = "text_model." if all(k.startswith("text_model.") for k in te_keys) else "(none)"
    log(f"text_encoder/model.safetensors key prefix: {te_prefix}  e.g. {sorted(te_keys)[0]}")

    # reload the diffusers folders (what tests use) and check they are the same weights
    unet_r = UNet2DConditionModel.from_pretrained(dd / "unet").eval()
    vae_r = AutoencoderKL.from_pretrained(dd / "vae").eval()
    te_r = CLIPTextModel.from_pretrained(dd / "text_encoder").eval()
    adapter_r = MotionAdapter.from_pretrained(mmd).eval()
    for a, b, n in ((unet, unet_r, "unet"), (vae, vae_r, "vae"), (te, te_r, "te"), (adapter, adapter_r, "adapter")):
        assert_same_state(a.state_dict(), b.state_dict(), f"diffusers reload {n}")
    unet, vae, te, adapter = unet_r, vae_r, te_r, adapter_r

    # --- original formats --------------------------------------------------------------------
    ldm = build_ldm_state_dict(unet, vae, te, torch.float16)
    ldm_path = orig / "sd15_tiny_ldm_fp16.safetensors"
    save_file(ldm, str(ldm_path), metadata={"format": "pt"})
    ldm_l = load_file(str(ldm_path))
    assert_same_state(convert_ldm_unet_checkpoint(ldm_l, unet.config), unet.state_dict(), "LDM unet converter")
    assert_same_state(convert_ldm_vae_checkpoint(ldm_l, vae.config), vae.state_dict(), "LDM vae converter")
    clip_conv = convert_ldm_clip_checkpoint(ldm_l)
    clip_conv.pop("text_model.embeddings.position_ids")
    assert_same_state(clip_conv, {"text_model." + k: v for k, v in te.state_dict().items()}, "LDM clip converter")
    log(f"LDM single file: {len(ldm)} keys, converters bit-exact")

    mm16 = build_original_mm_state_dict(adapter, torch.float16)
    mm32 = build_original_mm_state_dict(adapter, torch.float32)
    torch.save(mm16, orig / "mm_tiny_v2_fp16.ckpt")
    save_file(mm32, str(orig / "mm_tiny_v2.safetensors"), metadata={"format": "pt"})
    ad_sd = {k: v for k, v in adapter.state_dict().items() if not k.endswith("pos_embed.pe")}
    for name, sd in (("ckpt", torch.load(orig / "mm_tiny_v2_fp16.ckpt", weights_only=True)),
                     ("safetensors", load_file(str(orig / "mm_tiny_v2.safetensors")))):
        assert list(sd.keys()) == list(mm16.keys()) or name == "safetensors"
        assert_same_state(convert_animatediff_checkpoint_to_diffusers(sd), ad_sd, f"mm converter {name}")
        pes = [v for k, v in sd.items() if k.endswith("pos_encoder.pe")]
        assert len(pes) == 2 * 21 and all(p.shape[:2] == (1, 32) for p in pes)
    log(f"original motion module: {len(mm16)} keys, converter bit-exact")

    # --- main pipeline run ---------------------------------------------------------------
    latents = torch.randn(LATENT_SHAPE, generator=gen(10), dtype=torch.float32)
    pipe = make_pipe(te, tok, unet, vae, adapter, SCHED_CONFIG)
    inter = {}
    main_rec = run_pipeline(pipe, latents, unet_hooks=intermediates_hooks(inter))
    motion_unet = pipe.unet

    ids = {n: tokenize(tok, [p]) for n, p in (("prompt", PROMPT), ("negative", NEGATIVE), ("empty", ""))}
    with torch.no_grad():
        embeds = {n: te(i).last_hidden_state for n, i in ids.items()}
    ehs0 = main_rec["step0.unet_in_encoder_hidden_states"]
    assert torch.equal(ehs0[:NUM_FRAMES], embeds["negative"].expand(NUM_FRAMES, -1, -1))
    assert torch.equal(ehs0[NUM_FRAMES:], embeds["prompt"].expand(NUM_FRAMES, -1, -1))
    for st in range(1, STEPS):
        assert torch.equal(main_rec[f"step{st}.unet_in_encoder_hidden_states"], ehs0)
        prev = main_rec[f"step{st - 1}.latents_after"]
        assert torch.equal(main_rec[f"step{st}.unet_in_sample"], torch.cat([prev] * 2))
    assert torch.equal(main_rec["step0.unet_in_sample"], torch.cat([latents] * 2))
    pipe_ref = {
        "prompt_input_ids": ids["prompt"],
        "negative_input_ids": ids["negative"],
        "empty_input_ids": ids["empty"],
        "prompt_embeds": embeds["prompt"],
        "negative_prompt_embeds": embeds["negative"],
        "empty_prompt_embeds": embeds["empty"],
        "init_latents": latents,
        **{k: v for k, v in main_rec.items() if not k.startswith("_")},
    }
    assert pipe_ref["timesteps"].tolist() == [999, 666, 333, 0], pipe_ref["timesteps"]
    assert torch.equal(pipe_ref["frames"], (pipe_ref["video_decoded_raw"] / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 4, 1))
    summary["reference/pipeline_diffusers.safetensors"] = describe(save_ref(
        ref / "pipeline_diffusers.safetensors", pipe_ref, "AnimateDiffPipeline run, diffusers semantics"))
    f = pipe_ref["frames"]
    log(f"frames: mean {f.mean():.4f} std {f.std():.4f} clipped {((f == 0) | (f == 1)).float().mean() * 100:.1f}% "
        f"|final latents| max {pipe_ref['final_latents'].abs().max():.2f}")

    # the intermediates were captured during the first UNet call only (setdefault)
    assert inter["time_proj.out"].shape[0] == 2
    summary["reference/unet_call0_intermediates.safetensors"] = describe(save_ref(
        ref / "unet_call0_intermediates.safetensors", inter,
        "UNetMotionModel activations of the first call (t=999) of pipeline_diffusers, frames flattened (B*F,C,H,W)"))

    # --- variants -----------------------------------------------------------------------
    with mm_norm_per_frame():
        pf = run_pipeline(make_pipe(te, tok, unet, vae, adapter, SCHED_CONFIG), latents, record_raw=False)
    # step 0 sees exactly the main run's inputs, so the variant's step0.unet_out is teacher-forceable
    assert torch.equal(pf["_calls"][0]["sample"], pipe_ref["step0.unet_in_sample"])
    assert torch.equal(pf["_calls"][0]["ehs"], pipe_ref["step0.unet_in_encoder_hidden_states"])
    pf = {k: pf[k] for k in FULL_VARIANT_KEYS}
    assert not torch.equal(pf["frames"], pipe_ref["frames"])
    summary["reference/pipeline_original_mm_norm.safetensors"] = describe(save_ref(
        ref / "pipeline_original_mm_norm.safetensors", pf,
        "pipeline_diffusers run with the motion-module GroupNorm per frame (original AnimateDiff)"))
    log(f"per-frame MM norm: max |dframes| {(pf['frames'] - pipe_ref['frames']).abs().max():.4f}")

    lead_cfg = {**SCHED_CONFIG, "timestep_spacing": "leading", "set_alpha_to_one": True}
    ld = run_pipeline(make_pipe(te, tok, unet, vae, adapter, lead_cfg), latents, record_raw=False)
    ld = {k: ld[k] for k in FULL_VARIANT_KEYS}
    assert ld["timesteps"].tolist() == [751, 501, 251, 1], ld["timesteps"]
    summary["reference/pipeline_leading_sched.safetensors"] = describe(save_ref(
        ref / "pipeline_leading_sched.safetensors", ld,
        "pipeline_diffusers run with DDIM leading spacing + set_alpha_to_one=True (original AnimateDiff)"))

    # --- from_single_file reloads reproduce the frames bit-exactly ------------------------
    sd_pipe = StableDiffusionPipeline.from_single_file(
        str(ldm_path), config=str(dd), tokenizer=tok, safety_checker=None, feature_extractor=None,
        torch_dtype=torch.float32, local_files_only=True)
    assert_same_state(sd_pipe.unet.state_dict(), unet.state_dict(), "from_single_file unet")
    assert_same_state(sd_pipe.vae.state_dict(), vae.state_dict(), "from_single_file vae")
    assert_same_state(sd_pipe.text_encoder.state_dict(), te.state_dict(), "from_single_file text encoder")
    assert all(p.dtype == torch.float32 for p in sd_pipe.unet.parameters())
    mm_ckpt = MotionAdapter.from_single_file(str(orig / "mm_tiny_v2_fp16.ckpt"), config=str(mmd),
                                             torch_dtype=torch.float32, local_files_only=True)
    mm_st = MotionAdapter.from_single_file(str(orig / "mm_tiny_v2.safetensors"), config=str(mmd),
                                           torch_dtype=torch.float32, local_files_only=True)
    assert_same_state(mm_ckpt.state_dict(), adapter.state_dict(), "MotionAdapter.from_single_file ckpt")
    assert_same_state(mm_st.state_dict(), adapter.state_dict(), "MotionAdapter.from_single_file safetensors")
    sf = run_pipeline(make_pipe(sd_pipe.text_encoder.eval(), tok, sd_pipe.unet.eval(), sd_pipe.vae.eval(),
                                mm_ckpt.eval(), SCHED_CONFIG), latents, record_steps=False)
    d = (sf["frames"] - pipe_ref["frames"]).abs().max().item()
    assert d == 0.0, d
    log("from_single_file (LDM fp16 + mm .ckpt fp16) reload: frames max diff 0.0")
    del sd_pipe, sf

    # --- components ------------------------------------------------------------------------
    comp = {}
    with torch.no_grad():
        g = gen(20)
        x = torch.randn([2, 4, 16, 24], generator=g)
        ehs = torch.randn([2, 77, 16], generator=g)
        t = torch.tensor([500], dtype=torch.int64)
        comp["unet2d.sample"], comp["unet2d.timestep"], comp["unet2d.encoder_hidden_states"] = x, t, ehs
        comp["unet2d.out"] = unet(x, t, encoder_hidden_states=ehs).sample

        g = gen(21)
        z = torch.randn([2, 4, 16, 24], generator=g) / 0.18215
        comp["vae_decode.in"] = z
        comp["vae_decode.out"] = vae.decode(z).sample
        # rounded to fp16-representable values so the committed set can store it as float16 losslessly
        img = pipe_ref["video_decoded_raw"][0].permute(1, 0, 2, 3)[[0, 4]].clamp(-1, 1).half().float().contiguous()
        comp["vae_encode.in"] = img
        dist = vae.encode(img).latent_dist
        comp["vae_encode.mean"], comp["vae_encode.logvar"] = dist.mean, dist.logvar

        g = gen(22)
        mm = motion_unet.down_blocks[1].motion_modules[0]
        assert mm.in_channels == 16
        xin = torch.randn([16, 16, 8, 12], generator=g)
        comp["motion_module.in"] = xin
        comp["motion_module.out_diffusers"] = mm(xin, num_frames=NUM_FRAMES)
        with mm_norm_per_frame():
            comp["motion_module.out_original_per_frame_norm"] = mm(xin, num_frames=NUM_FRAMES)
        # cross-check against the adapter's own module (same weights, same class)
        assert torch.equal(adapter.down_blocks[1].motion_modules[0](xin, num_frames=NUM_FRAMES),
                           comp["motion_module.out_diffusers"])

        ts = torch.tensor([0, 1, 250, 333, 500, 666, 999], dtype=torch.int64)
        comp["time_proj.t"] = ts
        comp["time_proj.out"] = unet.time_proj(ts)
        comp["time_embedding.out"] = unet.time_embedding(comp["time_proj.out"])
        assert torch.equal(motion_unet.time_proj(ts), comp["time_proj.out"])

        cid = torch.cat([ids["prompt"], ids["negative"], ids["empty"]])
        o = te(cid, output_hidden_states=True)
        comp["clip.ids"] = cid
        comp["clip.out"] = o.last_hidden_state
        fln = te.final_layer_norm if hasattr(te, "final_layer_norm") else te.text_model.final_layer_norm
        comp["clip.hidden_states_minus2_final_ln"] = fln(o.hidden_states[-2])
        # same as the pipeline's clip_skip=1 path
        # diffusers 0.42.1 reads `text_encoder.text_model.final_layer_norm`, which transformers 5.x's
        # CLIPTextModel no longer has (AttributeError). Alias it (outside the module registry) for the check.
        try:
            pipe.encode_prompt(PROMPT, torch.device("cpu"), 1, False, clip_skip=1)
            aliased = False
        except AttributeError:
            log("note: diffusers clip_skip path fails on transformers 5 (no CLIPTextModel.text_model); aliasing")
            object.__setattr__(te, "text_model", te)
            aliased = True
        pe, _ = pipe.encode_prompt(PROMPT, torch.device("cpu"), 1, False, clip_skip=1)
        if aliased:
            object.__delattr__(te, "text_model")
        assert torch.equal(pe[0], comp["clip.hidden_states_minus2_final_ln"][0])
        pe, _ = pipe.encode_prompt(PROMPT, torch.device("cpu"), 1, False)
        assert torch.equal(pe[0], comp["clip.out"][0])
    summary["reference/components.safetensors"] = describe(save_ref(
        ref / "components.safetensors", comp, "single-component references"))

    # --- scheduler -------------------------------------------------------------------------
    sched_t, sched_table = make_scheduler_fixtures()
    summary["reference/scheduler.safetensors"] = describe(save_ref(
        ref / "scheduler.safetensors", sched_t, "DDIMScheduler tables and a 4-step chain"))
    (ref / "scheduler_timesteps.json").write_text(compact_json(sched_table, leaf_keys=("timesteps",)))

    # --- tokenizer, randn ----------------------------------------------------------------
    cases = make_tokenizer_cases(tok)
    (out / "tokenizer_cases.json").write_text(compact_json(cases, leaf_keys=("name",)))
    rt, listing = make_randn_cases()
    save_file(rt, str(out / "randn_cases.safetensors"), metadata=one_key_metadata(
        {"cases": listing, "torch": VERSIONS["torch"],
         "recipe": 'torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed)), float32'}))
    (out / "randn_cases.json").write_text(json.dumps(
        {"recipe": 'torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)',
         "torch": VERSIONS["torch"], "cases": listing}, indent=1) + "\n")
    summary["randn_cases.safetensors"] = describe(rt)

    # --- report ------------------------------------------------------------------------------
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "README.md")
    total = sum(p.stat().st_size for p in files)
    sizes = {str(p.relative_to(out)): p.stat().st_size for p in files}
    for p, s in sizes.items():
        log(f"{s:>10}  {p}")
    log(f"{total:>10}  total ({len(files)} files)")
    write_readme(out, sizes, summary, n_params, te_prefix, len(ldm), len(mm16), pipe_ref, pf, cases)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    disk = sum(math.ceil(p.stat().st_size / 4096) * 4096 for p in out.rglob("*") if p.is_file())
    log(f"total {total} bytes apparent, ~{disk / 2**20:.2f} MiB on disk")
    if not FULL:
        assert total < SIZE_BUDGET and disk < 19 * 2**20, f"fixtures are {total} bytes, over the budget"
    log(f"OK: {total} bytes in {out}")


def write_readme(out, sizes, summary, n_params, te_prefix, n_ldm, n_mm, pipe_ref, pf, cases):
    f = pipe_ref["frames"]
    L = []
    w = L.append
    w("# Test fixtures: tiny AnimateDiff models + diffusers reference tensors")
    w("")
    w("Generated by `scripts/make_fixtures.py` (do not edit by hand; this README is written by the script).")
    w("Regenerate with:")
    w("")
    w("```")
    w('"$(scripts/fixtures-env)/bin/python" scripts/make_fixtures.py --out tests/fixtures')
    w("```")
    w("")
    w("Versions: " + ", ".join(f"{k} {v}" for k, v in VERSIONS.items()) + ". CPU, fp32, `torch.set_num_threads(1)`.")
    w("Deterministic: seeded `torch.Generator('cpu')` streams (seed 1234: +1 CLIP, +2 UNet, +3 VAE, +4 adapter, "
      "+10 initial latents, +20..22 component inputs, +30 DDIM chain); two runs give byte-identical files.")
    w("Semantics: diffusers 0.42.1 (see `/work/shared/notes/model-spec.md` §7, §11, §12 for conventions and tolerances).")
    w("")
    w("## Tiny models (real SD1.5 topology, tiny widths)")
    w("")
    w("| component | config | params |")
    w("| --- | --- | --- |")
    w(f"| UNet2DConditionModel | `{json.dumps(UNET_CONFIG)}` | {n_params['unet']:,} |")
    w(f"| MotionAdapter (v2-like, mid block) | `{json.dumps(ADAPTER_CONFIG)}` | {n_params['motion_adapter']:,} |")
    w(f"| AutoencoderKL | `{json.dumps(VAE_CONFIG)}` | {n_params['vae']:,} |")
    w(f"| CLIPTextModel | `{json.dumps(CLIP_CONFIG)}` | {n_params['text_encoder']:,} |")
    w(f"| DDIMScheduler | `{json.dumps(SCHED_CONFIG)}` | – |")
    w("")
    w("- Tokenizer: the real SD1.5 CLIP BPE (transformers `CLIPTokenizer` built from `bpe_simple_vocab_16e6.txt` of "
      "the open_clip_torch 3.3.0 wheel), pad = `<|endoftext|>` 49407, max length 77. Not stored here (the crate ships "
      "its own vocabulary).")
    w("- Heads: UNet spatial attention 2 heads (head dim C/2 = 4/8/16), motion modules 2 heads, CLIP 2 heads (dim 8), "
      "VAE mid attention 1 head. GroupNorm: 4 groups everywhere.")
    w("- Init: matrices/kernels N(0, 1/fan_in), CLIP token/position embeddings std 0.5, biases std 0.1, norm gammas "
      "1 + N(0, 0.1); motion `proj_out` non-zero. Then every parameter is rounded to an fp16-representable value, so "
      "the fp16 and fp32 files hold exactly the same weights.")
    w("")
    w("## Files")
    w("")
    w("| file | bytes | what |")
    w("| --- | ---: | --- |")
    what = {
        "tiny/diffusers/model_index.json": "SD1.5-style pipeline index (tokenizer entry kept; no tokenizer folder: pass one)",
        "tiny/diffusers/unet/config.json": "UNet2DConditionModel config",
        "tiny/diffusers/unet/diffusion_pytorch_model.safetensors": "UNet weights, fp32, diffusers names",
        "tiny/diffusers/vae/config.json": "AutoencoderKL config",
        "tiny/diffusers/vae/diffusion_pytorch_model.safetensors": "VAE weights, fp32, diffusers names",
        "tiny/diffusers/text_encoder/config.json": "CLIPTextConfig",
        "tiny/diffusers/text_encoder/model.safetensors":
            (f"CLIP weights, fp32, as transformers {VERSIONS['transformers']} writes them: " +
             ("keys start with `text_model.`" if te_prefix == "text_model." else
              "**no `text_model.` prefix** (e.g. `embeddings.token_embedding.weight`; real SD1.5 repos and the LDM "
              "file use `text_model.…`, so loaders must accept both)") + ", no `position_ids`"),
        "tiny/diffusers/scheduler/scheduler_config.json": "DDIMScheduler config (linear, linspace, set_alpha_to_one False)",
        "tiny/motion_adapter/config.json": "MotionAdapter config",
        "tiny/motion_adapter/diffusion_pytorch_model.safetensors": "motion modules, fp32, diffusers names (incl. `pos_embed.pe` [1,32,C])",
        "tiny/original/sd15_tiny_ldm_fp16.safetensors":
            f"civitai/LDM single file, fp16, {n_ldm} keys: `model.diffusion_model.` UNet, `first_stage_model.` VAE "
            "(mid-attn q/k/v/proj_out as [C,C,1,1]), `cond_stage_model.transformer.text_model.` CLIP (+ int64 "
            "`position_ids` [1,77]), 12 LDM DDPM buffers (`betas`, `alphas_cumprod`, … LDM-linear = scaled_linear; fp16)",
        "tiny/original/mm_tiny_v2_fp16.ckpt":
            f"original AnimateDiff motion module, `torch.save` of a plain state dict, fp16, {n_mm} keys "
            "(`…motion_modules.j.temporal_transformer.…`, `attention_blocks.{0,1}.pos_encoder.pe` [1,32,C])",
        "tiny/original/mm_tiny_v2.safetensors": f"same keys as the .ckpt, fp32 ({n_mm} keys)",
        "tiny/reference/pipeline_diffusers.safetensors": "main AnimateDiffPipeline run (below)",
        "tiny/reference/unet_call0_intermediates.safetensors": "activations of the first UNetMotionModel call",
        "tiny/reference/pipeline_original_mm_norm.safetensors": "same run, motion-module GroupNorm per frame",
        "tiny/reference/pipeline_leading_sched.safetensors": "same run, DDIM leading + set_alpha_to_one True",
        "tiny/reference/components.safetensors": "single-component references",
        "tiny/reference/scheduler.safetensors": "DDIM tables and a 4-step chain",
        "tiny/reference/scheduler_timesteps.json": "timesteps for 1..50 steps under three spacings",
        "tokenizer_cases.json": f"{len(cases['cases'])} prompts → 77 padded ids (transformers CLIPTokenizer)",
        "randn_cases.safetensors": "torch CPU `randn` streams for given seeds/shapes (float32)",
        "randn_cases.json": "the list of randn cases (also in the safetensors metadata)",
    }
    for p, s in sizes.items():
        w(f"| `{p}` | {s:,} | {what.get(p, '')} |")
    w(f"| **total** | **{sum(sizes.values()):,}** | plus this README |")
    w("")
    w("All conversions are validated inside the script: diffusers' `convert_ldm_{unet,vae,clip}_checkpoint` and "
      "`convert_animatediff_checkpoint_to_diffusers` give back the diffusers weights bit-exactly; "
      "`StableDiffusionPipeline.from_single_file(ldm, config=tiny/diffusers)` and "
      "`MotionAdapter.from_single_file(ckpt|safetensors, config=tiny/motion_adapter)` reload identical weights, and "
      "the pipeline run on the reloaded fp16 files reproduces `frames` with max diff 0.0.")
    w("")
    w("## Committed (default) set vs `--full`")
    w("")
    if FULL:
        w("This folder was written with `--full`: every reference tensor is present, all float32.")
    else:
        w("The weight files alone take ~13.9 MB, so the reference tensors were trimmed to keep the folder under "
          "20 MB (model-spec §11 lists the complete set; `make_fixtures.py --full --out DIR` writes it, ~31 MB). "
          "Left out here:")
        w("")
        why = {
            "video_decoded_raw": "VAE output before post-processing; `frames` carries it (except clipped pixels) and "
                                 "`components: vae_decode.*` tests the decoder exactly",
            "unet_in_encoder_hidden_states": "bit-identical to `step0.unet_in_encoder_hidden_states` for every step",
        }
        for stem, keys in DROPPED.items():
            if not keys:
                continue
            groups = {}
            for k in keys:
                reason = next((r for pat, r in why.items() if k.endswith(pat)), None)
                groups.setdefault(reason, []).append(k)
            for reason, ks in groups.items():
                line = f"- `{stem}`: " + ", ".join(f"`{k}`" for k in ks)
                if reason:
                    line += f" ({reason})"
                w(line)
        w("")
        w("Of the variants only the teacher-forceable and end-to-end "
          "tensors are kept: the per-frame-norm run's `step0.unet_out` sees exactly the main run's step-0 inputs; "
          "later steps, per-step latents and the variants' frames are in `--full` only. Of the UNet intermediates "
          "only the small (down-sampled) ones are kept; the full-resolution ones are in `--full`.")
        for stem, ks in STORED_F16.items():
            w(f"- Stored as **float16** in `{stem}`: " + ", ".join(f"`{k}`" for k in ks) +
              " (values in [0,1]; rounding ≤ 2.5e-4, far below the end-to-end bound ~1e-2; cast to f32 to use).")
        for stem, ks in STORED_F16_EXACT.items():
            w(f"- Stored as float16 **losslessly** in `{stem}`: " + ", ".join(f"`{k}`" for k in ks) +
              " (the input was rounded to fp16-representable values before the reference was computed).")
    w("")
    w("## The reference run")
    w("")
    w(f"`AnimateDiffPipeline` (UNet2DConditionModel + MotionAdapter → UNetMotionModel), prompt `{PROMPT}`, negative "
      f"`{NEGATIVE}`, {NUM_FRAMES} frames, {HEIGHT}×{WIDTH} (h×w; latents 16×24), {STEPS} DDIM steps linspace → "
      f"timesteps 999, 666, 333, 0 (the step from t uses ᾱ at t − 250, i.e. 749, 416, 83, then final ᾱ₀), CFG {CFG}, "
      "eta 0, explicit `latents=init_latents` ([1,4,8,16,24], seeded randn), `output_type='np'`.")
    w(f"Frames: mean {f.mean():.4f}, std {f.std():.4f}, {((f == 0) | (f == 1)).float().mean() * 100:.1f}% clipped; "
      f"max |final latents| {pipe_ref['final_latents'].abs().max():.2f}. Per-frame MM norm moves frames by up to "
      f"{(pf['frames'] - f).abs().max():.4f}.")
    w("")
    w("Redundancy (asserted bit-exact by the script): `step{s}.unet_in_sample` = `cat([latents]*2)` with latents = "
      "`init_latents` for s = 0, else `step{s-1}.latents_after`; every `step{s}.unet_in_encoder_hidden_states` equals "
      "step 0's; `final_latents` = `step3.latents_after`; `step{s}.noise_pred_guided` = u + 7.5·(c − u) of `unet_out`.")
    w("")
    w("Layout conventions: UNet input (B, C, F, H, W) with batch 0 = uncond, 1 = cond; "
      "`unet_in_encoder_hidden_states` is `cat([neg, pos]).repeat_interleave(F)` (index b·F + f); "
      "`noise_pred_guided = u + 7.5·(c − u)`; `video_decoded_raw` is (B, 3, F, H, W) before post-processing; "
      "`frames` = clamp(raw/2 + 0.5, 0, 1) laid out (B, F, H, W, RGB). Intermediates are channels-first with frames "
      "flattened (B·F, C, H, W) as torch has them; `time_proj.out`/`time_embedding.out` are per batch element "
      "(before repeat_interleave). `*.out` of a block is its first output (hidden states, not the skip tuple); "
      "`conv_norm_out.out` is the GroupNorm output (SiLU follows).")
    w("")
    w("Per-frame MM-norm variant (`pipeline_original_mm_norm`): `AnimateDiffTransformer3D.forward` is monkeypatched so "
      "that `self.norm` (GroupNorm) is applied to the (B·F, C, H, W) input, i.e. statistics per frame, before the "
      "reshape to (B·H·W, F, C); everything else is diffusers' code. Same patch for "
      "`components: motion_module.out_original_per_frame_norm`.")
    w("")
    w("Components: `unet2d.*` plain UNet2DConditionModel (same weights), random sample [2,4,16,24], t=500, random "
      "ehs [2,77,16]. `vae_decode.in` = randn/0.18215 (already divided by the scale) → `vae.decode(...).sample`. "
      "`vae_encode.in` = frames 0 and 4 of the main run's decoded video (before post-processing) clamped to "
      "[-1,1]; `mean`/`logvar` = "
      "`latent_dist.mean/.logvar` (logvar clamped to [-30, 20] by diffusers). `motion_module.*` = "
      "`down_blocks.1.motion_modules.0` (C=16) on (B·F=2·8, 16, 8, 12) with num_frames=8. `time_proj.*`/"
      "`time_embedding.out` of the UNet for t ∈ {0,1,250,333,500,666,999}. `clip.ids` rows = prompt, negative, empty; "
      "`clip.out` = last_hidden_state; `clip.hidden_states_minus2_final_ln` = final_layer_norm(hidden_states[-2]) = "
      "diffusers `clip_skip=1` (A1111 \"CLIP skip 2\").")
    w("")
    w("Scheduler: `betas_linear`, `alphas_cumprod_linear`, `alphas_cumprod_scaled_linear` as diffusers computes them "
      "(float32); `ddim_step{i}.*` = a 4-step chain (linspace, set_alpha_to_one False, eta 0) on a [1,4,2,8,8] sample "
      "with random ε. `scheduler_timesteps.json`: `{linspace|leading|trailing: {timestep_spacing, set_alpha_to_one, "
      "steps_offset, num_train_timesteps, by_num_steps: {\"N\": {timesteps, final_alpha_cumprod, prev_timesteps}}}}` "
      "for N = 1..50; linspace and trailing use set_alpha_to_one False, leading True. `prev_timesteps` = t − 1000//N "
      "(the DDIM rule; negative means final_alpha_cumprod).")
    w("")
    w("Tokenizer cases: `{bos, eos, pad, max_length, cases: [{name, prompt, is_nfc, ids (77), ids_untruncated}]}`. "
      "transformers does NFC + whitespace collapse + lower-case, no ftfy/html unescape; `<|endoftext|>` typed in a "
      "prompt becomes the special token.")
    w("")
    w("randn cases: key `seed{seed}_{dims joined by x}` = `torch.randn(shape, generator=torch.Generator('cpu')"
      ".manual_seed(seed))`; torch uses a different algorithm for fewer than 16 elements, hence the 7/15/16 cases.")
    w("")
    w("## Observations (diffusers 0.42.1 / transformers 5.24.0)")
    w("")
    w("- transformers 5.x `CLIPTextModel` has no `text_model` submodule and saves keys without the `text_model.` "
      "prefix. diffusers 0.42.1 `AnimateDiffPipeline.encode_prompt(clip_skip=k)` still reads "
      "`text_encoder.text_model.final_layer_norm` and raises AttributeError with it; the script checks the "
      "clip-skip reference by aliasing `text_model` to the model. `from_single_file` loads the LDM CLIP "
      "(`text_model.` keys) fine.")
    w("- `linspace` spacing with N = 1 gives timesteps `[0]` (linspace(0, 999, 1)); see `scheduler_timesteps.json`.")
    w("- The DDIM step uses `prev_t = t − 1000//N` for every spacing (`prev_timesteps`), not the next listed timestep.")
    w("- diffusers' motion-module converter drops `pos_encoder.pe`; the original files carry it twice per module "
      "(`attention_blocks.0/1`), equal to the diffusers `pos_embed.pe` buffer (fp16-rounded in the .ckpt).")
    w("")
    w("## Keys and shapes")
    for fname, rows in summary.items():
        w("")
        w(f"### `{fname}`")
        w("")
        w("| key | dtype | shape |")
        w("| --- | --- | --- |")
        for k, dt, sh in rows:
            w(f"| `{k}` | {dt} | {sh} |")
    (out / "README.md").write_text("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
