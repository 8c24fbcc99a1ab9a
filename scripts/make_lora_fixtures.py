#!/usr/bin/env python3
"""LoRA fixtures for the tiny models: files in the formats people use, and diffusers' merged weights and a short
AnimateDiffPipeline run with them applied.

    "$(scripts/fixtures-env)/bin/python" scripts/make_lora_fixtures.py [--out tests/fixtures]

Needs peft (scripts/fixtures-env installs it). Reads tests/fixtures/tiny/{diffusers,motion_adapter} (written by
make_fixtures.py) and writes tests/fixtures/tiny/lora/:

  kohya_unet_te.safetensors   kohya/A1111 LoRA, fp16, diffusers module paths (`lora_unet_down_blocks_0_attentions_0_…`,
                              `lora_te_text_model_encoder_layers_0_self_attn_q_proj`), rank 2: every Linear / 1x1 conv of
                              the 16 spatial transformers (to_q/k/v/out.0, ff.net.0.proj, ff.net.2, proj_in, proj_out) and
                              LoCon convs (3x3 resnet conv1/conv2, downsampler/upsampler convs, 1x1 conv_shortcut,
                              time_emb_proj); the text encoder's q/k/v/out_proj, fc1, fc2. `.alpha` = 1 (scale 1/2) on
                              every module
  kohya_ldm_paths.safetensors kohya LoRA, f32, with LDM module paths (`lora_unet_input_blocks_1_1_…`, `…middle_block_1_…`,
                              `…output_blocks_5_2_conv`, `…input_blocks_4_0_skip_connection`, `…in_layers_2`), rank 3,
                              no `.alpha` keys (scale 1)
  peft_unet_te.safetensors    diffusers/PEFT format as `save_lora_weights` writes it (`unet.….to_q.lora_A.weight`,
                              `text_encoder.….q_proj.lora_A.weight`; metadata `lora_adapter_metadata` with r 4,
                              lora_alpha 2 → scale 1/2), targets to_q/to_k/to_v/to_out.0 and resnet conv1 (3x3) in the
                              UNet, q_proj/v_proj in the text encoder
  motion_lora_orig.ckpt       AnimateDiff MotionLoRA, original format (`torch.save` of a plain dict, f32):
                              `…motion_modules.j.temporal_transformer.transformer_blocks.0.attention_blocks.{0,1}.processor.
                              {to_q,to_k,to_v,to_out}_lora.{down,up}.weight`, rank 2, every motion module incl. mid_block
  motion_lora_diffusers.safetensors  the same MotionLoRA in diffusers' PEFT naming
                              (`unet.down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q.lora_A.weight`)
  reference.safetensors       merged weights (keys `<lora>.<diffusers tensor name>`, f32) for some layers per file at
                              the multipliers below, computed by diffusers (load_lora_weights + fuse_lora), plus
                              `pipeline.*`: AnimateDiffPipeline (8 frames 64x64, 4 DDIM steps from the tiny scheduler
                              config, CFG 7.5, explicit init latents) with kohya_unet_te @0.8 + peft_unet_te @0.6 +
                              motion_lora_orig @1.0 fused: init_latents, prompt_embeds, negative_prompt_embeds,
                              final_latents (f32), frames (f16)

Merge rule checked here against diffusers: W' = W + Σ multiplier·scale·(up @ down) with scale = alpha/rank for kohya
(no alpha → 1), lora_alpha/r from the PEFT metadata, 1 for MotionLoRA. Deterministic.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402

import peft  # noqa: E402
from diffusers import (  # noqa: E402
    AnimateDiffPipeline,
    AutoencoderKL,
    DDIMScheduler,
    MotionAdapter,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.loaders.lora_conversion_utils import (  # noqa: E402
    _convert_unet_lora_key,
    _maybe_map_sgm_blocks_to_diffusers,
)
from peft import LoraConfig  # noqa: E402
from peft.utils import get_peft_model_state_dict  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import CLIPTextModel  # noqa: E402

SEED = 1234 + 60
W_KOHYA, W_PEFT, W_MOTION = 0.8, 0.6, 1.0
FRAMES, H, W, STEPS, CFG = 8, 64, 64, 4, 7.5


def gen(off):
    return torch.Generator("cpu").manual_seed(SEED + off)


def rnd(shape, g, std):
    return (torch.randn(shape, generator=g) * std).half().float()  # fp16-representable


def load_models(tiny):
    dd = tiny / "diffusers"
    unet = UNet2DConditionModel.from_pretrained(dd / "unet").eval()
    te = CLIPTextModel.from_pretrained(dd / "text_encoder").eval()
    vae = AutoencoderKL.from_pretrained(dd / "vae").eval()
    adapter = MotionAdapter.from_pretrained(tiny / "motion_adapter").eval()
    return unet, te, vae, adapter


def te_path(name):
    """transformers 5 CLIPTextModel names have no `text_model.`; kohya/diffusers files use it."""
    return name if name.startswith("text_model.") else "text_model." + name


def layer_kind(mod):
    if isinstance(mod, torch.nn.Linear):
        return "linear"
    if isinstance(mod, torch.nn.Conv2d):
        return f"conv{mod.kernel_size[0]}"
    return None


def lora_pair(mod, r, g):
    """(down, up) with kohya shapes; small values so the merged model stays sane."""
    if isinstance(mod, torch.nn.Linear):
        return rnd([r, mod.in_features], g, 0.5 / mod.in_features**0.5), rnd([mod.out_features, r], g, 0.5)
    k = mod.kernel_size[0]
    return (rnd([r, mod.in_channels, k, k], g, 0.5 / (mod.in_channels * k * k) ** 0.5),
            rnd([mod.out_channels, r, 1, 1], g, 0.5))


def kohya_unet_modules(unet):
    out = []
    for name, mod in unet.named_modules():
        kind = layer_kind(mod)
        if kind is None:
            continue
        in_tf = ".attentions." in name and any(name.endswith(s) for s in (
            "to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out"))
        locon = (name.endswith((".conv1", ".conv2")) and ".resnets." in name and name.startswith(("down_blocks.0.", "mid_block.", "up_blocks.3.resnets.2"))) \
            or name.endswith(("downsamplers.0.conv", "upsamplers.0.conv", ".conv_shortcut", "resnets.0.time_emb_proj"))
        if in_tf or locon:
            out.append((name, mod))
    return out


def make_kohya(unet, te):
    g = gen(1)
    sd, merges = {}, {}
    for name, mod in kohya_unet_modules(unet):
        d, u = lora_pair(mod, 2, g)
        k = "lora_unet_" + name.replace(".", "_")
        sd[k + ".lora_down.weight"], sd[k + ".lora_up.weight"] = d, u
        # One alpha for every module: diffusers 0.42 is not a usable oracle for files whose alphas differ between
        # modules (the alphas of attention processors get keys like `…attn1.processor.to_q_lora.down.weight.alpha`
        # that match no PEFT module, so they fall back to the file's most common alpha) or that lack `.alpha` on
        # some modules (kohya/A1111: missing → rank, scale 1; diffusers: the most common alpha).
        alpha = 1.0
        sd[k + ".alpha"] = torch.tensor(alpha)
        merges[("unet", name)] = (d, u, alpha / 2)
    for name, mod in te.named_modules():
        if layer_kind(mod) == "linear" and name.endswith(("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")):
            d, u = lora_pair(mod, 2, g)
            k = "lora_te_" + te_path(name).replace(".", "_")
            sd[k + ".lora_down.weight"], sd[k + ".lora_up.weight"] = d, u
            alpha = 1.0
            sd[k + ".alpha"] = torch.tensor(alpha)
            merges[("te", name)] = (d, u, alpha / 2)
    return {k: v.half() for k, v in sd.items()}, merges


def make_kohya_ldm(unet):
    """LDM-path names; diffusers' own mapping (_maybe_map_sgm_blocks_to_diffusers + _convert_unet_lora_key) must
    give back the diffusers module each one was made from."""
    g = gen(2)
    has_attn_up = [False, True, True, True]
    names = [
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
        "down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k",
        "down_blocks.0.resnets.0.conv1",
        "down_blocks.1.resnets.0.conv_shortcut",
        "down_blocks.2.attentions.1.proj_in",
        "mid_block.attentions.0.transformer_blocks.0.ff.net.2",
        "mid_block.resnets.1.time_emb_proj",
        "up_blocks.1.attentions.2.transformer_blocks.0.attn1.to_out.0",
        "up_blocks.1.upsamplers.0.conv",
        "up_blocks.3.attentions.0.proj_out",
    ]
    mods = dict(unet.named_modules())
    sd, merges = {}, {}
    for name in names:
        ldm = mf.unet_key_to_ldm(name + ".weight", has_attn_up)[: -len(".weight")]
        k = "lora_unet_" + ldm.replace(".", "_")
        d, u = lora_pair(mods[name], 3, g)
        sd[k + ".lora_down.weight"], sd[k + ".lora_up.weight"] = d, u
        merges[("unet", name)] = (d, u, 1.0)  # no `.alpha`: scale 1
    # diffusers' reading of these names
    mapped = _maybe_map_sgm_blocks_to_diffusers(dict(sd), unet.config)
    got = sorted({_convert_unet_lora_key(k).replace(".processor", "").split(".lora")[0].replace("_lora.down.weight", "")
                  for k in mapped if k.endswith("lora_down.weight")})
    want = sorted(n.replace("to_out.0", "to_out") for n in names)
    assert got == want, (got, want)
    return sd, merges


def make_peft(unet, te):
    g = gen(3)
    ucfg = LoraConfig(r=4, lora_alpha=2, target_modules=["to_q", "to_k", "to_v", "to_out.0", "conv1"])
    tcfg = LoraConfig(r=4, lora_alpha=2, target_modules=["q_proj", "v_proj"])
    unet.add_adapter(ucfg)
    # transformers 5.24's own PEFT integration (te.add_adapter / load_adapter) wants peft >= 0.22, which does
    # not exist yet: inject with peft directly, and merge text-encoder LoRAs by hand below.
    peft.inject_adapter_in_model(tcfg, te)
    with torch.no_grad():
        for m in (unet, te):
            for n, p in m.named_parameters():
                if "lora_A" in n:
                    p.copy_(rnd(p.shape, g, 0.5 / (p[0].numel()) ** 0.5))
                elif "lora_B" in n:
                    p.copy_(rnd(p.shape, g, 0.5))
    usd = get_peft_model_state_dict(unet)
    tsd = {te_path(k): v for k, v in get_peft_model_state_dict(te).items()}  # the usual `text_model.` naming
    merges = {}
    for comp, sd in (("unet", usd), ("te", tsd)):
        for k, a in sd.items():
            if ".lora_A." in k:
                base = k.split(".lora_A.")[0]
                name = base[len("text_model."):] if comp == "te" else base
                merges[(comp, name)] = (a, sd[k.replace(".lora_A.", ".lora_B.")], 0.5)
    return usd, tsd, ucfg, tcfg, merges


def original_motion_key(k):
    """Original AnimateDiff motion name → diffusers MotionAdapter name (make_fixtures.adapter_key_to_original reversed)."""
    return (k.replace(".temporal_transformer", "").replace(".attention_blocks.0", ".attn1").replace(".attention_blocks.1", ".attn2"))


def make_motion(adapter):
    g = gen(4)
    orig, diff, merges = {}, {}, {}
    for name, mod in adapter.named_modules():
        if not (isinstance(mod, torch.nn.Linear) and ".attn" in name and name.endswith(("to_q", "to_k", "to_v", "to_out.0"))):
            continue
        d, u = lora_pair(mod, 2, g)
        proj = name.split(".")[-1] if not name.endswith("to_out.0") else "to_out"
        blk = name[: name.rindex(".attn") + 6]  # …transformer_blocks.0.attn1
        parts = blk.split(".")
        n = 4 if parts[0] in ("down_blocks", "up_blocks") else 3
        prefix = ".".join(parts[:n]) + ".temporal_transformer." + ".".join(parts[n:])
        prefix = prefix.replace(".attn1", ".attention_blocks.0").replace(".attn2", ".attention_blocks.1")
        ok = f"{prefix}.processor.{proj}_lora"
        assert original_motion_key(prefix) == blk, (prefix, blk)
        orig[ok + ".down.weight"], orig[ok + ".up.weight"] = d, u
        diff[f"unet.{name}.lora_A.weight"], diff[f"unet.{name}.lora_B.weight"] = d, u
        merges[("motion", name)] = (d, u, 1.0)
    return orig, diff, merges


def load_unet_lora(pipe, path, name):
    """pipe.load_lora_weights without the text-encoder half (transformers' PEFT integration is unusable here),
    with the UNet config passed so LDM-path kohya names are mapped (_maybe_map_sgm_blocks_to_diffusers)."""
    sd, alphas, meta = pipe.lora_state_dict(str(path), return_lora_metadata=True, unet_config=pipe.unet.config)
    pipe.load_lora_into_unet(sd, network_alphas=alphas, unet=pipe.unet, adapter_name=name, metadata=meta, _pipeline=pipe)


def direct_merge(weight, d, u, scale, mult):
    if weight.ndim == 2:
        delta = u.reshape(u.shape[0], -1) @ d.reshape(d.shape[0], -1)
    else:
        delta = (u.reshape(u.shape[0], -1) @ d.reshape(d.shape[0], -1)).reshape(weight.shape)
    return weight + mult * scale * delta


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "tests" / "fixtures"))
    ap.add_argument("--clip-bpe", default=str(Path(sys.prefix) / "clip-bpe" / "open_clip_torch-3.3.0-py3-none-any.whl"))
    args = ap.parse_args()
    tiny = Path(args.out) / "tiny"
    out = tiny / "lora"
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)

    unet, te, vae, adapter = load_models(tiny)
    base = {"unet": {k: v.clone() for k, v in unet.state_dict().items()},
            "te": {k: v.clone() for k, v in te.state_dict().items()},
            "motion": {k: v.clone() for k, v in adapter.state_dict().items()}}

    kohya, m_kohya = make_kohya(unet, te)
    save_file(kohya, str(out / "kohya_unet_te.safetensors"))
    m_kohya = {k: (d.half().float(), u.half().float(), s) for k, (d, u, s) in m_kohya.items()}
    ldm, m_ldm = make_kohya_ldm(unet)
    save_file(ldm, str(out / "kohya_ldm_paths.safetensors"))
    motion_orig, motion_diff, m_motion = make_motion(adapter)
    torch.save(motion_orig, str(out / "motion_lora_orig.ckpt"))
    save_file(motion_diff, str(out / "motion_lora_diffusers.safetensors"))
    # PEFT last: it injects adapters into unet/te (fresh copies are loaded for everything below)
    usd, tsd, ucfg, tcfg, m_peft = make_peft(unet, te)
    tmp = out / "_peft"
    StableDiffusionPipeline.save_lora_weights(
        tmp, unet_lora_layers=usd, text_encoder_lora_layers=tsd,
        unet_lora_adapter_metadata=ucfg.to_dict(), text_encoder_lora_adapter_metadata=tcfg.to_dict())
    (tmp / "pytorch_lora_weights.safetensors").rename(out / "peft_unet_te.safetensors")
    tmp.rmdir()
    # safetensors writes several metadata entries in random order: keep only `lora_adapter_metadata` (what
    # diffusers reads; it drops `format`), with sorted lists, so the file is byte-identical between runs.
    with safe_open(str(out / "peft_unet_te.safetensors"), "pt") as f:
        adapter_meta = json.loads(f.metadata()["lora_adapter_metadata"])
    # target_modules are Python sets dumped as lists (hash order): sort them.
    adapter_meta = json.dumps({k: sorted(v) if k.endswith("target_modules") and isinstance(v, list) else v
                               for k, v in adapter_meta.items()}, indent=2, sort_keys=True)
    save_file(load_file(str(out / "peft_unet_te.safetensors")), str(out / "peft_unet_te.safetensors"),
              metadata={"lora_adapter_metadata": adapter_meta})
    peft_keys = sorted(load_file(str(out / "peft_unet_te.safetensors")).keys())
    mf.log(f"peft file keys e.g. {peft_keys[0]} / {peft_keys[-1]}")

    # ---- diffusers: load + fuse every file into a fresh pipeline, compare with the direct merge -------------
    unet, te, vae, adapter = load_models(tiny)
    tok = mf.build_tokenizer(args.clip_bpe)
    sched = DDIMScheduler.from_pretrained(tiny / "diffusers" / "scheduler")
    pipe = AnimateDiffPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, motion_adapter=adapter, scheduler=sched)
    pipe.set_progress_bar_config(disable=True)
    load_unet_lora(pipe, out / "kohya_unet_te.safetensors", "kohya")
    load_unet_lora(pipe, out / "peft_unet_te.safetensors", "peft")
    load_unet_lora(pipe, out / "motion_lora_diffusers.safetensors", "motion")
    pipe.unet.set_adapters(["kohya", "peft", "motion"], weights=[W_KOHYA, W_PEFT, W_MOTION])
    pipe.fuse_lora(components=["unet"], adapter_names=["kohya", "peft", "motion"])
    pipe.unload_lora_weights()
    # text encoder: direct merge (see make_peft)
    te_sd = {k: v.clone() for k, v in pipe.text_encoder.state_dict().items()}
    for ms, w in ((m_kohya, W_KOHYA), (m_peft, W_PEFT)):
        for (comp, name), (d, u, s) in ms.items():
            if comp == "te":
                te_sd[name + ".weight"] = direct_merge(te_sd[name + ".weight"], d, u, s, w)
    pipe.text_encoder.load_state_dict(te_sd)
    fused = {"unet": {k: v for k, v in pipe.unet.state_dict().items() if "motion_modules" not in k},
             "te": pipe.text_encoder.state_dict(),
             "motion": {k: v for k, v in pipe.unet.state_dict().items() if "motion_modules" in k}}

    # direct merge of all three at their weights
    merged = {c: {k: v.clone() for k, v in sd.items()} for c, sd in base.items()}
    for mults in ((m_kohya, W_KOHYA), (m_peft, W_PEFT), (m_motion, W_MOTION)):
        ms, w = mults
        for (comp, name), (d, u, s) in ms.items():
            key = name + ".weight"
            merged[comp][key] = direct_merge(merged[comp][key], d, u, s, w)
    worst = 0.0
    touched = {c: set() for c in merged}
    for ms in (m_kohya, m_peft, m_motion):
        for (comp, name) in ms:
            touched[comp].add(name + ".weight")
    for comp in ("unet", "te", "motion"):
        for k, v in merged[comp].items():
            fk = k
            if comp == "motion":
                fk = k  # UNetMotionModel motion modules have adapter names
            f = fused[comp][fk]
            e = (f - v).abs().max().item()
            if e > 1e-5:
                mf.log(f"  differs: {comp} {k} {e:.3e} touched={k in touched[comp]}")
            worst = max(worst, e)
            if k not in touched[comp]:
                assert torch.equal(f, base[comp][k]), (comp, k)
    mf.log(f"direct merge vs diffusers fuse_lora: max |diff| {worst:.3e} over "
           f"{sum(len(t) for t in touched.values())} merged tensors")
    assert worst < 1e-5

    ref = {}
    picks = {
        "kohya": [("unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"),
                  ("unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"),
                  ("unet", "down_blocks.0.attentions.1.proj_in"),
                  ("unet", "down_blocks.0.resnets.0.conv1"),
                  ("unet", "down_blocks.1.resnets.0.conv_shortcut"),
                  ("unet", "mid_block.resnets.0.time_emb_proj"),
                  ("unet", "up_blocks.1.upsamplers.0.conv"),
                  ("unet", "up_blocks.3.attentions.2.transformer_blocks.0.ff.net.0.proj"),
                  ("te", "text_model.encoder.layers.0.self_attn.q_proj"),
                  ("te", "text_model.encoder.layers.1.mlp.fc1")],
        "ldm": [(c, n) for (c, n) in m_ldm],
        "peft": [("unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v"),
                 ("unet", "up_blocks.2.resnets.1.conv1"),
                 ("te", "text_model.encoder.layers.1.self_attn.v_proj")],
        "motion": [("motion", "down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q"),
                   ("motion", "mid_block.motion_modules.0.transformer_blocks.0.attn2.to_out.0"),
                   ("motion", "up_blocks.3.motion_modules.2.transformer_blocks.0.attn2.to_v")],
    }
    singles = {"kohya": (m_kohya, W_KOHYA), "ldm": (m_ldm, 1.0), "peft": (m_peft, W_PEFT), "motion": (m_motion, W_MOTION)}
    for lora, items in picks.items():
        ms, w = singles[lora]
        for comp, name in items:
            bname = name if comp != "te" else name[len("text_model."):]  # transformers 5 names
            key = ("te", bname) if comp == "te" else (comp, name)
            d, u, s = ms[key]
            ref[f"{lora}.{name}.weight"] = direct_merge(base[comp][bname + ".weight"], d, u, s, w)
    # the ldm-path LoRA through diffusers too
    p2 = StableDiffusionPipeline(vae=vae, text_encoder=CLIPTextModel.from_pretrained(tiny / "diffusers" / "text_encoder").eval(),
                                 tokenizer=tok, unet=UNet2DConditionModel.from_pretrained(tiny / "diffusers" / "unet").eval(),
                                 scheduler=sched, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    load_unet_lora(p2, out / "kohya_ldm_paths.safetensors", "ldm")
    p2.fuse_lora(components=["unet"], adapter_names=["ldm"], lora_scale=1.0)
    p2.unload_lora_weights()
    sd2 = p2.unet.state_dict()
    e2 = max((sd2[n + ".weight"] - ref[f"ldm.{n}.weight"]).abs().max().item() for _, n in m_ldm)
    mf.log(f"ldm-path kohya: diffusers vs direct merge max |diff| {e2:.3e}")
    assert e2 < 1e-5

    # ---- the pipeline with all three fused ------------------------------------------------------------------
    init = torch.randn([1, 4, FRAMES, H // 8, W // 8], generator=gen(10))
    with torch.no_grad():
        pe, ne = pipe.encode_prompt(mf.PROMPT, "cpu", 1, True, mf.NEGATIVE)
        frames = pipe(mf.PROMPT, negative_prompt=mf.NEGATIVE, num_frames=FRAMES, height=H, width=W,
                      num_inference_steps=STEPS, guidance_scale=CFG, latents=init.clone(), output_type="latent").frames
        video = pipe.decode_latents(frames, 16)
        video = pipe.video_processor.postprocess_video(video=video, output_type="np")
    ref["pipeline.init_latents"] = init
    ref["pipeline.prompt_embeds"] = pe
    ref["pipeline.negative_prompt_embeds"] = ne
    ref["pipeline.final_latents"] = frames
    ref["pipeline.frames"] = torch.from_numpy(video.copy()).half()
    ref["pipeline.timesteps"] = pipe.scheduler.timesteps.to(torch.int64).clone()
    meta = {"generator": "scripts/make_lora_fixtures.py", "versions": {k: v for k, v in mf.VERSIONS.items() if k != "python"},
            "peft": peft.__version__,
            "weights": {"kohya": W_KOHYA, "ldm": 1.0, "peft": W_PEFT, "motion": W_MOTION},
            "pipeline": {"frames": FRAMES, "height": H, "width": W, "steps": STEPS, "guidance": CFG,
                         "prompt": mf.PROMPT, "negative": mf.NEGATIVE,
                         "loras": [["kohya_unet_te.safetensors", W_KOHYA], ["peft_unet_te.safetensors", W_PEFT],
                                   ["motion_lora_orig.ckpt", W_MOTION]]}}
    ref = {k: v.detach().contiguous().clone() for k, v in sorted(ref.items())}
    save_file(ref, str(out / "reference.safetensors"), metadata=mf.one_key_metadata(meta))
    mf.log(f"pipeline: final |latents| max {frames.abs().max():.3f}, frames mean {video.mean():.4f}")
    total = 0
    for f in sorted(out.iterdir()):
        total += f.stat().st_size
        mf.log(f"{f.name}: {f.stat().st_size:,} bytes")
    mf.log(f"total {total:,} bytes")


if __name__ == "__main__":
    main()
