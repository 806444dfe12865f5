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
# # 00 · A tour of swiftlite
#
# Parameter-efficient tuning keeps a pretrained model frozen and trains a small set of new
# weights — a *tuner* — attached to it. swiftlite does this with ms-swift's API
# (`Swift.prepare_model`, `save_pretrained`, `Swift.from_pretrained`, `merge`, ...) on real
# 🤗 Transformers / Diffusers / PyTorch models, all on a CPU in seconds.
#
# This tour walks the whole life of an adapter on a tiny LLaMA:
# **look → attach → train → save/load → merge → several adapters → switch**.
#
# The tuner here is LoRA (Hu et al., 2021, [arXiv:2106.09685](https://arxiv.org/abs/2106.09685)):
# a frozen weight $W_0$ gets a trainable low-rank update
#
# $$ h = W_0 x + \frac{\alpha}{r}\, B A x, \qquad A \in \mathbb{R}^{r \times d_\text{in}},\;
#    B \in \mathbb{R}^{d_\text{out} \times r},\; B = 0 \text{ at init,} $$
#
# so the model is unchanged at initialisation and $W_0 + \frac{\alpha}{r} BA$ can be merged back
# into $W_0$ for inference at no extra cost.

# %%
import os
import tempfile

import datasets
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import swiftlite
from swiftlite import LoRAConfig, Swift, viz
from swiftlite.train import train

QUICK = os.environ.get("SWIFTLITE_QUICK") == "1"  # CI smoke run: fewer steps
STEPS = 25 if QUICK else 300
torch.manual_seed(0)

# %% [markdown]
# ## 1. A base model
#
# A real `transformers.LlamaForCausalLM`, tiny and randomly initialised from a fixed seed: it plays
# "the pretrained model" (building it twice gives the same weights, which is what loading an
# adapter into a fresh copy needs). Its vocabulary is the numbers 0…31.

# %%
VOCAB = 32


def make_base() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=0, bos_token_id=0, eos_token_id=0)
    return LlamaForCausalLM(config).eval()


base = make_base()
swiftlite.show(base)

# %% [markdown]
# `swiftlite.show` prints the module tree: the four identical decoder layers are folded into
# `layers.0-3`, each line carries its parameter shapes, and the totals sit at the bottom.
# Given a config that is *not applied yet*, it marks the modules the config would attach to —
# the quickest way to check a `target_modules` pattern:

# %%
config = LoRAConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
swiftlite.show(base, config=config)

# %% [markdown]
# ## 2. Attach LoRA
#
# `Swift.prepare_model` freezes the base, puts a `LoRALinear` where each matched `nn.Linear`
# was, and returns a `SwiftModel` that behaves like the base model (same `forward`, same
# attributes). Because $B = 0$, the output is unchanged at this point.

# %%
ids = torch.tensor([[1, 3, 5, 7, 9, 11, 13, 15]])
with torch.no_grad():
    base_logits = base(input_ids=ids).logits

model = Swift.prepare_model(base, config)
model.print_trainable_parameters()
with torch.no_grad():
    assert torch.allclose(model(input_ids=ids).logits, base_logits)
swiftlite.show(model)

# %% [markdown]
# ## 3. Train on a toy task
#
# The task: continue an arithmetic progression modulo 32, $x_t = (a + d\,t) \bmod 32$, with an
# increasing step $d \in \{1, 2, 3\}$. It is a `datasets.Dataset`; `labels = input_ids` (the
# model shifts them for next-token prediction). `swiftlite.train.train` is the one training loop
# of the package (Accelerate, AdamW over the parameters that require a gradient — here only
# LoRA's $A$ and $B$).

# %%
def progressions(steps_d: list[int], n: int = 512, length: int = 16, seed: int = 0) -> datasets.Dataset:
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, VOCAB, (n, 1), generator=g)
    d = torch.tensor(steps_d)[torch.randint(0, len(steps_d), (n, 1), generator=g)]
    seqs = (a + d * torch.arange(length)) % VOCAB  # (n, length)
    return datasets.Dataset.from_dict({"input_ids": seqs.tolist(), "labels": seqs.tolist()})


up = progressions([1, 2, 3])
up[0]["input_ids"]

# %%
history = train(model, up, None, steps=STEPS, batch_size=32, lr=1e-2, progress=False)
print(f"loss: {history.loss[0]:.3f} -> {history.loss[-1]:.3f} in {history.seconds:.1f}s")
assert sum(history.loss[-5:]) / 5 < history.loss[0]

# %%
ax = viz.plot_history(history, labels="LoRA r=8 on q_proj, v_proj", title="next-token loss")
viz.save_figure(ax.figure, "00_tour_loss")

# %% [markdown]
# How often is the next number right? `model.disable_adapter()` gives the base model back
# inside a `with` block, which makes the before/after comparison one line each.

# %%
def next_token_accuracy(m, data: datasets.Dataset) -> float:
    seqs = torch.tensor(data["input_ids"])
    with torch.no_grad():
        predicted = m(input_ids=seqs).logits[:, :-1].argmax(-1)  # (n, length - 1)
    return (predicted == seqs[:, 1:]).float().mean().item()


up_test = progressions([1, 2, 3], n=256, seed=1)
model.eval()
with model.disable_adapter():
    acc_base = next_token_accuracy(model, up_test)
acc_lora = next_token_accuracy(model, up_test)
print(f"next-token accuracy on held-out progressions: base {acc_base:.1%}, with LoRA {acc_lora:.1%}")
assert acc_lora > acc_base

# %% [markdown]
# Accuracy climbs much faster than the loss falls: the base is random and frozen, and LoRA only
# adapts the query and value projections, so the adapter learns to put the right number *first*
# long before it can make the output distribution sharp.

# %% [markdown]
# ## 4. Save, then load into a fresh base
#
# A checkpoint holds the tuner only: one folder per adapter (here `default/`, ms-swift's layout) with
# `adapter_config.json` and a few kilobytes of `adapter_model.safetensors`. Loading it into a freshly
# built base reproduces the outputs.

# %%
with torch.no_grad():
    tuned_logits = model(input_ids=ids).logits

with tempfile.TemporaryDirectory() as folder:
    model.save_pretrained(folder)
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            path = os.path.join(root, name)
            print(f"{os.path.relpath(path, folder):36s} {os.path.getsize(path):>8,} bytes")
    reloaded = Swift.from_pretrained(make_base(), folder)

with torch.no_grad():
    assert torch.allclose(reloaded(input_ids=ids).logits, tuned_logits, atol=1e-6)
print("reloaded model gives the same logits")

# %% [markdown]
# ## 5. Merge and unmerge
#
# `merge()` writes $W_0 + \frac{\alpha}{r}BA$ into each base weight, so inference runs at the base
# model's cost; `unmerge()` subtracts it again.

# %%
model.merge()
with torch.no_grad():
    assert torch.allclose(model(input_ids=ids).logits, tuned_logits, atol=1e-5)
model.unmerge()
with torch.no_grad():
    assert torch.allclose(model(input_ids=ids).logits, tuned_logits, atol=1e-5)
    with model.disable_adapter():
        assert torch.allclose(model(input_ids=ids).logits, base_logits, atol=1e-5)
print("merged == unmerged; after unmerge, disabling the adapter gives the base again")

# %% [markdown]
# ## 6. A second adapter, and switching
#
# One base model can hold several adapters. We add `down`, trained on *decreasing* progressions
# ($d \in \{-1, -2, -3\}$), while `default` is switched off (`train` only updates parameters that
# receive a gradient, so `default` stays as it was).

# %%
model.add_adapter("down", LoRAConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
model.set_active_adapters("down")
down = progressions([-1, -2, -3])
history_down = train(model, down, None, steps=STEPS, batch_size=32, lr=1e-2, progress=False)
ax = viz.plot_history({"default (up)": history, "down": history_down}, title="two adapters, one base")

# %%
down_test = progressions([-1, -2, -3], n=256, seed=1)
model.eval()
rows = []
for choice in ["base", "default", "down"]:
    if choice == "base":
        with model.disable_adapter():
            rows.append((choice, next_token_accuracy(model, up_test), next_token_accuracy(model, down_test)))
    else:
        model.set_active_adapters(choice)
        rows.append((choice, next_token_accuracy(model, up_test), next_token_accuracy(model, down_test)))
print(f"{'adapter':8s} {'up':>7s} {'down':>7s}")
for name, acc_up, acc_down in rows:
    print(f"{name:8s} {acc_up:7.1%} {acc_down:7.1%}")

# %%
model.set_active_adapters("default")
with torch.no_grad():
    logits_default = model(input_ids=ids).logits
    model.set_active_adapters("down")
    logits_down = model(input_ids=ids).logits
    with model.disable_adapter():
        assert torch.allclose(model(input_ids=ids).logits, base_logits, atol=1e-6)
assert torch.allclose(logits_default, tuned_logits, atol=1e-6)  # `default` untouched by training `down`
assert not torch.allclose(logits_default, logits_down)
print("the two adapters differ; disable_adapter() still gives the base model")
swiftlite.show(model)

# %% [markdown]
# ## 7. Switch interactively
#
# `viz.adapter_switch_widget` puts a dropdown over the model: choosing an adapter activates it and
# re-renders — here, the greedy continuation of a prompt (`generate` passes through to the
# base model).

# %%
prompt = torch.tensor([[20, 18, 16, 14]])


def continuation(m, inputs) -> str:
    out = m.generate(inputs, max_new_tokens=8, do_sample=False, pad_token_id=0)
    return f"{inputs[0].tolist()} -> {out[0, inputs.shape[1]:].tolist()}  (active: {m.active_adapters or 'none'})"


viz.adapter_switch_widget(model, prompt, continuation)

# %% [markdown]
# **Next:** `01_build_your_own_tuner` writes a new tuner in a few dozen lines and runs the
# conformance kit on it; the later tutorials reproduce the papers behind the other tuners.
