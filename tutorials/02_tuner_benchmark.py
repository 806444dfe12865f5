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
#
# Here we run the same experiment at toy scale — and with *every* tuner swiftlite registers:
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
import os

import matplotlib.pyplot as plt
import torch

import swiftlite.zoo as zoo
from swiftlite import bench, viz
from swiftlite import tuners as T
from swiftlite.core import TUNERS
from swiftlite.data import instruction_pairs
from swiftlite.llm import IGNORE_INDEX, SFTCollator, build_sft_dataset, compare_tuners

QUICK = os.environ.get("SWIFTLITE_QUICK") == "1"  # CI smoke run: every tuner, but 3 steps each
STEPS = 3 if QUICK else 120
N_TRAIN, N_EVAL = (48, 16) if QUICK else (2000, 200)
MEASURE_STEPS, MEASURE_WARMUP = (2, 1) if QUICK else (10, 3)
BATCH_SIZE = 16
torch.set_num_threads(1)  # one thread: the timings compare tuners, not how well torch uses a shared CPU

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
eval_ds = build_sft_dataset(instruction_pairs(N_EVAL, seed=1), tokenizer)  # other seed: unseen pairs
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
# FFN.

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
}

# Learning rates differ per method because the number and the role of the trained weights
# differ: full FT and the methods that train whole blocks (Part, LLaMA-Pro) move pretrained-size
# weights and use a third of the pretraining peak lr (3e-3); LoRA-style, Adapter and Side
# branches start at (or near) zero and are small, so they take a 5x larger lr (rsLoRA, LoRA+ and
# NEFTune keep LoRA's lr: their point is what changes at the same lr); prompts, prefixes and
# scaling vectors (IA3, BitFit, LN) are few and need the largest steps. The schedule (cosine, no
# warm-up), steps, batch and data order are the same for all.
LR = {"full FT": 1e-3, "Part": 1e-3, "LLaMA-Pro": 1e-3,
      "LoRA": 5e-3, "DoRA": 5e-3, "rsLoRA": 5e-3, "LoRA+": 5e-3, "NEFTune+LoRA": 5e-3, "Adapter": 5e-3, "Side": 5e-3,
      "Prompt": 1e-2, "Prefix": 1e-2, "IA3": 1e-2, "BitFit": 1e-2, "LN tuning": 1e-2}

covered = {c.swift_type for cfg in CONFIGS.values() if cfg is not None
           for c in (cfg.values() if isinstance(cfg, dict) else [cfg])}
print("tuners in this benchmark:", sorted(covered))
print("registered tuners not in it:", sorted(t for t in TUNERS if not t.startswith("_") and t not in covered) or "none")

# %% [markdown]
# ## 3. Run the benchmark
#
# `compare_tuners` takes a fresh model for every config, prepares it, measures
# `MEASURE_STEPS` AdamW train steps on one batch (weights restored afterwards), takes the
# held-out loss, trains `STEPS` steps and takes the held-out loss again.
#
# Memory on a CPU is *counted*, not read from an allocator: parameters + tensors autograd saves
# for backward + gradients + AdamW's two moments (see `swiftlite.bench`). On a GPU `measure`
# reports the CUDA allocator's peak instead.

# %%
rows = compare_tuners(lambda: zoo.load("llama-tiny")[0], CONFIGS, train_ds, eval_ds, steps=STEPS, lr=LR,
                      batch_size=BATCH_SIZE, seed=0, measure_steps=MEASURE_STEPS, measure_warmup=MEASURE_WARMUP,
                      collate_fn=SFTCollator(pad_token_id=tokenizer.pad_token_id))
rows = bench.compare(rows, baseline="full FT")
for row in rows:
    row["time_ratio"] = row["step_time_s_ratio"]  # step time vs full FT (1 / throughput ratio)
    row["memory_ratio"] = row["peak_memory_bytes_ratio"]
    assert row["trainable_params"] > 0 and row["step_time_s"] > 0 and row["peak_memory_bytes"] > 0
    assert torch.isfinite(torch.tensor(row["eval_loss"])), row["name"]

# %%
from IPython.display import Markdown, display  # noqa: E402

COLUMNS = ["name", "trainable_params", "trainable_percent", "peak_memory_bytes", "memory_ratio", "step_time_s",
           "time_ratio", "throughput", "lr", "eval_loss_init", "eval_loss"]
display(Markdown(bench.to_markdown(rows, COLUMNS)))

# %%
fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
viz.bar_compare(rows, "trainable_percent", ax=axes[0, 0], title="trainable parameters (%)")
viz.bar_compare(rows, "memory_ratio", ax=axes[0, 1], title="peak training memory / full FT")
viz.bar_compare(rows, "time_ratio", ax=axes[1, 0], title="train-step time / full FT")
viz.bar_compare(rows, "eval_loss", ax=axes[1, 1], title=f"held-out SFT loss after {STEPS} steps")
base_loss = rows[0]["eval_loss_init"]
axes[1, 1].axvline(base_loss, color="crimson", linestyle=":", linewidth=1)  # the model before fine-tuning
axes[1, 1].set_xlim(0.9 * min(r["eval_loss"] for r in rows), 1.05 * max(base_loss, *(r["eval_loss"] for r in rows)))
fig.suptitle(f"llama-tiny ({rows[0]['total_params']:,} params), {STEPS} SFT steps, batch {BATCH_SIZE}, "
             f"{rows[0]['device']}")
fig.tight_layout()
viz.save_figure(fig, "02_tuner_benchmark")

# %% [markdown]
# ## 4. Next to the paper
#
# The paper's five tuners as ratios to its own full fine-tuning (memory in GiB, time =
# 1 / samples-per-second), beside ours. NEFTune's cost is LoRA's by construction in both.

# %%
PAPER = {  # SWIFT paper, Qwen-7B-chat on an A100: (memory GiB, samples/s)
    "full FT": (73.5, 1.43), "LoRA": (32.4, 0.95), "DoRA": (32.5, 0.51), "Adapter": (32.2, 1.48),
    "LLaMA-Pro": (38.1, 1.53), "NEFTune+LoRA": (32.4, 0.95),
}
ours = {r["name"]: r for r in rows}
side_by_side = [{"name": name,
                 "paper_memory_ratio": mem / PAPER["full FT"][0], "memory_ratio": ours[name]["memory_ratio"],
                 "paper_time_ratio": PAPER["full FT"][1] / sps, "time_ratio": ours[name]["time_ratio"]}
                for name, (mem, sps) in PAPER.items()]
display(Markdown(bench.to_markdown(side_by_side)))

fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
for ax, metric in zip(axes, ["memory_ratio", "time_ratio"]):
    paired = [{"name": f"{r['name']} · {who}", metric: r[key]} for r in side_by_side
              for who, key in (("paper", f"paper_{metric}"), ("ours", metric))]
    viz.bar_compare(paired, metric, ax=ax, title=f"{metric.replace('_', ' ')} vs full FT: paper / ours")
fig.tight_layout()
viz.save_figure(fig, "02_tuner_benchmark_vs_paper")

# %% [markdown]
# The claims of the conclusion below, recomputed from this run's rows (in quick mode they are
# computed from 3 training steps, so only the cost columns mean anything):

# %%
full = ours["full FT"]
peft = [r for r in rows if r["name"] != "full FT"]
print(f"memory vs full FT: {min(r['memory_ratio'] for r in peft):.2f} .. {max(r['memory_ratio'] for r in peft):.2f}"
      f" (paper, 5 tuners: {min(r['paper_memory_ratio'] for r in side_by_side[1:]):.2f}"
      f" .. {max(r['paper_memory_ratio'] for r in side_by_side[1:]):.2f})")
print("tuners that need MORE memory than full FT:", [r["name"] for r in peft if r["memory_ratio"] > 1] or "none")
print("tuners slower per step than full FT:", [r["name"] for r in peft if r["time_ratio"] > 1] or "none")
print(f"DoRA / LoRA step time: {ours['DoRA']['step_time_s'] / ours['LoRA']['step_time_s']:.2f}"
      f" (paper: {PAPER['LoRA'][1] / PAPER['DoRA'][1]:.2f})")
ranking = sorted(rows, key=lambda r: r["eval_loss"])
print("held-out loss, best first:", ", ".join(f"{r['name']} {r['eval_loss']:.3f}" for r in ranking))
print(f"before fine-tuning: {full['eval_loss_init']:.3f}")

# %% [markdown]
# ## 5. What the tiny scale shows, and what it does not
#
# Numbers from the full-mode run (`figures/02_tuner_benchmark.png`, 120 steps, one CPU thread):
#
# RESULTS_PLACEHOLDER
