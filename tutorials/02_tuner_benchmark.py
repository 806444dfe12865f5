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
# # 02 · Every tuner on one LLM: the SWIFT benchmark, tiny
#
# The SWIFT paper (Zhao et al., 2024, [arXiv:2408.05517](https://arxiv.org/abs/2408.05517))
# fine-tunes Qwen-7B-chat on one A100 with each tuner and reports what it costs:
#
# | tuner (Qwen-7B-chat) | trainable | memory | samples/s |
# |---|---|---|---|
# | full fine-tuning | 100 % | 73.5 GiB | 1.43 |
# | LoRA, r = 8, all linear layers | 0.23 % | 32.4 GiB | 0.95 |
# | DoRA | | 32.5 GiB | 0.51 |
# | Adapter | | 32.2 GiB | 1.48 |
# | LLaMA-Pro, 4 new blocks | 9.5 % | 38.1 GiB | 1.53 |
# | NEFTune (+ LoRA) | = LoRA | = LoRA | = LoRA |
# | LISA, 2 layers active | | 31.1 GiB | 2.66 |
#
# **Claim:** (the paper's) every parameter-efficient tuner needs less memory than full fine-tuning
# (LoRA: 32.4 of 73.5 GiB on Qwen-7B-chat), at 0.36–1.07× full fine-tuning's throughput.
#
# **Running time** on the project's 2-core CPU with one torch thread, measured 2026-11-30: full mode
# (19 configurations × 120 steps, plus exact match on 100 prompts each) **5 min 51 s** in the full
# course build (`swiftlite course build --jobs 2`: two tutorials at a time, one per core); quick
# mode (`SWIFTLITE_QUICK=1`, the zoo's quick builds cached) 16 s. Section 5 prints the time of every
# run. The committed figures come from that build.
#
# **You will learn**
# * how to run every registered tuner on one model with `compare_tuners`, and what each one costs
#   in trainable weights, memory and step time;
# * why the paper's memory savings shrink at toy scale (activations, not weights, dominate);
# * how to read a short-budget loss comparison (and why a per-method learning rate matters).
#
# Here we run the same experiment at toy scale — with every LLM tuner swiftlite registers (the
# vision tuners Res-Tuning, Res-Attn, U-Tuning and SCEdit have their own tutorials), plus LISA:
# a 1M-parameter LLaMA from `swiftlite.zoo`, pretrained on Python's standard library, is
# fine-tuned on instruction → response pairs. For each tuner we measure
#
# * the trainable share of the parameters,
# * the peak training memory and the time of one train step (`swiftlite.bench.measure`),
# * the held-out SFT loss after the same number of steps (`swiftlite.train.train`).
#
# The SFT loss scores the response only (the prompt's labels are $-100$):
#
# $$ \mathcal{L}_\text{SFT} = -\frac{1}{|R|}\sum_{t \in R} \log p_\theta(x_t \mid x_{<t}),
#    \qquad R = \text{the response tokens and the closing eos}. $$

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import peft as hf_peft  # 🤗 PEFT (the name `peft` is used below for the rows)
import torch
import transformers

import swiftlite
import swiftlite.zoo as zoo
from swiftlite import bench, viz
from swiftlite import tuners as T
from swiftlite.core import TUNERS
from swiftlite.data import instruction_pairs
from swiftlite.llm import IGNORE_INDEX, LISAConfig, SFTCollator, build_sft_dataset, compare_tuners
from swiftlite.llm.sft import exact_match
from swiftlite.settings import quick_mode

QUICK = quick_mode()  # CI smoke run: every tuner, but 3 steps each
STEPS = 3 if QUICK else 120
N_TRAIN, N_EVAL = (48, 16) if QUICK else (2000, 200)
MEASURE_STEPS, MEASURE_WARMUP, MEASURE_ROUNDS = (2, 1, 1) if QUICK else (5, 2, 3)
BATCH_SIZE = 16
torch.set_num_threads(1)  # one thread: the timings compare tuners, not how well torch uses a shared CPU
started = time.perf_counter()
print(f"swiftlite {swiftlite.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, "
      f"{'quick' if QUICK else 'full'} mode")

# %% [markdown]
# ## 1. The model and the data
#
# `zoo.load("llama-tiny")` gives a `transformers.LlamaForCausalLM` and its tokenizer (with a chat
# template). The data are computed instruction pairs (`sort the numbers`, `add`, `reverse the
# words`, ...); `build_sft_dataset` renders each prompt with the chat template, appends the
# response and `eos`, and masks the prompt's labels.

# %%
model, tokenizer = zoo.load("llama-tiny")
config = model.config
print(f"{sum(p.numel() for p in model.parameters()):,} parameters; hidden {config.hidden_size}, "
      f"{config.num_hidden_layers} layers, vocabulary {config.vocab_size}")

train_ds = build_sft_dataset(instruction_pairs(N_TRAIN, seed=0), tokenizer)
eval_pairs = instruction_pairs(N_EVAL, seed=1)  # other seed: unseen pairs
eval_ds = build_sft_dataset(eval_pairs, tokenizer)
example = train_ds[0]
prompt_len = sum(y == IGNORE_INDEX for y in example["labels"])
print(repr(tokenizer.decode(example["input_ids"][:prompt_len])), "→ masked (label -100)")
print(repr(tokenizer.decode(example["input_ids"][prompt_len:])), "→ scored")
assert example["labels"][prompt_len:] == example["input_ids"][prompt_len:]

# %% [markdown]
# ## 2. One config per tuner
#
# The target names are LLaMA's (as in the conformance table `tests/test_conformance.py`).
# Following the paper, LoRA has rank 8 on *all* linear layers of the blocks; DoRA, rsLoRA,
# LoRA+ and NEFTune are that LoRA with one option changed (NEFTune adds noise to the input
# embeddings during training and has no weights of its own, so it rides on a LoRA).
# `None` means full fine-tuning. LLaMA-Pro adds one block (the paper: 4 on Qwen's 32, 1/8 of the
# depth; here 1 on 4). Part trains a copy of the last block; Side puts a small MLP beside each
# FFN. LongLoRA is the same LoRA plus shifted sparse attention in training and trainable
# embeddings and norms; ReFT edits each layer's output in a rank-4 subspace (LoReFT). LISA is not
# a tuner but a training technique: full fine-tuning of the embeddings, the head and, for every
# period of 20 steps, one randomly drawn decoder layer (`swiftlite.llm.lisa`); it adds no weights.
# "PEFT LoRA" is 🤗 PEFT's LoRA with our LoRA's settings, a reference row for speed and quality
# (`compare_tuners` accepts a function that prepares the model itself).

# %%
H, L = config.hidden_size, config.num_hidden_layers
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def lora(**options) -> T.LoRAConfig:
    return T.LoRAConfig(r=8, lora_alpha=32, target_modules=ALL_LINEAR, **options)


CONFIGS = {
    "full FT": None,
    "LoRA": lora(),
    "DoRA": lora(use_dora=True),
    "rsLoRA": lora(use_rslora=True),
    "LoRA+": lora(lorap_lr_ratio=16.0),
    "NEFTune+LoRA": {"default": lora(), "neftune": T.NEFTuneConfig(noise_alpha=5.0)},
    "Adapter": T.AdapterConfig(dim=H, target_modules=r"model\.layers\.\d+\.mlp", adapter_length=16),
    "Prompt": T.PromptConfig(dim=H, target_modules=r"model\.layers\.\d+", prompt_length=10, extract_embedding=True),
    "Prefix": T.PrefixConfig(target_modules=r"model\.layers\.\d+\.self_attn", num_virtual_tokens=10),
    "Side": T.SideConfig(dim=H, target_modules=r"model\.layers\.\d+\.mlp", side_module_name="mlp"),
    "Part": T.PartConfig(target_modules=rf"model\.layers\.{L - 1}"),
    "IA3": T.IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"]),
    "BitFit": T.BitFitConfig(target_modules=ALL_LINEAR),  # LLaMA has no biases: BitFit adds a zero Δb
    "LN tuning": T.BitFitConfig(mode="norm"),  # the RMSNorm gains γ
    "LLaMA-Pro": T.LLaMAProConfig(num_new_blocks=1),
    "LongLoRA": T.LongLoRAConfig(r=8, lora_alpha=32, target_modules=ALL_LINEAR),  # + S²-Attn, embeddings, norms
    "ReFT": T.ReftConfig(r=4),  # LoReFT on every layer's output
    "LISA": LISAConfig(lisa_activated_layers=1, lisa_step_interval=20),  # 1 of 4 layers (paper: 2 of 32)
    "PEFT LoRA": lambda m: hf_peft.get_peft_model(m, hf_peft.LoraConfig(r=8, lora_alpha=32,
                                                                         target_modules=ALL_LINEAR)),
}

# Learning rates differ per method because the number and the role of the trained weights
# differ. Rule-of-thumb values (not tuned): full FT and the methods that train whole blocks (Part,
# LLaMA-Pro) move pretrained-size weights and get a third of the pretraining peak lr (3e-3);
# LoRA-style, Adapter and Side branches start at (or near) zero and are small, so they get 5x
# more (rsLoRA and NEFTune keep LoRA's lr: their point is what changes at the same lr).
# Tuned: the rest by the sweep described below. The schedule (cosine, no warm-up), steps, batch and
# data order are the same for all.
LR = {"full FT": 1e-3, "Part": 1e-3, "LLaMA-Pro": 1e-3, "LoRA+": 1e-3,
      "LoRA": 5e-3, "DoRA": 5e-3, "rsLoRA": 5e-3, "NEFTune+LoRA": 5e-3, "Adapter": 5e-3, "Side": 5e-3,
      "Prompt": 3e-2, "BitFit": 3e-2, "Prefix": 1e-1, "IA3": 1e-1, "LN tuning": 1e-1,
      "LongLoRA": 5e-3, "ReFT": 5e-3, "LISA": 1e-3, "PEFT LoRA": 5e-3}  # the last four: rules above, not swept

# %% [markdown]
# **The learning-rate sweep** ([`benchmarks/lr_sweep.py`](../benchmarks/lr_sweep.py)) chose the
# learning rates of LoRA+, Prompt, Prefix, IA3, BitFit and LN tuning. For each of them and each lr
# of the grid 1e-3, 3e-3, 5e-3, 1e-2, 3e-2, 1e-1 it trains a fresh `llama-tiny` for 40 steps (the
# settings of this notebook, only shorter) and scores the SFT loss on a *validation* split,
# `instruction_pairs(200, seed=2)`, not on this notebook's evaluation set (seed 1). It prints a
# tuner × lr table and the best lr per tuner, marking a best lr at the edge of the grid. Two things
# it finds (its full table is in [`benchmarks/README.md`](../benchmarks/README.md)): LoRA+
# multiplies $B$'s lr by 16, so at LoRA's 5e-3 ($B$ at 8e-2) it trains far worse than at 1e-3, the
# bottom of the grid; prompts, prefixes and scaling vectors are few weights and want 3e-2 to 1e-1,
# and for Prefix, IA3 and LN tuning 1e-1 is the top of the grid, so their best lr may be higher.
# Rerun it with `HF_HUB_OFFLINE=1 python benchmarks/lr_sweep.py` (36 short runs on one thread,
# 2 min 37 s on 2026-11-29).

# %%
covered = {c.swift_type for cfg in CONFIGS.values() if cfg is not None
           for c in (cfg.values() if isinstance(cfg, dict) else [cfg]) if hasattr(c, "swift_type")}
print("tuners in this benchmark:", sorted(covered))
print("registered tuners not in it:", sorted(t for t in TUNERS if not t.startswith("_") and t not in covered) or "none")

# %% [markdown]
# Where the paper's LoRA attaches, drawn from the model by `viz.tuner_diagram` (the config is not
# applied: the orange boxes are the modules it *would* wrap, seven linear layers in each of the
# folded decoder layers; the widths at the right are each layer's input and output).

# %%
diagram = viz.tuner_diagram(model, CONFIGS["LoRA"])

# %% [markdown]
# **One knob: LoRA's rank.** Each value of $r$ attaches LoRA to all linear layers of a copy of the
# model and counts what it trains: $A \in \mathbb{R}^{r \times d_\text{in}}$ and
# $B \in \mathbb{R}^{d_\text{out} \times r}$ per layer, so the count is linear in $r$. Predict the
# count at $r = 16$ from the one at $r = 8$ before you move the slider.

# %%
import copy  # noqa: E402

import ipywidgets as widgets  # noqa: E402

from swiftlite import Swift  # noqa: E402


def lora_size(r: int) -> str:
    tuned = Swift.prepare_model(copy.deepcopy(model), T.LoRAConfig(r=r, lora_alpha=32, target_modules=ALL_LINEAR))
    n = sum(p.numel() for p in tuned.parameters() if p.requires_grad)  # r · Σ (d_in + d_out)
    total = sum(p.numel() for p in tuned.parameters())
    return f"r = {r:3d}: LoRA trains {n:,} weights, {100 * n / total:.2f} % of the adapted model ({n // r:,} per unit of rank)"


viz.knob_widget(widgets.SelectionSlider(options=[1, 2, 4, 8, 16, 32, 64], value=8, description="rank r",
                                        continuous_update=False), lora_size)

# %% [markdown]
# ## 3. Run the benchmark
#
# `compare_tuners` takes a fresh model for every config and prepares it. It times
# `MEASURE_STEPS` AdamW train steps on one batch (weights restored afterwards) for every config
# in turn, `MEASURE_ROUNDS` rounds, and keeps the median: on a shared machine a slow minute
# then hits all tuners alike instead of the one that happened to run. Then, per config, it
# takes the held-out loss, trains `STEPS` steps and takes the held-out loss again, and (through
# `eval_fn`) the held-out **instruction accuracy**: the share of `N_EM` unseen prompts whose greedy
# response equals the gold response exactly (`swiftlite.llm.sft.exact_match`; Prompt tuning
# inserts tokens at every forward, so its generation recomputes the sequence without a cache).
# The batches are padded to a multiple of 8 tokens for every config (padding is masked): LongLoRA's
# S²-Attn needs the length to split into 4 groups.
#
# Memory on a CPU is *counted*, not read from an allocator: parameters + tensors autograd saves
# for backward + gradients + AdamW's two moments (see `swiftlite.bench`). On a GPU `measure`
# reports the CUDA allocator's peak instead.

# %%
N_EM = 16 if QUICK else 100
em_pairs = eval_pairs.select(range(N_EM))
max_answer = max(len(tokenizer(o)["input_ids"]) for o in em_pairs["output"]) + 2  # room for eos and a slip


def instruction_accuracy(model, name):
    return {"exact_match": exact_match(model, tokenizer, em_pairs, max_new_tokens=max_answer,
                                       use_cache=name != "Prompt")}


exact_match_init = exact_match(model, tokenizer, em_pairs, max_new_tokens=max_answer)  # before fine-tuning
rows = compare_tuners(lambda: zoo.load("llama-tiny")[0], CONFIGS, train_ds, eval_ds, steps=STEPS, lr=LR,
                      batch_size=BATCH_SIZE, seed=0, measure_steps=MEASURE_STEPS, measure_warmup=MEASURE_WARMUP,
                      measure_rounds=MEASURE_ROUNDS, eval_fn=instruction_accuracy,
                      collate_fn=SFTCollator(pad_token_id=tokenizer.pad_token_id, pad_to_multiple_of=8))
rows = bench.compare(rows, baseline="full FT")
for row in rows:
    row["time_ratio"] = row["step_time_s_ratio"]  # step time vs full FT (1 / throughput ratio)
    row["memory_ratio"] = row["peak_memory_bytes_ratio"]
    assert row["trainable_params"] > 0 and row["step_time_s"] > 0 and row["peak_memory_bytes"] > 0
    assert torch.isfinite(torch.tensor(row["eval_loss"])), row["name"]

# %%
from IPython.display import Markdown, display  # noqa: E402

COLUMNS = ["name", "trainable_params", "trainable_percent", "peak_memory_bytes", "memory_ratio", "step_time_s",
           "time_ratio", "throughput", "lr", "eval_loss_init", "eval_loss", "exact_match"]
display(Markdown(bench.to_markdown(rows, COLUMNS)))

# %%
fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
viz.bar_compare(rows, "trainable_percent", ax=axes[0, 0], log=True, title="trainable parameters",
                xlabel="trainable parameters (% of the model, log scale)")
viz.bar_compare(rows, "memory_ratio", ax=axes[0, 1], title="peak training memory",
                xlabel="peak training memory (× full fine-tuning)")
viz.bar_compare(rows, "time_ratio", ax=axes[1, 0], title="time of one train step",
                xlabel="train-step time (× full fine-tuning)")
viz.bar_compare(rows, "eval_loss", ax=axes[1, 1], title=f"held-out SFT loss after {STEPS} steps",
                xlabel="held-out SFT loss (nats per response token)")
base_loss = rows[0]["eval_loss_init"]
axes[1, 1].axvline(base_loss, color="crimson", linestyle=":", linewidth=1.5,
                   label=f"before fine-tuning ({base_loss:.2f})")
axes[1, 1].set_xlim(0, 1.15 * max(base_loss, *(r["eval_loss"] for r in rows)))  # from 0: not truncated
axes[1, 1].legend(frameon=False, loc="lower right", bbox_to_anchor=(1.0, 1.06), fontsize=8)  # above the bars
fig.suptitle(f"llama-tiny ({rows[0]['total_params']:,} params), {STEPS} SFT steps, batch {BATCH_SIZE}, "
             f"{rows[0]['device']}")
fig.tight_layout()
viz.save_figure(fig, "02_tuner_benchmark")

# %% [markdown]
# **Held-out quality, two ways.** The loss scores every response token under teacher forcing; the
# exact match asks the model to *write* the whole answer itself. Predict: a lower loss should go
# with a higher accuracy, but not strictly — one wrong digit fails an exact match that costs the
# loss little.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
viz.bar_compare(rows, "exact_match", ax=axes[0], title=f"held-out instruction accuracy ({N_EM} prompts)",
                xlabel="exact match (share of held-out prompts)")
axes[0].axvline(exact_match_init, color="crimson", linestyle=":", linewidth=1.5,
                label=f"before fine-tuning ({exact_match_init:.2f})")
axes[0].set_xlim(0, 1)
axes[0].legend(frameon=False, loc="lower right", bbox_to_anchor=(1.0, 1.06), fontsize=8)
axes[1].scatter([r["eval_loss"] for r in rows], [r["exact_match"] for r in rows], color="tab:blue")
for r in rows:
    axes[1].annotate(r["name"], (r["eval_loss"], r["exact_match"]), fontsize=7, xytext=(3, 2),
                     textcoords="offset points")
axes[1].set_xlabel("held-out SFT loss (nats per response token)")
axes[1].set_ylabel("exact match (share of held-out prompts)")
axes[1].set_title(f"loss vs accuracy after {STEPS} steps")
fig.tight_layout()
viz.save_figure(fig, "02_tuner_quality")
accuracies = [r["exact_match"] for r in rows]
quality_corr = (float(np.corrcoef([r["eval_loss"] for r in rows], accuracies)[0, 1]) if np.std(accuracies) > 0
                else float("nan"))  # nan: every row has the same accuracy (e.g. quick mode's 3 steps)
print(f"correlation of held-out loss and exact match over the {len(rows)} rows: {quality_corr:.2f}")

# %% [markdown]
# ## 4. Next to the paper
#
# The paper's five tuners and LISA as ratios to its own full fine-tuning (memory in GiB, time =
# 1 / samples-per-second), beside ours. NEFTune's cost is LoRA's by construction in both.

# %%
PAPER = {  # SWIFT paper, Qwen-7B-chat on an A100: (memory GiB, samples/s)
    "full FT": (73.5, 1.43), "LoRA": (32.4, 0.95), "DoRA": (32.5, 0.51), "Adapter": (32.2, 1.48),
    "LLaMA-Pro": (38.1, 1.53), "NEFTune+LoRA": (32.4, 0.95), "LISA": (31.1, 2.66),
}
ours = {r["name"]: r for r in rows}
side_by_side = [{"name": name,
                 "paper_memory_ratio": mem / PAPER["full FT"][0], "memory_ratio": ours[name]["memory_ratio"],
                 "paper_time_ratio": PAPER["full FT"][1] / sps, "time_ratio": ours[name]["time_ratio"]}
                for name, (mem, sps) in PAPER.items()]
display(Markdown(bench.to_markdown(side_by_side)))

fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
names = [r["name"] for r in side_by_side]
for ax, metric, label in zip(axes, ["memory_ratio", "time_ratio"],
                             ["peak training memory (× full fine-tuning)", "train-step time (× full fine-tuning)"]):
    viz.grouped_bars(names, {"SWIFT paper (Qwen-7B-chat, A100)": [r[f"paper_{metric}"] for r in side_by_side],
                             f"ours (llama-tiny, {rows[0]['device']})": [r[metric] for r in side_by_side]},
                     ax=ax, xlabel=label, reference=1.0, reference_label="full fine-tuning = 1")
fig.tight_layout()
viz.save_figure(fig, "02_tuner_benchmark_vs_paper")

# %% [markdown]
# The claims of the conclusion below, recomputed from this run's rows (in quick mode they are
# computed from 3 training steps, so only the cost columns mean anything):

# %%
full = ours["full FT"]
peft = [r for r in rows if r["name"] != "full FT"]
print(f"memory vs full FT: {min(r['memory_ratio'] for r in peft):.2f} .. {max(r['memory_ratio'] for r in peft):.2f}"
      f" (paper, {len(side_by_side) - 1} rows: {min(r['paper_memory_ratio'] for r in side_by_side[1:]):.2f}"
      f" .. {max(r['paper_memory_ratio'] for r in side_by_side[1:]):.2f})")
print("tuners that need MORE memory than full FT:", [r["name"] for r in peft if r["memory_ratio"] > 1] or "none")
print("tuners slower per step than full FT:", [r["name"] for r in peft if r["time_ratio"] > 1] or "none")
print(f"DoRA / LoRA step time: {ours['DoRA']['step_time_s'] / ours['LoRA']['step_time_s']:.2f}"
      f" (paper: {PAPER['LoRA'][1] / PAPER['DoRA'][1]:.2f})")
lora_vs_peft = ours["LoRA"]["step_time_s"] / ours["PEFT LoRA"]["step_time_s"]
print(f"swiftlite LoRA / PEFT LoRA step time: {lora_vs_peft:.2f}"
      f" (held-out loss {ours['LoRA']['eval_loss']:.3f} vs {ours['PEFT LoRA']['eval_loss']:.3f})")
ranking = sorted(rows, key=lambda r: r["eval_loss"])
print("held-out loss, best first:", ", ".join(f"{r['name']} {r['eval_loss']:.3f}" for r in ranking))
print(f"before fine-tuning: {full['eval_loss_init']:.3f}")
by_accuracy = sorted(rows, key=lambda r: -r["exact_match"])
print("held-out exact match, best first:", ", ".join(f"{r['name']} {r['exact_match']:.2f}" for r in by_accuracy),
      f"(before fine-tuning: {exact_match_init:.2f})")

# %% [markdown]
# ## 5. What the tiny scale shows, and what it does not
#
# The committed figures `figures/02_tuner_benchmark.png` and `figures/02_tuner_benchmark_vs_paper.png`
# come from a full-mode run (120 steps of batch 16, one CPU thread, one seed; memory counted as
# described in section 3). The paragraphs below are formatted from *this* run's rows, so a
# quick-mode run prints quick-mode numbers (and only its cost columns mean anything).

# %%
lora, dora, pro = ours["LoRA"], ours["DoRA"], ours["LLaMA-Pro"]
MiB = 2**20
by_memory = sorted(peft, key=lambda r: r["memory_ratio"])
FIVE = [n for n in PAPER if n != "NEFTune+LoRA"]  # NEFTune+LoRA = LoRA's cost by construction in both
by_speed = sorted([ours[n] for n in FIVE], key=lambda r: -r["throughput"])
paper_by_speed = sorted(FIVE, key=lambda n: -PAPER[n][1])
same_as_lora = [ours[n]["throughput"] for n in ("rsLoRA", "LoRA+", "NEFTune+LoRA")]
speed = {r["name"]: r["throughput"] for r in rows}
noise = (max(same_as_lora + [speed["LoRA"]]) - min(same_as_lora + [speed["LoRA"]])) / speed["LoRA"]
swaps = [(a, b) for i, a in enumerate(paper_by_speed) for b in paper_by_speed[i + 1:] if speed[b] > speed[a]]
within_noise = all(abs(speed[a] - speed[b]) / speed[a] <= noise for a, b in swaps)
order_verdict = ("the same order" if not swaps else
                 f"the same order except {', '.join(f'{b} before {a}' for a, b in swaps)}"
                 + (", a gap within the noise below" if within_noise else ", a gap larger than the noise below"))
vector = sorted((r for r in rows if r["trainable_percent"] < 1), key=lambda r: r["trainable_percent"])
display(Markdown(f"""
**Trainable share.** LoRA r = 8 on all linear layers trains {lora['trainable_params']:,} weights, {lora['trainable_percent']:.2f} %
of the adapted model's {lora['total_params']:,} (base: {full['total_params']:,}; paper: 0.23 %): rank 8 is 1/{H // 8} of a
{H}-wide layer but 1/512 of Qwen-7B's 4096. One LLaMA-Pro block is {pro['trainable_percent']:.1f} % (paper, 4 of
32 blocks: 9.5 %). Under 1 %: {", ".join(f"{r['name']} {r['trainable_percent']:.2f} %" for r in vector)}.

**Memory.** The tuners need {by_memory[0]['memory_ratio']:.2f}–{by_memory[-1]['memory_ratio']:.2f} of full
fine-tuning's memory (paper: {min(r['paper_memory_ratio'] for r in side_by_side[1:]):.2f}–{max(r['paper_memory_ratio'] for r in side_by_side[1:]):.2f}
for its {len(side_by_side) - 1} rows); LoRA {lora['memory_ratio']:.2f} ({lora['peak_memory_bytes'] / MiB:.1f} vs
{full['peak_memory_bytes'] / MiB:.1f} MiB; paper {PAPER['LoRA'][0] / PAPER['full FT'][0]:.2f}). Tuners above full FT:
{", ".join(f"{r['name']} {r['memory_ratio']:.2f}×" for r in peft if r['memory_ratio'] > 1) or "none"}. What full FT adds
over LoRA is gradients and two AdamW moments for all {full['total_params']:,} weights, 3 × {4 * full['total_params'] / MiB:.1f} MiB; the
activations autograd saves for a batch of {BATCH_SIZE} are paid by both. At 7B the weight-sized terms dominate, here
the activations do, so what decides memory is how much of the network keeps activations for backward. Order, least
first: {", ".join(f"{r['name']} {r['memory_ratio']:.2f}" for r in by_memory)}.

**Speed.** Samples per second, fastest first: {" > ".join(f"{r['name']} {r['throughput']:.0f}" for r in by_speed)};
the paper: {" > ".join(f"{n} {PAPER[n][1]}" for n in paper_by_speed)} —
{order_verdict}. rsLoRA, LoRA+ and
NEFTune+LoRA do LoRA's computation and span {min(same_as_lora):.1f}–{max(same_as_lora):.1f} samples/s (LoRA
{lora['throughput']:.1f}), so on this shared CPU differences of up to
{noise:.0%} are noise; full FT
runs at {full['throughput']:.1f}. DoRA costs
{dora['step_time_s'] / lora['step_time_s']:.2f}× LoRA's step time (paper: {PAPER['LoRA'][1] / PAPER['DoRA'][1]:.2f}×).
swiftlite's LoRA takes {lora_vs_peft:.2f}× the step time of 🤗 PEFT's LoRA with the same settings (measured in the
same interleaved rounds; [`benchmarks/lora_vs_peft.py`](../benchmarks/lora_vs_peft.py) measures it more carefully).

**Held-out loss after {STEPS} steps** ({full['eval_loss_init']:.2f} before fine-tuning; the paper's table has no
loss): {", ".join(f"{r['name']} {r['eval_loss']:.2f}" for r in ranking)}. This is one seed, a short schedule and
learning rates tuned only roughly (several at the edge of the sweep's grid): read it as "after the same short
budget", not as which method is better when trained to convergence.

**Held-out instruction accuracy** (exact match on {N_EM} unseen prompts; {exact_match_init:.2f} before
fine-tuning): {", ".join(f"{r['name']} {r['exact_match']:.2f}" for r in by_accuracy)}. Across the {len(rows)} rows
the correlation of loss and accuracy is {quality_corr:.2f} (negative: lower loss, more exact answers). LISA, which
trains {ours['LISA']['trainable_percent']:.0f} % of the weights at a time, reaches a loss of {ours['LISA']['eval_loss']:.2f}
and an accuracy of {ours['LISA']['exact_match']:.2f} (full FT: {full['eval_loss']:.2f}, {full['exact_match']:.2f}) at
{ours['LISA']['memory_ratio']:.2f}× full FT's memory (paper, 2 of 32 layers: {PAPER['LISA'][0] / PAPER['full FT'][0]:.2f}×).

This run took {time.perf_counter() - started:.0f} s ({'quick' if QUICK else 'full'} mode).
"""))

# %% [markdown]
# ## Exercises
#
# Predict first; the cell under each exercise (collapsed in JupyterLab: click the bar to open it)
# holds the answer as an `assert` you can run.
#
# 1. **Rank vs trainable share.** The LoRA row trains `ours["LoRA"]["trainable_params"]` weights at
#    $r = 8$. Predict the count at $r = 16$ and at $r = 1$ without running anything.

# %% jupyter={"source_hidden": true}
def lora_count(r: int) -> int:
    tuned = Swift.prepare_model(copy.deepcopy(model), T.LoRAConfig(r=r, lora_alpha=32, target_modules=ALL_LINEAR))
    return sum(p.numel() for p in tuned.parameters() if p.requires_grad)


at_8 = ours["LoRA"]["trainable_params"]
print(f"r = 8: {at_8:,}; r = 16: {lora_count(16):,}; r = 1: {lora_count(1):,}")
assert lora_count(16) == 2 * at_8 and 8 * lora_count(1) == at_8  # the answer: linear in r, r · Σ (d_in + d_out)

# %% [markdown]
# 2. **When is low rank no longer small?** At which rank does LoRA train as many weights as the
#    linear layers it adapts? Predict it from the layers' shapes ($d_\text{in} d_\text{out}$ weights
#    against $r (d_\text{in} + d_\text{out})$ per layer).

# %% jupyter={"source_hidden": true}
adapted = [m for name, m in model.named_modules() if name.rsplit(".", 1)[-1] in ALL_LINEAR]
weights = sum(m.in_features * m.out_features for m in adapted)
per_rank = sum(m.in_features + m.out_features for m in adapted)
r_equal = -(-weights // per_rank)  # the answer: ⌈Σ d_in d_out / Σ (d_in + d_out)⌉, about H / 2 here
print(f"{len(adapted)} layers, {weights:,} weights; LoRA trains {per_rank:,} per unit of rank; break-even r = {r_equal}")
assert lora_count(r_equal) >= weights > lora_count(r_equal - 1)

# %% [markdown]
# 3. **Fewest weights, least memory?** Predict whether the tuner with the fewest trainable weights
#    is also the one that needs the least training memory in this run (section 5 explains what
#    decides memory here).

# %% jupyter={"source_hidden": true}
fewest = min(peft, key=lambda r: r["trainable_params"])
print(f"fewest trainable weights: {fewest['name']} ({fewest['trainable_params']:,}, memory {fewest['memory_ratio']:.2f}× "
      f"full FT); least memory: {by_memory[0]['name']} ({by_memory[0]['memory_ratio']:.2f}×)")
# the answer: no — backward still runs through the whole network for it; memory follows where backward stops
assert fewest["name"] != by_memory[0]["name"] and fewest["memory_ratio"] > by_memory[0]["memory_ratio"]

# %% [markdown]
# More to try, without a check (each reruns part of the benchmark):
#
# * **Rank vs memory.** Rerun only LoRA with `r=64`: does its memory ratio move much?
# * **Where backward stops.** Move Part to the first block (`model\.layers\.0`) and predict its
#   memory ratio before running.
# * **A learning rate at the edge.** Run `python benchmarks/lr_sweep.py --tuners IA3 --lrs 1e-1 3e-1 1`
#   and check whether IA3's best lr is still at the top of the grid.
# * **Batch size.** With `BATCH_SIZE = 4` the activations shrink: does LoRA's memory ratio fall
#   towards the paper's?
#
# ## Summary
#
# * `compare_tuners` runs any set of configs on fresh copies of one model and reports trainable
#   share, memory, step time and held-out loss; `bench.compare` turns them into ratios.
# * At toy scale activations dominate memory, so the tuners that stop backward early save the most.
# * Losses after a short budget depend on the learning rate per method; the sweep that set them
#   is a script you can rerun.
#
# Where this lives: [`swiftlite/llm/sft.py`](../swiftlite/llm/sft.py) (`compare_tuners`, `sft_loss`),
# [`swiftlite/bench.py`](../swiftlite/bench.py), [`swiftlite/viz/charts.py`](../swiftlite/viz/charts.py),
# [`benchmarks/lr_sweep.py`](../benchmarks/lr_sweep.py).
#
# **Previous:** [`01_build_your_own_tuner`](01_build_your_own_tuner.ipynb) ·
# **Next:** [`03_u_tuning`](03_u_tuning.ipynb), one of the SWIFT family's methods in depth.
