# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · Controllable SCEdit: edges and masks steer a frozen U-Net through its skips
#
# SCEdit (Jiang et al., CVPR 2024, [arXiv:2312.11392](https://arxiv.org/abs/2312.11392)) edits only
# the skip connections of a diffusion U-Net. Its *Controllable* SC-Tuner (CSC-Tuner) adds a small
# condition encoder, so an edge map or a mask steers generation — the job ControlNet does with a
# trainable copy of the whole U-Net encoder.
#
# **Claim:** (the paper's) CSC-Tuners control a frozen diffusion model from conditions such as edges
# and masks, compose several conditions with one scale each, and need about 7.9 % of ControlNet's
# trainable parameters.
#
# **Running time** on the project's 2-core CPU with one torch thread, measured 2026-11-30: full mode
# (1000 steps for each of the two CSC adapters and for the ControlNet) **5 min 53 s** in the full
# course build (`swiftlite course build --jobs 2`: two tutorials at a time, one per core); quick
# mode (`SWIFTLITE_QUICK=1`, the zoo's quick builds cached) 12 s. Section 8 prints this run's time.
# The committed figures come from that build.
#
# **You will learn**
# * how a condition enters a skip connection: `skip' = skip + Σ_m α_m (c_m + T_m(skip + c_m))`, and
#   why a zero-initialised hint conv makes the tuned model start as the base model;
# * how to train one CSC adapter per condition on `unet-tiny` and compose them at sampling time with
#   per-condition scales (`scetuning_condition`, `scetuning_scale`);
# * how to measure adherence (mask IoU, edge agreement) and compare the cost with diffusers'
#   `ControlNetModel` on the same U-Net.

# %%
import contextlib
import copy
import time

import diffusers
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch

import swiftlite
import swiftlite.zoo as zoo
from swiftlite import viz
from swiftlite.settings import quick_mode
from swiftlite.train import train
from swiftlite.diffusion import TextToImageLoss, edge_agreement, mask_edges, mask_iou, object_mask, sample, sample_grid
from swiftlite.diffusion import text_to_image_dataset
from swiftlite.diffusion.controlnet import ControlNetUNet, trainable_parameter_count
from swiftlite import SCETuningConfig, Swift, scetuning_condition, scetuning_scale
from swiftlite.tuners.scetuning import unet_skip_widths
from swiftlite.tuners.scetuning_condition import unet_skip_levels

QUICK = quick_mode()  # CI smoke run: a few steps, a few samples
STEPS = 3 if QUICK else 1000  # train steps per condition
N_TRAIN, N_EVAL = (64, 8) if QUICK else (4000, 48)
SAMPLING_STEPS = 3 if QUICK else 20
BATCH_SIZE, LR, P_UNCOND = 32, 3e-3, 0.3
torch.set_num_threads(1)  # small tensors: one thread is as fast, and does not fight other jobs for the cores
started = time.perf_counter()
print(f"swiftlite {swiftlite.__version__}, torch {torch.__version__}, diffusers {diffusers.__version__}, "
      f"{'quick' if QUICK else 'full'} mode")

# %% [markdown]
# ## 1. The equation
#
# The SC-Tuner of [tutorial 06](06_scedit.ipynb) edits each skip feature $x_j \in \mathbb{R}^{B\times C_j\times H_j\times W_j}$
# with a per-pixel MLP over its channels, $T_j(x) = W_\text{up}\,\mathrm{GELU}(W_\text{down}\,x)$,
# $W_\text{down}\in\mathbb{R}^{C_j\times C_j}$, $W_\text{up} = 0$ at init. The CSC-Tuner adds, for every
# condition $m$ (an edge map, a mask), a hint $c_j^m$ of the skip's shape computed from the condition
# map by a small encoder, and edits the skip with all conditions at once:
#
# $$ x_j' = x_j + \sum_m \alpha_m\,\bigl(c_j^m + T_j^m(x_j + c_j^m)\bigr). $$
#
# The condition encoder ([`scetuning_condition.py`](../swiftlite/tuners/scetuning_condition.py)) is a
# cascade of 3×3 convolutions with SiLU, halving the resolution once per U-Net level, and one
# zero-initialised 1×1 conv $Z_j$ per skip: $c_j = Z_j(\text{level}_{l(j)})$, so $c_j = 0$ and
# $x_j' = x_j$ at injection. In [`scetuning.py`](../swiftlite/tuners/scetuning.py) the sum is
# `SCETuningLayer._controlled` and one term is `SCETunerModule.controlled`:
# `scale * (c + op.delta(x + c))` ($\alpha_m$, $c_j^m$, $T_j^m$).
#
# In swiftlite **one condition is one adapter**: its own encoder and tuners, its own `tuner_scale`
# $\alpha_m$. Several conditions are several active adapters on the same skips.

# %% [markdown]
# ## 2. The model, where the tuners attach, and the ControlNet baseline
#
# `unet-tiny` is a diffusers `UNet2DConditionModel` denoising 16×16 pixel images of the shapes world
# (v-prediction, trained on "a red circle at the top left"-style captions). Its decoder reads six skip
# connections. The condition encoder needs one level per skip resolution.

# %%
pipe = zoo.load("unet-tiny")
WORLD = dict(shapes=["circle", "square", "triangle"], colours=["red", "green", "blue", "yellow"],
             sizes=["large"], backgrounds=["black"])  # what unet-tiny was trained on
widths, levels = unet_skip_widths(pipe.unet), unet_skip_levels(pipe.unet)
for name in widths:
    print(f"{name}: skip of {widths[name]} channels at {pipe.image_size // 2 ** levels[name]}×{pipe.image_size // 2 ** levels[name]}")
controlnet = ControlNetUNet(copy.deepcopy(pipe.unet), conditioning_channels=1)  # built before the U-Net is tuned


def csc_config() -> SCETuningConfig:
    return SCETuningConfig(dims=list(widths.values()), target_modules=r"up_blocks\.\d+\.resnets\.\d+",
                           condition_channels=1, condition_dims=[8, 16, 16])  # a (B, 1, H, W) map per condition


CONDITIONS = ["mask", "edges"]  # adapter names = the shapes world's map names
model = Swift.prepare_model(pipe.unet, {name: csc_config() for name in CONDITIONS})
viz.tuner_diagram(model)

# %% [markdown]
# **Predict, then run.** Right after injection the hint convs $Z_j$ and $W_\text{up}$ are zero, so
# any condition must leave the output exactly as the base U-Net's.

# %%
x = torch.randn(2, 3, pipe.image_size, pipe.image_size, generator=torch.Generator().manual_seed(0))
ctx = pipe.encode_prompt(["a red circle at the top left", "a blue square in the center"])
t = torch.tensor([500, 500])
random_maps = {name: torch.rand(2, 1, pipe.image_size, pipe.image_size) for name in CONDITIONS}
with torch.no_grad():
    with model.disable_adapter():
        y_base = model(x, t, encoder_hidden_states=ctx).sample
    with scetuning_condition(model, random_maps):
        y_csc = model(x, t, encoder_hidden_states=ctx).sample
assert torch.equal(y_base, y_csc)
print("at init, with both conditions: identical to the base U-Net")

# %% [markdown]
# ## 3. Training one CSC adapter per condition
#
# The data are shapes-world images with their captions and their maps (`mask`: the object, `edges`:
# its outline). `TextToImageLoss` draws $t$ and $\varepsilon$, builds $x_t$ and regresses the
# scheduler's target (here $v$); it enters `condition_context(maps)` around the U-Net call, which is
# where `scetuning_condition` hands the batch's map to the adapter. With probability `P_UNCOND` the
# caption is dropped, so the adapter learns to place the object from the map alone. Only the active
# adapter trains; the U-Net stays frozen.

# %%
train_ds = text_to_image_dataset(pipe.tokenizer, N_TRAIN, image_size=pipe.image_size, seed=1,
                                 condition_columns=CONDITIONS, **WORLD)
empty_ids = pipe.tokenizer("", padding="max_length", max_length=pipe.tokenizer.model_max_length)["input_ids"]
histories = {}
for name in CONDITIONS:
    model.set_active_adapters([name])
    loss_fn = TextToImageLoss(pipe.scheduler, text_encoder=pipe.text_encoder, p_uncond=P_UNCOND, empty_ids=empty_ids,
                              condition_columns=[name],
                              condition_context=lambda maps, name=name: scetuning_condition(model, {name: maps}))
    histories[name] = train(model, train_ds, loss_fn, steps=STEPS, batch_size=BATCH_SIZE, lr=LR, seed=0)
    print(f"{name}: loss {np.mean(histories[name].loss[:10]):.4f} (first 10 steps) → "
          f"{np.mean(histories[name].loss[-10:]):.4f} (last 10)")
model.set_active_adapters(CONDITIONS)
csc_params = {name: sum(p.numel() for p in model.adapter_parameters(name).values()) for name in CONDITIONS}

# %% [markdown]
# ## 4. Condition → samples
#
# Held-out records (another seed) give prompts and maps. For each we sample four ways with the same
# seed: the base U-Net (`disable_adapter`), the mask adapter alone, the edges adapter alone, and both
# (`scetuning_scale(model, 0.0, name)` switches one condition off). Classifier-free guidance runs the
# batch twice (`[∅; caption]`); the condition is tiled over both halves.

# %%
eval_ds = text_to_image_dataset(pipe.tokenizer, N_EVAL, image_size=pipe.image_size, seed=7,
                                condition_columns=CONDITIONS, keep_columns=["caption"], **WORLD)
columns = eval_ds[:]  # every row: a dict of tensors (and the captions)
prompts = list(columns["caption"])
maps = {name: columns[name].float()[:, None] for name in CONDITIONS}  # (B, 1, H, W) in {0, 1}


def generate(scales: dict, condition: dict | None = None, prompt_list=None) -> np.ndarray:
    """Samples with α_m = scales[m] (0 switches a condition off); condition defaults to the held-out maps."""
    condition = maps if condition is None else condition
    prompt_list = prompts if prompt_list is None else prompt_list

    def context(c):
        stack = contextlib.ExitStack()
        stack.enter_context(scetuning_condition(model, c))
        for name, alpha in scales.items():
            stack.enter_context(scetuning_scale(model, alpha, name))
        return stack

    return sample(pipe, prompt_list, unet=model, condition=condition, condition_context=context,
                  num_inference_steps=SAMPLING_STEPS, seed=0)


with model.disable_adapter():
    base_images = sample(pipe, prompts, unet=model, num_inference_steps=SAMPLING_STEPS, seed=0)
images = {"no control (base)": base_images,
          "mask (α=1)": generate({"mask": 1.0, "edges": 0.0}),
          "edges (α=1)": generate({"mask": 0.0, "edges": 1.0}),
          "mask + edges": generate({"mask": 1.0, "edges": 1.0})}
show = slice(0, 8)
as_rgb = lambda m: np.repeat((m[:, 0].numpy() * 255).astype(np.uint8)[..., None], 3, axis=-1)  # noqa: E731
fig = sample_grid({"mask map": as_rgb(maps["mask"][show]), "edge map": as_rgb(maps["edges"][show]),
                   **{k: v[show] for k, v in images.items()}},
                  col_titles=[p.replace(" at the ", "\n").replace(" in the ", "\n") for p in prompts[show]],
                  title="CSC-Tuners on unet-tiny: condition maps and samples (same seed per column)")
viz.save_figure(fig, "07_condition_grid")

# %% [markdown]
# ## 5. Adherence: does the object follow the map?
#
# `object_mask` takes the pixels far from the background colour; **mask IoU** compares it with the
# condition mask, **edge agreement** is the F1 of its outline against the condition's edges (1 px
# tolerance, lenient on 16 px images: IoU is the stricter score). The caption names the place, but the
# base `unet-tiny` follows positions only loosely (the grid above), so it scores low; the adapters should
# add the exact shape and place. A harder test gives each prompt the map of *another* record (shifted by
# one): does the object follow the map or the caption?
#
# **Predict:** each adapter raises both scores above the base; under swapped maps, the samples agree
# more with the map they were given than the base does.

# %%
def adherence(imgs: np.ndarray, target: dict) -> dict[str, float]:
    found = object_mask(imgs)
    return {"mask IoU": float(mask_iou(found, target["mask"][:, 0].numpy()).mean()),
            "edge agreement": float(edge_agreement(mask_edges(found), target["edges"][:, 0].numpy().astype(np.uint8)).mean())}


scores = {label: adherence(imgs, maps) for label, imgs in images.items()}
swap = torch.roll(torch.arange(len(prompts)), 1)
swapped = {name: m[swap] for name, m in maps.items()}
scores["base, vs swapped maps"] = adherence(base_images, swapped)
scores["mask + edges, swapped maps"] = adherence(generate({"mask": 1.0, "edges": 1.0}, swapped), swapped)
print(f"{'samples':32s} {'mask IoU':>9s} {'edge F1':>8s}")
for label, s in scores.items():
    print(f"{label:32s} {s['mask IoU']:9.3f} {s['edge agreement']:8.3f}")

fig, ax = plt.subplots(figsize=(8, 3.2))
labels = list(scores)
xs = np.arange(len(labels))
ax.bar(xs - 0.2, [scores[k]["mask IoU"] for k in labels], 0.4, label="mask IoU with the condition")
ax.bar(xs + 0.2, [scores[k]["edge agreement"] for k in labels], 0.4, label="edge agreement (F1, 1 px)")
ax.set_xticks(xs, [k.replace(", ", ",\n").replace(" (", "\n(") for k in labels], fontsize=8)
ax.set_ylim(0, 1), ax.set_ylabel("score (0 to 1, higher = follows the map)")
ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=2, fontsize=8)
ax.set_title(f"Adherence on {len(prompts)} held-out prompts ({SAMPLING_STEPS} DDIM steps, CFG 1.5)")
viz.save_figure(fig, "07_adherence")
if not QUICK:
    for name in CONDITIONS:
        label = f"{name} (α=1)"
        assert scores[label]["mask IoU"] > scores["no control (base)"]["mask IoU"], (label, scores)
    assert scores["mask + edges, swapped maps"]["mask IoU"] > scores["base, vs swapped maps"]["mask IoU"]

# %% [markdown]
# ## 6. Composing conditions with one slider each
#
# Give the two adapters maps of *different* objects: the mask of one record and the edges of the next.
# Each slider is that condition's $\alpha_m$; the line under the sliders reports how well the samples
# follow each map.

# %%
n_widget = min(4, len(prompts))
mixed = {"mask": maps["mask"][:n_widget], "edges": maps["edges"][swap][:n_widget]}


def compose(mask: float = 1.0, edges: float = 1.0):
    imgs = generate({"mask": mask, "edges": edges}, mixed, [""] * n_widget)  # empty prompt: the maps decide
    found = object_mask(imgs)
    iou = mask_iou(found, mixed["mask"][:, 0].numpy()).mean()
    f1 = edge_agreement(mask_edges(found), mixed["edges"][:, 0].numpy().astype(np.uint8)).mean()
    print(f"α_mask={mask:.2f}, α_edges={edges:.2f}: IoU with the mask map {iou:.3f}, edge F1 with the edge map {f1:.3f}")
    fig = sample_grid({"samples": imgs}, cell_inches=1.0)
    plt.show()
    plt.close(fig)


sliders = {name: widgets.FloatSlider(value=1.0, min=0.0, max=1.5, step=0.25, description=f"α_{name}",
                                     continuous_update=False) for name in CONDITIONS}
widgets.interactive(compose, **sliders)

# %% [markdown]
# ## 7. Cost: CSC-Tuner vs ControlNet on the same U-Net
#
# The ControlNet baseline is diffusers' own `ControlNetModel.from_unet(unet)` (a trainable copy of the
# encoder with zero convs into every skip and the mid block;
# [`swiftlite/diffusion/controlnet.py`](../swiftlite/diffusion/controlnet.py)). We train it on the mask
# maps exactly as the mask adapter (same data, loss, steps, batch; its own learning rate `CONTROLNET_LR`,
# since it fine-tunes a copy of pretrained weights) and score its samples the same way. Counted per condition:

# %%
CONTROLNET_LR = 1e-3
controlnet_loss = TextToImageLoss(pipe.scheduler, text_encoder=pipe.text_encoder, p_uncond=P_UNCOND, empty_ids=empty_ids,
                                  condition_columns=["mask"], condition_context=controlnet.conditioned)
controlnet_history = train(controlnet, train_ds, controlnet_loss, steps=STEPS, batch_size=BATCH_SIZE, lr=CONTROLNET_LR, seed=0)
controlnet_images = sample(pipe, prompts, unet=controlnet, condition=maps["mask"], condition_context=controlnet.conditioned,
                           num_inference_steps=SAMPLING_STEPS, seed=0)
scores["ControlNet (mask)"] = adherence(controlnet_images, maps)
print(f"mask IoU: CSC-Tuner {scores['mask (α=1)']['mask IoU']:.3f}, ControlNet {scores['ControlNet (mask)']['mask IoU']:.3f}, "
      f"base {scores['no control (base)']['mask IoU']:.3f}; loss in the last 10 steps: CSC "
      f"{np.mean(histories['mask'].loss[-10:]):.4f}, ControlNet {np.mean(controlnet_history.loss[-10:]):.4f}")
controlnet_params = trainable_parameter_count(controlnet)
encoder_params = sum(p.numel() for k, p in model.adapter_parameters("mask").items() if k.startswith("scecondition_"))
ratio = csc_params["mask"] / controlnet_params
print(f"ControlNet (trainable copy of the encoder): {controlnet_params:,} parameters")
print(f"CSC-Tuner per condition: {csc_params['mask']:,} = {csc_params['mask'] - encoder_params:,} in the skip tuners "
      f"+ {encoder_params:,} in the condition encoder → {100 * ratio:.1f} % of ControlNet (paper, SD-1.5: 7.9 %)")
fig, (ax, ax_iou) = plt.subplots(1, 2, figsize=(10, 2.6))
ax.barh(["ControlNet", "CSC-Tuner"], [controlnet_params, csc_params["mask"]], color=["tab:gray", "tab:blue"])
ax.set_xlabel("trainable parameters per condition (thousands)")
ax.xaxis.set_major_formatter(lambda value, pos: f"{value / 1000:g}k")
ax.set_title(f"CSC-Tuner = {100 * ratio:.1f} % of ControlNet (paper: 7.9 %)", fontsize=10)
ax_iou.barh(["base (no control)", "ControlNet (mask)", "CSC-Tuner (mask)"],
            [scores[k]["mask IoU"] for k in ("no control (base)", "ControlNet (mask)", "mask (α=1)")],
            color=["tab:olive", "tab:gray", "tab:blue"])
ax_iou.set_xlim(0, 1), ax_iou.set_xlabel("mask IoU with the condition (held-out prompts)")
ax_iou.set_title(f"after {STEPS} steps each on unet-tiny", fontsize=10)
fig.tight_layout()
viz.save_figure(fig, "07_params")
assert csc_params["mask"] < controlnet_params

# %% [markdown]
# ## 8. What differs at tiny scale

# %%
from IPython.display import Markdown, display  # noqa: E402

base_iou = scores["no control (base)"]["mask IoU"]
best = max(CONDITIONS, key=lambda n: scores[f"{n} (α=1)"]["mask IoU"])
display(Markdown(f"""
| | paper (SD-1.5, 512 px) | ours (unet-tiny, {pipe.image_size} px) |
|---|---|---|
| CSC-Tuner / ControlNet trainable parameters | 7.9 % | {100 * ratio:.1f} % |
| skip connections tuned | 12 | {len(widths)} |
| condition encoder share of the CSC-Tuner | small | {100 * encoder_params / csc_params['mask']:.0f} % |
| mask IoU, base → best adapter ({best}) | (FID / SSIM instead) | {base_iou:.2f} → {scores[f'{best} (α=1)']['mask IoU']:.2f} |
| mask IoU, CSC-Tuner vs ControlNet (mask, same steps) | comparable control | {scores['mask (α=1)']['mask IoU']:.2f} vs {scores['ControlNet (mask)']['mask IoU']:.2f} |

* The parameter ratio is {'above' if ratio > 0.079 else 'below'} the paper's: at 16 px with 16–32 channels the
  skip tuners ($2C^2 + 2C$ each) are tiny, so the condition encoder ({encoder_params:,} weights) is a large part of
  the CSC-Tuner, while ControlNet's copy of a {controlnet_params:,}-weight encoder is small too.
* Without control the object lands only loosely where the caption says (mask IoU {base_iou:.2f}); with its map
  the {best} adapter reaches {scores[f'{best} (α=1)']['mask IoU']:.2f}. Given another record's maps, the samples
  follow the map ({scores['mask + edges, swapped maps']['mask IoU']:.2f}) far more than the base does
  ({scores['base, vs swapped maps']['mask IoU']:.2f}): the condition, not the caption, decides the place.
* Edge agreement saturates (1 px tolerance on 16 px images); the paper scores controllability with
  task metrics on 512 px images, which this tiny world cannot reproduce.
* {STEPS} steps per condition on a CPU; the paper trains for days on GPUs. This run took
  {time.perf_counter() - started:.0f} s ({'quick' if QUICK else 'full'} mode).
"""))

# %% [markdown]
# ## Exercises
#
# Predict first; the cell under each exercise holds the answer as an `assert`.
#
# 1. **Zero init.** Add a fresh CSC adapter `"probe"` and give it a random map. Will the output change?

# %% jupyter={"source_hidden": true}
model.add_adapter("probe", csc_config())
model.set_active_adapters(["probe"])
with torch.no_grad(), scetuning_condition(model, probe=torch.rand(2, 1, pipe.image_size, pipe.image_size)):
    y_probe = model(x, t, encoder_hidden_states=ctx).sample
with torch.no_grad(), model.disable_adapter():
    y_off = model(x, t, encoder_hidden_states=ctx).sample
assert torch.equal(y_probe, y_off)  # the answer: no — Z_j = 0 and W_up = 0, so x_j' = x_j
model.delete_adapter("probe")
model.set_active_adapters(CONDITIONS)

# %% [markdown]
# 2. **Counting the encoder.** With `condition_dims=[8, 16, 16]` and a 1-channel map, how many weights
#    does the condition encoder have (two 3×3 convs per level, one 1×1 hint conv per skip, biases
#    included)?

# %% jupyter={"source_hidden": true}
dims, k = [8, 16, 16], 1
n_levels = max(levels.values()) + 1
cascade = sum((9 * (k if l == 0 else dims[l - 1]) * dims[l] + dims[l]) + (9 * dims[l] * dims[l] + dims[l])
              for l in range(n_levels))
hints = sum(dims[levels[n]] * widths[n] + widths[n] for n in widths)
print(f"cascade {cascade:,} + hint convs {hints:,} = {cascade + hints:,}")
assert cascade + hints == encoder_params

# %% [markdown]
# 3. **A scale of zero.** With the mask map set but $\alpha_\text{mask} = 0$ (and the edges adapter
#    switched off), are the samples those of the base model?

# %% jupyter={"source_hidden": true}
few = prompts[:2]
zero = generate({"mask": 0.0, "edges": 0.0}, {n: m[:2] for n, m in maps.items()}, few)
with model.disable_adapter():
    off = sample(pipe, few, unet=model, num_inference_steps=SAMPLING_STEPS, seed=0)
assert np.array_equal(zero, off)  # the answer: yes — every edit is α_m · (...), so α = 0 is the base

# %% [markdown]
# More to try, without a check:
#
# * Train a third adapter on the depth-like map (`condition_columns=["depth"]`) and compose all three.
# * Set `P_UNCOND = 0.0` and retrain: do the swapped-map scores drop (does the adapter lean on the caption)?
# * Run `python benchmarks/scedit_memory.py`: training memory of the SC-Tuner against LoRA on the same U-Net.
#
# ## Summary
#
# * A CSC-Tuner is an SC-Tuner whose skip edit also sees a condition hint: $x_j + \alpha(c_j + T_j(x_j + c_j))$,
#   zero at init; one adapter per condition, composed by summing their edits with one $\alpha$ each.
# * `scetuning_condition(model, {name: map})` hands the maps in (also through `sample(..., condition_context=...)`
#   and `TextToImageLoss(..., condition_context=...)`); `scetuning_scale` sets each $\alpha_m$.
# * Against diffusers' `ControlNetModel` on the same U-Net the CSC-Tuner trains a fraction of the weights.
#
# Where this lives: [`swiftlite/tuners/scetuning.py`](../swiftlite/tuners/scetuning.py),
# [`swiftlite/tuners/scetuning_condition.py`](../swiftlite/tuners/scetuning_condition.py),
# [`swiftlite/diffusion/controlnet.py`](../swiftlite/diffusion/controlnet.py),
# [`benchmarks/scedit_memory.py`](../benchmarks/scedit_memory.py).
#
# **Previous:** [`06_scedit`](06_scedit.ipynb), the SC-Tuner for text-to-image style transfer ·
# **Next:** [`08_agent_tuning`](08_agent_tuning.ipynb).
