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
# compares what each tuner costs when it fine-tunes one LLM. The numbers below are ms-swift's own
# benchmark of that comparison, as published in its documentation (`docs/source_en/LLM/Benchmark.md`,
# section "Tuners", in the ms-swift 2.x releases); we checked them there, not against the paper's
# table. Its setting: Qwen-7B-Chat on one A100, 2 epochs at lr 5e-5 on the `ms-agent` dataset mixed
# with twice as much `ms-bench` data (about 87 500 samples), gradient checkpointing and flash
# attention on, maximum length 2048 (the page's default):
#
# | tuner (Qwen-7B-Chat) | trainable | memory | samples/s |
# |---|---|---|---|
# | full fine-tuning | 100 % | 73.53 GiB | 1.43 |
# | LoRA, r = 8, all linear layers | 0.23 % | 32.35 GiB | 0.95 |
# | DoRA (that LoRA, `use_dora`) | 0.25 % | 32.46 GiB | 0.51 |
# | Adapter | 0.43 % | 32.19 GiB | 1.48 |
# | LLaMA-Pro, 4 new blocks | 9.49 % | 38.11 GiB | 1.53 |
# | NEFTune (noise α = 15) + LoRA | 0.23 % | 32.35 GiB | 0.96 |
# | LISA, 2 layers active | not given | 31.11 GiB | 2.66 |
#
# **Claim:** (ms-swift's tuner benchmark above, Qwen-7B-Chat on an A100) every parameter-efficient
# tuner needs less memory than full fine-tuning (LoRA: 32.35 of 73.53 GiB); their throughput ranges
# from about a third of full fine-tuning's (DoRA) to nearly twice it (LISA) — section 5 computes
# these ratios.
#
# **Running time** measured 2026-12-05 with one torch thread on the project's 2-core CPU, beside one
# other full-mode notebook on the other core: full mode (19 configurations × 120 steps at seed 0, the
# benchmark's 7 rows again at seeds 1 and 2, exact match on 100 prompts each) **10 min 25 s**; quick
# mode (`SWIFTLITE_QUICK=1`, the zoo's quick builds cached) 36 s in the
# notebook test. Section 6 prints the time of this run. The committed figures come from that full run.
#
# **You will learn**
# * what each tuner changes in the forward pass, and the Adapter written from scratch and checked
#   against the package;
# * how to run every registered tuner on one model with `compare_tuners`, and what each one costs
#   in trainable weights, memory and step time;
# * why the memory savings measured on a 7B model shrink at toy scale (activations, not weights, dominate);
# * how to read a short-budget quality comparison over seeds (and why a per-method learning rate
#   matters).
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
from swiftlite import Swift, bench, viz
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
# Following ms-swift's benchmark, LoRA has rank 8 on *all* linear layers of the blocks; DoRA, rsLoRA,
# LoRA+ and NEFTune are that LoRA with one option changed (NEFTune adds noise to the input
# embeddings during training and has no weights of its own, so it rides on a LoRA; ms-swift's
# benchmark used noise α = 15, we use NEFTune's default 5).
# `None` means full fine-tuning. LLaMA-Pro adds one block (ms-swift's benchmark: 4 on Qwen-7B's 32,
# 1/8 of the depth; here 1 on 4). Part trains a copy of the last block; Side puts a small MLP beside each
# FFN. LongLoRA is the same LoRA plus shifted sparse attention in training and trainable
# embeddings and norms; ReFT edits each layer's output in a rank-4 subspace (LoReFT). LISA is not
# a tuner but a training technique: full fine-tuning of the embeddings, the head and, for every
# period of 20 steps, one randomly drawn decoder layer (`swiftlite.llm.lisa`); it adds no weights.
# "PEFT LoRA" is 🤗 PEFT's LoRA with our LoRA's settings, a reference row for speed and quality
# (`compare_tuners` accepts a function that prepares the model itself).
#
# What each row changes in the forward pass ($x$: a layer's input, $h$: its output; $W_0$ frozen):
#
# | row | what it changes in the forward pass |
# |---|---|
# | full FT | nothing: every weight $W$ trains |
# | LoRA | each linear layer: $h = W_0 x + \frac{\alpha}{r} B A x$ |
# | DoRA | $h = m \odot \frac{(W_0 + sBA)\,x}{\lVert W_0 + sBA \rVert_c}$, a trained magnitude $m$ per output |
# | rsLoRA | LoRA with $s = \alpha / \sqrt{r}$ instead of $\alpha / r$ |
# | LoRA+ | LoRA's forward; only the optimiser differs ($B$'s lr × 16) |
# | NEFTune+LoRA | LoRA, plus noise on the input embeddings in training: $X \leftarrow X + \frac{\alpha}{\sqrt{Ld}}\,\varepsilon$, $\varepsilon \sim U(-1, 1)$ |
# | Adapter | after each MLP: $h = y + W_2\,\mathrm{gelu}(W_1 y + b_1) + b_2$, $y = \mathrm{MLP}(x)$ |
# | Prompt | $p$ learned tokens join every layer's input sequence: $L_i([P_i; X])$ |
# | Prefix | each attention also attends to $p$ learned keys/values: $\mathrm{softmax}(Q [K_p; K]^\top/\sqrt d)\,[V_p; V]$ |
# | Side | each MLP: $h = \sigma(a)\,\mathrm{MLP}(x) + (1 - \sigma(a))\,S(x)$, $S$ a small trained MLP |
# | Part | the last block is replaced by a trained copy of itself |
# | IA3 | $k = l_k \odot W_k x$, $v = l_v \odot W_v x$, $h = W_\text{down}(l_\text{ff} \odot x)$ |
# | BitFit | each linear layer: $h = W_0 x + b$, $b$ trained (starts at 0: LLaMA has no biases) |
# | LN tuning | the RMSNorm gains $\gamma$ train: $h = \gamma \odot x / \mathrm{rms}(x)$ |
# | LLaMA-Pro | a new block (a copy with $W_o = W_\text{down} = 0$, so identity at init) is inserted and trains |
# | LongLoRA | LoRA, plus shifted group attention in training; embeddings and norms train |
# | ReFT | each layer's output: $h \leftarrow h + R^\top(W h + b - R h)$, $R$ with orthonormal rows |
# | LISA | nothing: embeddings, head and one randomly drawn layer per 20 steps train |
# | PEFT LoRA | LoRA, 🤗 PEFT's code |

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
    "LISA": LISAConfig(lisa_activated_layers=1, lisa_step_interval=20),  # 1 of 4 layers (ms-swift: 2 of 32)
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
# Where the benchmark's LoRA attaches, drawn from the model by `viz.tuner_diagram` (the config is not
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



def lora_size(r: int) -> str:
    tuned = Swift.prepare_model(copy.deepcopy(model), T.LoRAConfig(r=r, lora_alpha=32, target_modules=ALL_LINEAR))
    n = sum(p.numel() for p in tuned.parameters() if p.requires_grad)  # r · Σ (d_in + d_out)
    total = sum(p.numel() for p in tuned.parameters())
    return f"r = {r:3d}: LoRA trains {n:,} weights, {100 * n / total:.2f} % of the adapted model ({n // r:,} per unit of rank)"


viz.knob_widget(widgets.SelectionSlider(options=[1, 2, 4, 8, 16, 32, 64], value=8, description="rank r",
                                        continuous_update=False), lora_size)

# %% [markdown]
# ## 3. One method from scratch: the Adapter
#
# Each row of the table above is a few lines of PyTorch. Here is the Adapter (Houlsby et al., 2019,
# [arXiv:1902.00751](https://arxiv.org/abs/1902.00751)) in plain PyTorch: after the frozen MLP of
# each decoder layer, a bottleneck $d \to m \to d$ with a GELU, added to the MLP's output; $W_2$
# and $b_2$ start at 0, so the model starts unchanged.

# %%
class ScratchAdapter(torch.nn.Module):
    def __init__(self, mlp: torch.nn.Module, dim: int, m: int):
        super().__init__()
        self.mlp = mlp.requires_grad_(False)  # frozen
        self.W1 = torch.nn.Linear(dim, m)  # d -> m
        self.W2 = torch.nn.Linear(m, dim)  # m -> d
        torch.nn.init.zeros_(self.W2.weight), torch.nn.init.zeros_(self.W2.bias)  # identity at init

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, T, d)
        y = self.mlp(x)  # (B, T, d)
        # h = y + W_2 · gelu(W_1 · y + b_1) + b_2
        return y + self.W2(torch.nn.functional.gelu(self.W1(y)))  # (B, T, d)

# %% [markdown]
# The check on the real `llama-tiny`: the package's Adapter (the config of the benchmark's
# "Adapter" row) gets a random $W_2$, the from-scratch adapters get the same weights, and the
# logits of the two models on a batch of held-out examples must agree.

# %%
m_len = CONFIGS["Adapter"].adapter_length
package = Swift.prepare_model(zoo.load("llama-tiny", progress=False)[0], CONFIGS["Adapter"])
scratch = zoo.load("llama-tiny", progress=False)[0].requires_grad_(False)
for layer in scratch.model.layers:
    layer.mlp = ScratchAdapter(layer.mlp, H, m_len)
theirs = [m for name, m in package.named_modules() if name.endswith("adapter_default")]  # ms-swift's names
mine = [m for m in scratch.modules() if isinstance(m, ScratchAdapter)]
assert len(theirs) == len(mine) == L
with torch.no_grad():
    for a, t in zip(mine, theirs):
        t.linear2.weight.normal_(0, 0.05)  # non-zero: the adapter changes the output
        a.W1.load_state_dict(t.linear1.state_dict()), a.W2.load_state_dict(t.linear2.state_dict())
    batch = SFTCollator(pad_token_id=tokenizer.pad_token_id)([eval_ds[i] for i in range(8)])
    scratch_logits = scratch(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    package_logits = package(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    base_logits = zoo.load("llama-tiny", progress=False)[0](input_ids=batch["input_ids"],
                                                           attention_mask=batch["attention_mask"]).logits
torch.testing.assert_close(scratch_logits, package_logits)
assert not torch.allclose(package_logits, base_logits, atol=1e-3)  # the check is not vacuous
n_mine = sum(p.numel() for p in scratch.parameters() if p.requires_grad)
assert n_mine == sum(p.numel() for p in package.parameters() if p.requires_grad)
print(f"from scratch == swiftlite's Adapter on {L} layers of llama-tiny "
      f"(max |Δ logits| {(scratch_logits - package_logits).abs().max():.1e}); {n_mine:,} trainable weights each")

# %% [markdown]
# Its data flow on one decoder layer, drawn with the real module's sizes: the MLP's output takes
# two paths, straight on (the residual) and through the trainable bottleneck; a sum joins them.

# %%
mlp = model.model.layers[0].mlp
flow = viz.FlowDiagram(f"Adapter after model.layers.0.mlp: h = y + W2 gelu(W1 y + b1) + b2")
flow.box("x", f"x\n(B, T, {H})", at=(0, 0))
flow.box("mlp", f"mlp (frozen)\n{H} → {mlp.up_proj.out_features} → {H}", at=(2.4, 0), kind="frozen")
flow.box("w1", f"W1: linear1\n{H} → {m_len}, gelu", at=(4.6, -1.3), kind="tuner")
flow.box("w2", f"W2: linear2\n{m_len} → {H} (0 at init)", at=(7.4, -1.3), kind="tuner")
flow.node("sum", "+", at=(9.2, 0))
flow.box("h", f"h\n(B, T, {H})", at=(10.6, 0))
for a, b in [("x", "mlp"), ("mlp", "w1"), ("w1", "w2"), ("w2", "sum"), ("sum", "h")]:
    flow.arrow(a, b)
flow.arrow("mlp", "sum", label="y (residual)")
viz.save_figure(flow.draw(), "02_data_flow")

# %% [markdown]
# ## 4. Run the benchmark
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
COLLATE = SFTCollator(pad_token_id=tokenizer.pad_token_id, pad_to_multiple_of=8)
rows = compare_tuners(lambda: zoo.load("llama-tiny")[0], CONFIGS, train_ds, eval_ds, steps=STEPS, lr=LR,
                      batch_size=BATCH_SIZE, seed=0, measure_steps=MEASURE_STEPS, measure_warmup=MEASURE_WARMUP,
                      measure_rounds=MEASURE_ROUNDS, eval_fn=instruction_accuracy, collate_fn=COLLATE)
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
fig, axes = plt.subplots(1, 3, figsize=(15, 6))
viz.bar_compare(rows, "trainable_percent", ax=axes[0], log=True, title="trainable parameters",
                xlabel="trainable parameters (% of the model, log scale)")
viz.bar_compare(rows, "memory_ratio", ax=axes[1], title="peak training memory",
                xlabel="peak training memory (× full fine-tuning)")
viz.bar_compare(rows, "time_ratio", ax=axes[2], title="time of one train step",
                xlabel="train-step time (× full fine-tuning)")
fig.suptitle(f"llama-tiny ({rows[0]['total_params']:,} params): what each tuner costs, batch {BATCH_SIZE}, "
             f"{rows[0]['device']}")
fig.tight_layout()
viz.save_figure(fig, "02_tuner_benchmark")

# %% [markdown]
# **Held-out quality, over seeds.** The table's `eval_loss` and `exact_match` columns are one seed.
# To compare quality, the seven rows ms-swift's benchmark also has (full FT, LoRA, DoRA, Adapter, LLaMA-Pro,
# NEFTune+LoRA, LISA) train again with more seeds (the seed sets the tuner's initialisation and the
# data order); their cost is not measured again. The loss scores every response token under
# teacher forcing; the exact match asks the model to *write* the whole answer itself. Predict: a
# lower loss should go with a higher accuracy, but not strictly — one wrong digit fails an exact
# match that costs the loss little.

# %%
SEEDS = [0] if QUICK else [0, 1, 2]
QUALITY = ["full FT", "LoRA", "DoRA", "Adapter", "LLaMA-Pro", "NEFTune+LoRA", "LISA"]  # ms-swift's rows
per_seed = {SEEDS[0]: {r["name"]: r for r in rows}}
for seed in SEEDS[1:]:
    again = compare_tuners(lambda: zoo.load("llama-tiny")[0], {n: CONFIGS[n] for n in QUALITY}, train_ds, eval_ds,
                           steps=STEPS, lr=LR, batch_size=BATCH_SIZE, seed=seed, measure_steps=1, measure_warmup=0,
                           measure_rounds=1, eval_fn=instruction_accuracy, collate_fn=COLLATE, progress=False)
    per_seed[seed] = {r["name"]: r for r in again}
quality = {n: {m: np.array([per_seed[s][n][m] for s in SEEDS]) for m in ("eval_loss", "exact_match")}
           for n in QUALITY}

fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
y = np.arange(len(QUALITY))
for ax, metric, scale, label in [(axes[0], "eval_loss", 1, "held-out SFT loss (nats per response token)"),
                                 (axes[1], "exact_match", 100, f"exact match (% of {N_EM} held-out prompts)")]:
    means = [scale * quality[n][metric].mean() for n in QUALITY]
    stds = [scale * quality[n][metric].std() for n in QUALITY]
    ax.barh(y, means, xerr=stds, capsize=3, color="#4c72b0", label="mean ± std over seeds")
    for i, n in enumerate(QUALITY):  # each seed as a dot, jittered up/down so equal values stay visible
        ax.scatter(scale * quality[n][metric], i + np.linspace(-0.2, 0.2, len(SEEDS)), color="black", s=10, zorder=3,
                   label="one seed" if i == 0 else None)
    ax.set_yticks(y, labels=QUALITY)
    ax.invert_yaxis()
    ax.set_xlabel(label)
    ax.set_xlim(0, 1.25 * max(max(m + s for m, s in zip(means, stds)), scale * 0.04))
before = {"eval_loss": rows[0]["eval_loss_init"], "exact_match": 100 * exact_match_init}
axes[0].axvline(before["eval_loss"], color="crimson", linestyle=":", label=f"before fine-tuning ({before['eval_loss']:.2f})")
axes[1].axvline(before["exact_match"], color="crimson", linestyle=":", label=f"before fine-tuning ({before['exact_match']:.0f} %)")
axes[0].set_xlim(0, 1.15 * max(before["eval_loss"], axes[0].get_xlim()[1]))
n_seeds = f"{len(SEEDS)} seed{'s' if len(SEEDS) > 1 else ''}"
axes[0].set_title(f"held-out loss after {STEPS} steps ({n_seeds})")
axes[1].set_title(f"held-out exact match after {STEPS} steps ({n_seeds})")
for ax in axes:
    ax.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3)
fig.tight_layout()
viz.save_figure(fig, "02_tuner_quality")
points = [(per_seed[s][n]["eval_loss"], per_seed[s][n]["exact_match"]) for s in SEEDS for n in QUALITY]
losses, accuracies = zip(*points)
quality_corr = (float(np.corrcoef(losses, accuracies)[0, 1]) if np.std(accuracies) > 0
                else float("nan"))  # nan: every run has the same accuracy (e.g. quick mode's 3 steps)
print(f"correlation of held-out loss and exact match over {len(points)} runs ({len(QUALITY)} rows × "
      f"{len(SEEDS)} seeds): {quality_corr:.2f}")

# %% [markdown]
# ## 5. Next to the paper's benchmark (ms-swift's measurement)
#
# ms-swift's five tuners and LISA as ratios to its own full fine-tuning (memory in GiB, time =
# 1 / samples-per-second; source: ms-swift's benchmark page, section "Tuners", Qwen-7B-Chat on one
# A100, setting as in the introduction), beside ours as ratios to our full fine-tuning (llama-tiny on
# one CPU thread, batch 16, memory counted as in section 4). Ratios to each side's own baseline are
# what compares; the absolute numbers do not. How the settings differ: a 7B model with
# gradient checkpointing and sequences up to 2048 tokens there, a 1M-parameter model without
# checkpointing and short sequences here; their NEFTune row uses noise α = 15, ours 5 (noise
# changes no cost: their NEFTune row matches their LoRA row to 0.01 samples/s).

# %%
PAPER = {  # ms-swift docs/source_en/LLM/Benchmark.md, "Tuners" (ms-swift 2.x), Qwen-7B-Chat, A100: (memory GiB, samples/s)
    "full FT": (73.53, 1.43), "LoRA": (32.35, 0.95), "DoRA": (32.46, 0.51), "Adapter": (32.19, 1.48),
    "LLaMA-Pro": (38.11, 1.53), "NEFTune+LoRA": (32.35, 0.96), "LISA": (31.11, 2.66),
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
    viz.grouped_bars(names, {"ms-swift benchmark (Qwen-7B-Chat, A100)": [r[f"paper_{metric}"] for r in side_by_side],
                             f"ours (llama-tiny, {rows[0]['device']})": [r[metric] for r in side_by_side]},
                     ax=ax, xlabel=label, reference=1.0, reference_label="full fine-tuning = 1")
fig.tight_layout()
viz.save_figure(fig, "02_tuner_benchmark_vs_paper")

# %% [markdown]
# ## 6. What the tiny scale shows, and what it does not
#
# Every number below is printed from this run's rows (a quick-mode run prints quick-mode numbers,
# and only its cost columns mean anything: 3 training steps).
#
# **Trainable share.** Rank 8 is a small fraction of Qwen-7B's 4096-wide layers but a large one
# of llama-tiny's narrow layers, so the same LoRA trains a much larger share here:

# %%
full, lora, dora, pro = ours["full FT"], ours["LoRA"], ours["DoRA"], ours["LLaMA-Pro"]
peft = [r for r in rows if r["name"] != "full FT"]
MiB = 2**20
print(f"LoRA r = 8: {lora['trainable_percent']:.2f} % of the adapted model (ms-swift, Qwen-7B-Chat: 0.23 %); rank 8 is 1/{H // 8} "
      f"of a {H}-wide layer here, 1/{4096 // 8} of Qwen-7B's 4096")
print(f"one LLaMA-Pro block: {pro['trainable_percent']:.1f} % (ms-swift, 4 of 32 blocks: 9.49 %)")
vector = sorted((r for r in rows if r["trainable_percent"] < 1), key=lambda r: r["trainable_percent"])
print("under 1 %:", ", ".join(f"{r['name']} {r['trainable_percent']:.2f} %" for r in vector))

# %% [markdown]
# **Memory.** What full FT adds over LoRA is gradients and two AdamW moments for every weight; the
# activations autograd saves for a batch are paid by both. At 7B the weight-sized terms dominate;
# here the activations can, so what decides memory is how much of the network keeps activations
# for backward. The range, the order and the size of the weight-sized terms:

# %%
by_memory = sorted(peft, key=lambda r: r["memory_ratio"])
paper_memory = [r["paper_memory_ratio"] for r in side_by_side[1:]]
print(f"tuners: {by_memory[0]['memory_ratio']:.2f}–{by_memory[-1]['memory_ratio']:.2f} × full FT's memory "
      f"(ms-swift, {len(paper_memory)} rows: {min(paper_memory):.2f}–{max(paper_memory):.2f})")
print(f"LoRA {lora['memory_ratio']:.2f} × ({lora['peak_memory_bytes'] / MiB:.1f} vs {full['peak_memory_bytes'] / MiB:.1f} MiB; "
      f"ms-swift {PAPER['LoRA'][0] / PAPER['full FT'][0]:.2f} ×)")
print("tuners that need more memory than full FT:",
      ", ".join(f"{r['name']} {r['memory_ratio']:.2f} ×" for r in peft if r["memory_ratio"] > 1) or "none")
print(f"gradients + two AdamW moments of all {full['total_params']:,} weights: 3 × {4 * full['total_params'] / MiB:.1f} MiB")
print("least memory first:", ", ".join(f"{r['name']} {r['memory_ratio']:.2f}" for r in by_memory))

# %% [markdown]
# **Speed.** rsLoRA, LoRA+ and NEFTune+LoRA do LoRA's computation, so the spread of their speeds
# with LoRA's measures the timing noise of this shared CPU; an order of two tuners that differ by
# less than that noise says nothing.

# %%
FIVE = [n for n in PAPER if n != "NEFTune+LoRA"]  # NEFTune+LoRA does LoRA's computation (plus input noise)
speed = {r["name"]: r["throughput"] for r in rows}
by_speed = sorted(FIVE, key=lambda n: -speed[n])
paper_by_speed = sorted(FIVE, key=lambda n: -PAPER[n][1])
same_as_lora = [speed[n] for n in ("LoRA", "rsLoRA", "LoRA+", "NEFTune+LoRA")]
noise = (max(same_as_lora) - min(same_as_lora)) / speed["LoRA"]
swaps = [(a, b) for i, a in enumerate(paper_by_speed) for b in paper_by_speed[i + 1:] if speed[b] > speed[a]]
print("samples/s, fastest first:", " > ".join(f"{n} {speed[n]:.0f}" for n in by_speed))
print("ms-swift (samples/s):     ", " > ".join(f"{n} {PAPER[n][1]}" for n in paper_by_speed))
print(f"timing noise (LoRA-like rows): {noise:.0%}; pairs in another order than ms-swift's:",
      ", ".join(f"{b} before {a} ({'within' if abs(speed[a] - speed[b]) / speed[a] <= noise else 'beyond'} the noise)"
                for a, b in swaps) or "none")
print(f"DoRA / LoRA step time: {dora['step_time_s'] / lora['step_time_s']:.2f} "
      f"(ms-swift: {PAPER['LoRA'][1] / PAPER['DoRA'][1]:.2f}); swiftlite LoRA / 🤗 PEFT LoRA: "
      f"{lora['step_time_s'] / ours['PEFT LoRA']['step_time_s']:.2f}")

# %% [markdown]
# **Held-out quality**, mean ± std over the seeds for the seven rows trained with each seed
# (ms-swift's table also reports eval loss and gsm8k / ARC / C-Eval accuracies, but for a 7B chat
# model after two epochs on other data, so none of them is set beside ours). Read it as "after the same short budget", with
# learning rates tuned only roughly, not as which method is better when trained to convergence. One
# prompt of the exact-match set is one percentage point, so differences of a few points between
# rows are within what one seed changes (the std shows how much).

# %%
by_loss = sorted(QUALITY, key=lambda n: quality[n]["eval_loss"].mean())
print(f"held-out loss, best first ({len(SEEDS)} seeds; {full['eval_loss_init']:.2f} before fine-tuning):",
      ", ".join(f"{n} {quality[n]['eval_loss'].mean():.2f} ± {quality[n]['eval_loss'].std():.2f}" for n in by_loss))
by_em = sorted(QUALITY, key=lambda n: -quality[n]["exact_match"].mean())
print(f"exact match, best first ({100 * exact_match_init:.0f} % before fine-tuning):",
      ", ".join(f"{n} {100 * quality[n]['exact_match'].mean():.1f} ± {100 * quality[n]['exact_match'].std():.1f} %"
                for n in by_em))
print(f"LISA, {ours['LISA']['trainable_percent']:.0f} % of the weights at a time: {ours['LISA']['memory_ratio']:.2f} × "
      f"full FT's memory (ms-swift, 2 of 32 layers: {PAPER['LISA'][0] / PAPER['full FT'][0]:.2f} ×)")
print(f"this run took {time.perf_counter() - started:.0f} s ({'quick' if QUICK else 'full'} mode)")

# %% [markdown]
# ## Exercises
#
# Write your prediction in the cell with `...`, then run the cell under it (collapsed in
# JupyterLab: click the bar to open it): it computes the reference, checks it against the model or
# this run, and then checks your answer (printing the reference if you left `...`).
#
# 1. **When is low rank no longer small?** At which rank $r$ does LoRA (on all linear layers, as in
#    the benchmark) train at least as many weights as the linear layers it adapts? Predict it from the
#    layers' shapes ($d_\text{in} d_\text{out}$ weights against $r (d_\text{in} + d_\text{out})$
#    per layer).

# %%
my_break_even_rank = ...  # your answer: an integer

# %% jupyter={"source_hidden": true}
from swiftlite import check_answer  # noqa: E402


def lora_count(r: int) -> int:
    tuned = Swift.prepare_model(copy.deepcopy(model), T.LoRAConfig(r=r, lora_alpha=32, target_modules=ALL_LINEAR))
    return sum(p.numel() for p in tuned.parameters() if p.requires_grad)


adapted = [m for name, m in model.named_modules() if name.rsplit(".", 1)[-1] in ALL_LINEAR]
weights = sum(m.in_features * m.out_features for m in adapted)
per_rank = sum(m.in_features + m.out_features for m in adapted)
r_equal = -(-weights // per_rank)  # ⌈Σ d_in d_out / Σ (d_in + d_out)⌉
assert lora_count(r_equal) >= weights > lora_count(r_equal - 1)  # checked on the real model
check_answer(my_break_even_rank, r_equal)

# %% [markdown]
# 2. **Fewest weights, least memory?** Predict whether the tuner with the fewest trainable weights is
#    also the one that needs the least training memory in this run (section 6 says what decides
#    memory here). Answer `True` or `False`.

# %%
my_fewest_is_least = ...  # your answer: True or False

# %% jupyter={"source_hidden": true}
fewest = min(peft, key=lambda r: r["trainable_params"])
print(f"fewest trainable weights: {fewest['name']} ({fewest['trainable_params']:,}, memory {fewest['memory_ratio']:.2f}× "
      f"full FT); least memory: {by_memory[0]['name']} ({by_memory[0]['memory_ratio']:.2f}×)")
same = fewest["name"] == by_memory[0]["name"]
assert same == (fewest["memory_ratio"] <= min(r["memory_ratio"] for r in peft))  # the rows agree with themselves
check_answer(my_fewest_is_least, same)

# %% [markdown]
# 3. **What if $W_2$ did not start at zero?** Build one `ScratchAdapter` on the first layer's MLP and
#    give its $W_2$ PyTorch's default random initialisation instead of zeros. Is the model then still
#    exactly the base model before training? Answer `True` or `False`; the check measures it.

# %%
my_still_identity = ...  # your answer: True or False

# %% jupyter={"source_hidden": true}
probe = zoo.load("llama-tiny", progress=False)[0]
with torch.no_grad():
    before_logits = probe(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    probe.model.layers[0].mlp = ScratchAdapter(probe.model.layers[0].mlp, H, m_len)
    probe.model.layers[0].mlp.W2.reset_parameters()  # nn.Linear's default (random) init
    after_logits = probe(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
change = (after_logits - before_logits).abs().max().item()
print(f"max |Δ logits| with a random W2 at init: {change:.3f}")
assert change > 1e-3  # a random W2 adds W2 gelu(W1 y) ≠ 0: the pretrained model is changed before any step
check_answer(my_still_identity, change == 0.0)

# %% [markdown]
# More to try, without a check (each reruns part of the benchmark):
#
# * **Rank vs memory.** Rerun only LoRA with `r=64`: does its memory ratio move much?
# * **Where backward stops.** Move Part to the first block (`model\.layers\.0`) and predict its
#   memory ratio before running.
# * **A learning rate at the edge.** Run `python benchmarks/lr_sweep.py --tuners IA3 --lrs 1e-1 3e-1 1`
#   and check whether IA3's best lr is still at the top of the grid.
# * **Batch size.** With `BATCH_SIZE = 4` the activations shrink: does LoRA's memory ratio fall
#   towards ms-swift's?
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
