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
# # 05 · Res-Attn: a low-rank attention branch against LoRA and Adapter at equal budget
#
# Res-Attn ([arXiv:2312.16916](https://arxiv.org/abs/2312.16916)), inside the Res-Tuning framework
# (Jiang et al., NeurIPS 2023, [arXiv:2310.19859](https://arxiv.org/abs/2310.19859)), puts a whole
# multi-head attention — with low-rank Q, K, V and output projections — *beside* a frozen operation
# as its Res-Tuner. The paper describes the method only in outline and gives no number we could
# reproduce (see `shared/PAPERS.md`), so this tutorial tests a claim of our own making.
#
# **Claim:** at an equal budget of trainable weights, a Res-Attn branch beside each attention module
# adapts a ViT about as well as LoRA on its query/value projections or a bottleneck Adapter after
# its FFN (the paper: Res-Attn is a competitive Res-Tuner, no headline figure; here we measure the
# accuracy gap on 3 tasks × 3 seeds at two budgets).
#
# **Running time** on the project's 2-core CPU with one torch thread, measured 2026-11-30: full mode
# (3 tasks × 3 seeds × 7 runs, 80 steps each) **3 min 25 s** in the full course build (`swiftlite
# course build --jobs 2`: two tutorials at a time, one per core); quick mode (`SWIFTLITE_QUICK=1`,
# the zoo's quick builds cached) 9 s. The last section prints this run's time. The committed figures
# come from that build.
#
# **You will learn**
# * the Res-Attn equation with its shapes and zero-initialised output, and its parameter count;
# * how to match parameter budgets across tuners of different shapes (and show the counts);
# * how Res-Attn compares with LoRA and Adapter on the tiny VTAB tasks, with seeds for the noise.

# %%
import time

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import transformers
from IPython.display import Markdown, display

import swiftlite
from swiftlite import Swift, viz, vision
from swiftlite import tuners as T
from swiftlite.settings import quick_mode

QUICK = quick_mode()  # CI smoke run: 1 task, 1 seed, 3 steps, one budget
TASKS = ["style", "shape-in-style", "digits"][: 1 if QUICK else 3]
SEEDS = [0] if QUICK else [0, 1, 2]
STEPS = 3 if QUICK else 80
SHOTS = 10  # training images per class (few-shot)
RANKS = [4] if QUICK else [2, 8]  # Res-Attn ranks; each sets one budget
torch.set_num_threads(1)
started = time.perf_counter()
print(f"swiftlite {swiftlite.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, "
      f"{'quick' if QUICK else 'full'} mode")

# %% [markdown]
# ## 1. The equation
#
# Beside a frozen operation $\mathrm{OP}$ (here: each block's multi-head attention),
#
# $$ x' = \mathrm{OP}(x) + \mathrm{ResAttn}(x), \qquad
#    \mathrm{ResAttn}(x) = \operatorname{concat}_h\!\Big(\operatorname{softmax}\big(Q_h K_h^\top/\sqrt{r/h}\big)\,V_h\Big)\,A_o, $$
#
# $$ Q = xA_q,\; K = xA_k,\; V = xA_v, \qquad A_q, A_k, A_v \in \mathbb{R}^{d\times r},\; A_o \in \mathbb{R}^{r\times d},\; A_o = 0 \text{ at init}. $$
#
# $x \in \mathbb{R}^{B\times N\times d}$; the $h$ heads are $r/h$ wide, all inside the rank-$r$ space.
# Parameters per attended operation: $3dr + rd = 4dr$ (no biases). In
# [`swiftlite/tuners/resattn.py`](../swiftlite/tuners/resattn.py):
#
# ```python
# q, k, v = (rearrange(proj(h), "b t (n e) -> b n t e", n=self.num_heads) for proj in (self.q, self.k, self.v))  # Q, K, V = x·A_{q,k,v}
# nn.init.zeros_(self.o.weight)  # A_o = 0: ResAttn(x) = 0 at init
# ```
#
# LoRA on $W_q, W_v$ adds $2\cdot r(d + d) = 4dr$ per block too, so **LoRA rank r and Res-Attn
# rank r have exactly the same budget** on a ViT; an Adapter $W_2\,\mathrm{GELU}(W_1 x)$ after the FFN
# has $2dm + m + d$, so we pick the width $m$ whose count is nearest.

# %%
base = vision.load_backbone("vit-tiny", ["a", "b", "c"])
H, L = base.config.hidden_size, base.config.num_hidden_layers


def res_attn(r: int):
    return T.ResAttnConfig(target_modules=r"vit\.layers\.\d+\.attention", r=r, num_heads=2)


def lora(r: int):
    return T.LoRAConfig(r=r, target_modules=["q_proj", "v_proj"])


def adapter(m: int):
    return T.AdapterConfig(dim=H, target_modules=r"vit\.layers\.\d+\.mlp", adapter_length=m)


model = Swift.prepare_model(vision.load_backbone("vit-tiny", ["a", "b", "c"]), res_attn(4))
viz.tuner_diagram(model)
plt.show()
n_res_attn = vision.tuner_parameter_count(res_attn(4), base)
print(f"Res-Attn r = 4 on {L} attention modules: {n_res_attn:,} weights = {L} × 4 × d × r = {L * 4 * H * 4:,}")
assert n_res_attn == L * 4 * H * 4

# %% [markdown]
# At injection the model is unchanged ($A_o = 0$): *predict* the largest logit difference, then check.

# %%
pixels = torch.rand(4, 3, base.config.image_size, base.config.image_size) * 2 - 1  # (B, 3, H, W) in [-1, 1]
with torch.no_grad():
    tuned = model(pixel_values=pixels).logits
    with model.disable_adapter():  # the same model without its Res-Attn branches
        plain = model(pixel_values=pixels).logits
change = (tuned - plain).abs().max().item()
print(f"largest logit change at injection: {change}")
assert change == 0.0

# %% [markdown]
# ## 2. Equal budgets
#
# For each Res-Attn rank, the LoRA rank and the Adapter width whose trainable weights (head not
# counted) are nearest. `vision.match_budget` counts them on the real model.

# %%
BUDGETS = []
for r in RANKS:
    budget = vision.tuner_parameter_count(res_attn(r), base)
    r_lora, n_lora = vision.match_budget(lora, range(1, 4 * r + 1), budget, base)
    m, n_adapter = vision.match_budget(adapter, range(1, 4 * r + 3), budget, base)
    BUDGETS.append({"Res-Attn": (r, budget), "LoRA": (r_lora, n_lora), "Adapter": (m, n_adapter)})
    print(f"budget {budget:6,d}: Res-Attn r = {r} ({budget:,}), LoRA r = {r_lora} ({n_lora:,}), "
          f"Adapter m = {m} ({n_adapter:,}, {n_adapter / budget - 1:+.1%})")
    assert n_lora == budget and abs(n_adapter / budget - 1) < 0.15

# %% [markdown]
# ## 3. The comparison
#
# Every run trains the tuner and the new head for `STEPS` AdamW steps (batch 32, lr 1e-2 for all
# three, cosine schedule) on 10 training images per class (`SHOTS`); the linear probe (head only) is
# the floor. *Predict:* does the attention branch, which mixes information across tokens, do better
# than LoRA's per-token update on tasks about the whole image (style, shape under a domain shift)?

# %%
CONFIGS = {"linear probe": vision.LINEAR_PROBE}
for b in BUDGETS:
    CONFIGS[f"Res-Attn r={b['Res-Attn'][0]}"] = res_attn(b["Res-Attn"][0])
    CONFIGS[f"LoRA r={b['LoRA'][0]}"] = lora(b["LoRA"][0])
    CONFIGS[f"Adapter m={b['Adapter'][0]}"] = adapter(b["Adapter"][0])
rows = vision.run_suite(CONFIGS, TASKS, SEEDS, STEPS, lr=1e-2, shots=SHOTS)
summary = vision.summarize(rows)
ours = {r["name"]: r for r in summary}
display(vision.ResultsTable(summary))
assert all(r["accuracy_mean"] >= 0 for r in summary) and len(summary) == 1 + 3 * len(BUDGETS)

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
for k, (method, marker) in enumerate([("Res-Attn", "o"), ("LoRA", "s"), ("Adapter", "D")]):
    points = [ours[f"{method} {'m' if method == 'Adapter' else 'r'}={b[method][0]}"] for b in BUDGETS]
    left.errorbar([i + 0.12 * (k - 1) for i in range(len(BUDGETS))],  # side by side within each budget
                  [100 * p["accuracy_mean"] for p in points], yerr=[100 * p["accuracy_std"] for p in points],
                  marker=marker, linestyle="", capsize=3, label=method)
left.axhline(100 * ours["linear probe"]["accuracy_mean"], color="gray", linestyle="--", label="linear probe (head only)")
left.set_xticks(range(len(BUDGETS)), labels=[f"{b['Res-Attn'][1]:,} weights\n(Res-Attn r = {b['Res-Attn'][0]})"
                                             for b in BUDGETS])
left.set_xlim(-0.5, len(BUDGETS) - 0.5)
left.set_xlabel("parameter budget of the tuner (head not counted)")
left.set_ylabel(f"accuracy, mean over {len(TASKS)} tasks (%)\n(error bar: std over {len(SEEDS)} seeds)")
left.legend(frameon=False, fontsize=8)
left.set_title("equal budgets: Res-Attn vs LoRA vs Adapter")
vision.learning_curves([r for r in rows if r["task"] == TASKS[0] and r["name"] != "linear probe"], ax=right,
                       title=f"{TASKS[0]}: training loss (mean over seeds)")
fig.tight_layout()
viz.save_figure(fig, "05_res_attn_budget")
plt.show()

# %% [markdown]
# ## 4. Turn one knob: the rank
#
# Move the Res-Attn rank; the widget recomputes the matching LoRA rank and Adapter width on the real
# model and prints the three counts (the line changes with every rank).

# %%
def budget_line(r: int) -> str:
    n = vision.tuner_parameter_count(res_attn(r), base)
    m, n_adapter = vision.match_budget(adapter, range(max(1, 2 * r - 2), 2 * r + 3), n, base)
    return (f"Res-Attn r = {r}: {n:,} weights ({100 * n / sum(p.numel() for p in base.parameters()):.2f} % of the "
            f"backbone) = LoRA r = {r} on q_proj, v_proj ({vision.tuner_parameter_count(lora(r), base):,}); "
            f"nearest Adapter m = {m} ({n_adapter:,})")


rank_widget = viz.knob_widget(widgets.SelectionSlider(options=[1, 2, 4, 8, 16, 32], value=4, description="rank r"),
                              budget_line)
rank_widget

# %% [markdown]
# ## 5. What the tiny scale shows

# %%
gaps = []
for b in BUDGETS:
    ra = ours[f"Res-Attn r={b['Res-Attn'][0]}"]
    lo = ours[f"LoRA r={b['LoRA'][0]}"]
    ad = ours[f"Adapter m={b['Adapter'][0]}"]
    noise = max(ra["accuracy_std"], lo["accuracy_std"], ad["accuracy_std"])
    best = max((ra, lo, ad), key=lambda r: r["accuracy_mean"])
    gaps.append(f"budget {b['Res-Attn'][1]:,}: Res-Attn {vision.format_mean_std(ra['accuracy_mean'], ra['accuracy_std'])} %, "
                f"LoRA {vision.format_mean_std(lo['accuracy_mean'], lo['accuracy_std'])} %, Adapter "
                f"{vision.format_mean_std(ad['accuracy_mean'], ad['accuracy_std'])} %; best {best['name']}, "
                f"Res-Attn − LoRA = {100 * (ra['accuracy_mean'] - lo['accuracy_mean']):+.1f} points "
                f"({'within' if abs(ra['accuracy_mean'] - lo['accuracy_mean']) <= 2 * noise else 'beyond'} twice the "
                f"largest seed std, {100 * noise:.1f})")
ra_time = np.median([ours[f"Res-Attn r={b['Res-Attn'][0]}"]["step_time_s"] for b in BUDGETS])
lo_time = np.median([ours[f"LoRA r={b['LoRA'][0]}"]["step_time_s"] for b in BUDGETS])
display(Markdown("\n".join(f"* {g}" for g in gaps) + f"""
* Linear probe: {100 * ours['linear probe']['accuracy_mean']:.1f} %. Step time, Res-Attn / LoRA:
  {ra_time / lo_time:.2f}× ({'the branch computes a second attention map per block' if ra_time > 1.1 * lo_time else
  'no difference beyond the timing noise of a shared CPU (one measured step batch per method)'}).

This run took {time.perf_counter() - started:.0f} s ({'quick' if QUICK else 'full'} mode).
"""))

# %% [markdown]
# ## Exercises
#
# 1. **Count by hand.** How many weights does Res-Attn with r = 8 add beside the attention modules
#    of this ViT (full mode: 4 blocks, d = 64)?

# %% jupyter={"source_hidden": true}
answer = L * (3 * H * 8 + 8 * H)  # the answer: L × (3·d·r + r·d) = 8,192 for L = 4, d = 64
assert vision.tuner_parameter_count(res_attn(8), base) == answer
print(answer)

# %% [markdown]
# 2. **Which weight gets a gradient first?** At init $A_o = 0$. Predict which of $A_q, A_k, A_v, A_o$
#    receive a non-zero gradient in the very first backward pass.

# %% jupyter={"source_hidden": true}
m = vision.prepare(vision.load_backbone("vit-tiny", ["a", "b", "c"]), res_attn(4))
batch = vision.load_task("size", SHOTS, 0, base.config.image_size)["train"].with_format("torch")[:8]
vision.classification_loss(m, batch).backward()
grads = {n.split(".")[-2]: p.grad.abs().sum().item() for n, p in m.named_parameters()
         if "resattn" in n and ".layers.0." in n}
print(grads)
assert grads["o"] > 0 and grads["q"] == grads["k"] == grads["v"] == 0  # the answer: only A_o (its input is not zero; A_o's output is)

# %% [markdown]
# 3. **The matching LoRA rank.** Which LoRA rank on `q_proj`, `v_proj` has the budget of Res-Attn
#    r = 16? (Use the counts of section 1, no code needed; the check counts on the model.)

# %% jupyter={"source_hidden": true}
assert vision.match_budget(lora, range(1, 33), vision.tuner_parameter_count(res_attn(16), base), base)[0] == 16

# %% [markdown]
# ## Summary
#
# * Res-Attn is a low-rank multi-head attention beside a frozen operation; $A_o = 0$ keeps the
#   model unchanged at init, and it costs $4dr$ weights per operation — LoRA's cost on $W_q, W_v$.
# * `vision.match_budget` picks sizes of other tuners for an equal budget, counted on the real model.
# * Section 5 reports, from the run, how Res-Attn compares with LoRA and Adapter at each budget and
#   whether the gap exceeds the seed noise.
#
# Where this lives: [`swiftlite/tuners/resattn.py`](../swiftlite/tuners/resattn.py),
# [`swiftlite/tuners/utuning.py`](../swiftlite/tuners/utuning.py) (`tuner="res_attn"`),
# [`swiftlite/vision/harness.py`](../swiftlite/vision/harness.py).
#
# **Previous:** [`04_res_tuning`](04_res_tuning.ipynb) · **Next:** [`06_scedit`](06_scedit.ipynb)
