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
# # 12 · Tuning on a quantized base (QLoRA)
#
# **Claim:** (the paper's) QLoRA (Dettmers et al., 2023, [arXiv:2305.14314](https://arxiv.org/abs/2305.14314))
# stores the frozen base in 4-bit NormalFloat (NF4) with double quantization, trains full-precision LoRA
# adapters beside it, and "reduces the average memory requirements of finetuning a 65B parameter model
# from >780GB of GPU memory to <48GB" without degrading predictive performance compared to 16-bit
# fine-tuning (abstract and §1); double quantization cuts the constants from 0.5 to 0.127 bit per
# parameter (§3).
#
# **Running time** on the project's 2-core CPU with one torch thread, measured 2026-12-05 beside one
# other full-mode notebook on the other core: full mode (3 bases × 3 seeds × 120 LoRA steps) **4 min
# 6 s** (`jupyter nbconvert --execute`); quick mode (`SWIFTLITE_QUICK=1`, the zoo's quick builds
# cached) 35 s.
# Section 9 prints this run's time. The committed figure comes from that full run.
#
# **You will learn**
# * what a 4-bit NF4 weight stores — a code book from normal quantiles, one absmax per 64 weights, and
#   those constants quantized again — by building it by hand and checking it against bitsandbytes;
# * how LoRA trains beside a quantized layer, what merging into it costs, and how to avoid that cost;
# * what a quantized base saves on a CPU (weight memory) and what it does not (activations, time).
#
# Everything runs offline on the CPU with the real libraries of the `quant` extra (bitsandbytes' CPU
# backend, torchao, hqq): the base is the zoo's `llama-tiny` (a `transformers.LlamaForCausalLM`).

# %%
import tempfile
import time
import warnings

import bitsandbytes as bnb
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
import transformers
from IPython.display import Markdown, display

import swiftlite
import swiftlite.zoo as zoo
from swiftlite import LoRAConfig, Swift, viz
from swiftlite.data import instruction_pairs
from swiftlite.llm import SFTCollator, build_sft_dataset
from swiftlite.llm import nf4
from swiftlite.llm.quantized import QuantizeArguments, compare_quantized, quantize_model, weight_bytes
from swiftlite.settings import quick_mode

QUICK = quick_mode()  # CI smoke run: 1 seed, 3 steps
SEEDS = [0] if QUICK else [0, 1, 2]
STEPS, N_TRAIN, N_EVAL = (3, 48, 16) if QUICK else (120, 2000, 200)
torch.set_num_threads(1)  # on a shared 2-core CPU one thread is several times cheaper than two fighting
started = time.perf_counter()
print(f"swiftlite {swiftlite.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, "
      f"bitsandbytes {bnb.__version__}, {'quick' if QUICK else 'full'} mode")

# %% [markdown]
# ## 1. The equation
#
# QLoRA keeps LoRA's update and changes only how W0 is stored:
#
# $$h = \mathrm{deq}(Q(W_0))\,x + s\,B A x,\qquad A\in\mathbb{R}^{r\times d_{in}},\ B\in\mathbb{R}^{d_{out}\times r},\ B=0,\ s=\alpha/r$$
#
# * $Q(W_0)$: every block of 64 consecutive weights keeps one absmax $c_b=\max|W_b|$ and a 4-bit index per
#   weight into a 16-value code book $q$: $\mathrm{idx}=\arg\min_i |W/c_b - q_i|$, $\mathrm{deq}=q_{\mathrm{idx}}\,c_b$;
# * double quantization stores the $c_b$ themselves in 8 bits, in blocks of 256, after subtracting their mean;
# * $A$, $B$ stay in float32; the quantized layer dequantizes on the fly (`LoRALayer.forward` in
#   [`swiftlite/tuners/lora/lora.py`](../swiftlite/tuners/lora/lora.py) computes `h = h + BAx * s`, unchanged; the
#   quantized layers are handled in [`swiftlite/tuners/lora/quantized.py`](../swiftlite/tuners/lora/quantized.py)).

# %% [markdown]
# ## 2. Quantize a weight by hand
#
# First the code book. NF4 places its 16 values at quantiles of a standard normal, so that each value
# is equally likely for normally distributed weights: 8 positive quantiles between $\delta$ and ½, 7
# negative ones, an exact zero, all scaled to [-1, 1] ($\delta$ = 0.9677083, bitsandbytes' choice).

# %%
delta = 0.9677083
positive = torch.special.ndtri(torch.linspace(delta, 0.5, 9, dtype=torch.float64)[:-1])  # Φ⁻¹(p), 8 values
negative = -torch.special.ndtri(torch.linspace(delta, 0.5, 8, dtype=torch.float64)[:-1])  # 7 values
code = torch.cat([positive, torch.zeros(1, dtype=torch.float64), negative]).sort().values
code = (code / code.abs().max()).float()  # (16,) in [-1, 1]
library_code = bnb.functional.get_4bit_type("nf4", device="cpu")
print(np.round(code.numpy(), 4))
assert torch.allclose(code, library_code, atol=1e-6) and torch.equal(code, nf4.nf4_code_book())

# %% [markdown]
# Now a real weight: layer 0's `q_proj` of `llama-tiny`. Predict: the 4-bit indices we compute by hand
# are exactly the ones bitsandbytes stores, since both take the nearest code value in each block.

# %%
model, tokenizer = zoo.load("llama-tiny")
W = model.model.layers[0].self_attn.q_proj.weight.detach()  # (d_out, d_in)
blocks = W.flatten().view(-1, 64)  # (n_blocks, 64): 64 consecutive weights share one constant
absmax = blocks.abs().amax(dim=1)  # c_b, (n_blocks,)
idx = ((blocks / absmax[:, None])[..., None] - code).abs().argmin(dim=-1)  # (n_blocks, 64) in 0..15
by_hand = (code[idx] * absmax[:, None]).view(W.shape)  # deq(Q(W)) = q_idx · c_b

packed, state = bnb.functional.quantize_4bit(W, blocksize=64, quant_type="nf4", compress_statistics=False)
library = bnb.functional.dequantize_4bit(packed, state)
assert torch.equal(nf4.pack_4bit(idx.flatten().to(torch.uint8)), packed.flatten())  # the same 4-bit indices
print(f"|by hand - bitsandbytes| max = {(by_hand - library).abs().max():.2e}; "
      f"mean |W - deq(Q(W))| = {(by_hand - W).abs().mean():.2e} (mean |W| = {W.abs().mean():.2e})")
assert torch.allclose(by_hand, library, atol=1e-7)

# %% [markdown]
# **Double quantization.** One float32 constant per 64 weights costs 32/64 = 0.5 bit per weight. QLoRA
# quantizes the constants again, 8 bits each in blocks of 256 with one float32 per block:
# 8/64 + 32/(64·256) = 0.127 bit. `nf4.nf4_quantize` does both steps; its storage, counted in bytes:

# %%
single, double = nf4.nf4_quantize(W, double_quant=False), nf4.nf4_quantize(W, double_quant=True)
print(f"bits per weight: {single.bits_per_weight():.3f} without, {double.bits_per_weight():.3f} with double "
      f"quantization (paper: 4.5 and 4.127); extra error {(double.dequantize() - single.dequantize()).abs().max():.1e}")
n, n_blocks = W.numel(), W.numel() // 64
n_blocks2 = -(-n_blocks // 256)  # the last block of 256 constants may be partly filled (then a bit more than 0.127)
assert double.bits_per_weight() == (4 * n + 8 * n_blocks + 32 * n_blocks2) / n

# %% [markdown]
# ## 3. Where it attaches, drawn from the real model
#
# `quantize_model` takes ms-swift's quantization arguments (`quant_method`, `quant_bits`,
# `bnb_4bit_quant_type`, `bnb_4bit_use_double_quant`) and lets transformers quantize while loading
# (`BitsAndBytesConfig`). Every linear layer of the blocks becomes a bitsandbytes `Linear4bit`;
# `lm_head` and the embeddings stay in float32. LoRA then wraps the 4-bit layers. In the drawing, a 4-bit
# layer's "params" are what torch counts for it: packed bytes, two weights per byte (a 64×64 weight shows
# 2,048).

# %%
qlora_args = QuantizeArguments(quant_method="bnb", quant_bits=4, bnb_4bit_quant_type="nf4",
                               bnb_4bit_use_double_quant=True)
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
lora_config = LoRAConfig(r=8, lora_alpha=32, target_modules=ALL_LINEAR)  # ms-swift's QLoRA recipe: r=8, α=32
base4 = quantize_model(model, qlora_args)
print(type(base4.model.layers[0].self_attn.q_proj).__name__, "holding", type(base4.model.layers[0].self_attn.q_proj.weight).__name__,
      f"of dtype {base4.model.layers[0].self_attn.q_proj.weight.dtype}")
qlora = Swift.prepare_model(base4, lora_config)
diagram = viz.tuner_diagram(qlora)

# %% [markdown]
# ## 4. Build it from scratch first
#
# The LoRA layer on a 4-bit base should be nothing but the dense computation with the dequantized
# weight: `F.linear(x, deq(Q(W0))) + s · B A x`. We give B random values (at init B = 0 and the
# check would be trivial) and compare.

# %%
layer = qlora.base_model.model.layers[0].self_attn.q_proj  # a LoRAQuantizedLinear
torch.manual_seed(0)
with torch.no_grad():
    layer.lora_B["default"].weight.normal_(std=0.05)
    x = torch.randn(3, W.shape[1])
    A, B, s = layer.lora_A["default"].weight, layer.lora_B["default"].weight, layer.scaling["default"]
    deq = bnb.functional.dequantize_4bit(layer.base_layer.weight.data, layer.base_layer.weight.quant_state)
    dense = F.linear(x, deq) + s * (x @ A.T @ B.T)  # deq(Q(W0)) x + s·B A x
    torch.testing.assert_close(layer(x), dense, atol=1e-5, rtol=1e-5)
    layer.lora_B["default"].weight.zero_()  # back to B = 0
print(f"A {tuple(A.shape)} {A.dtype}, B {tuple(B.shape)} {B.dtype}: full precision beside a "
      f"{layer.base_layer.weight.dtype} base; the LoRA layer equals the dense formula")

# %% [markdown]
# The data flow of that layer, labelled from it: the frozen weight is stored as 4-bit indices and
# block constants and dequantized at every forward; only A and B (float32) train.

# %%
qw = layer.base_layer.weight
fd = viz.FlowDiagram(f"QLoRA: layer 0 q_proj, h = deq(Q(W0)) x + {s:g} · B A x")
fd.box("x", f"x (…, {W.shape[1]})", at=(0, 0))
fd.box("q", f"Q(W0): {qw.numel() * 2:,} 4-bit indices\n+ absmax per {qw.quant_state.blocksize} (8-bit, double quant)",
       at=(5.5, 2.7), kind="frozen")
fd.box("deq", f"deq(Q(W0))\n({W.shape[0]}, {W.shape[1]}) float32", at=(5.5, 1.0), kind="frozen")
fd.box("A", f"A ({A.shape[0]}, {A.shape[1]})\nfloat32", at=(3.6, -1.3), kind="tuner")
fd.box("B", f"B ({B.shape[0]}, {B.shape[1]})\n× s = {s:g}", at=(7.4, -1.3), kind="tuner")
fd.node("sum", "+", at=(9.6, 0))
fd.box("h", f"h (…, {W.shape[0]})", at=(11.3, 0))
fd.arrow("q", "deq", label="per forward")
fd.arrow("x", "deq", label="F.linear")
for a, b in [("x", "A"), ("A", "B"), ("deq", "sum"), ("B", "sum"), ("sum", "h")]:
    fd.arrow(a, b)
viz.save_figure(fd.draw(), "12_quantized_data_flow")

# %% [markdown]
# ## 5. LoRA on the 4-bit base vs full precision
#
# Predict: the quantized base starts a little worse (its weights are rounded), and after the same steps
# LoRA on it ends close to LoRA on the float32 base, because the adapter can absorb part of the rounding.
# `compare_quantized` fine-tunes LoRA on each base (same data, steps, learning rate, seeds) through
# `compare_tuners`, and counts each base's weight bytes and training memory on the CPU (weights as
# stored + tensors saved for backward + gradients + AdamW state, `swiftlite.bench`).

# %%
train_ds = build_sft_dataset(instruction_pairs(N_TRAIN, seed=0), tokenizer)
eval_pairs = instruction_pairs(N_EVAL, seed=1)  # unseen pairs
eval_ds = build_sft_dataset(eval_pairs, tokenizer)
# Quality is the held-out loss: exact match of generated answers was close to 0 for every base in the
# full run of 2026-12-04 (120 steps are too few for llama-tiny to answer these instructions word for
# word), and a metric near zero for every arm separates nothing.

BASES = {"fp32 base": None, "NF4 + double quant (QLoRA)": qlora_args,
         "LLM.int8 (bnb 8-bit)": QuantizeArguments(quant_method="bnb", quant_bits=8)}
with warnings.catch_warnings():  # bitsandbytes' LLM.int8 notes at every call that it casts inputs to float16
    warnings.filterwarnings("ignore", message="MatMul8bitLt: inputs will be cast")
    rows = compare_quantized(lambda: zoo.load("llama-tiny")[0], BASES, lora_config, train_ds, eval_ds, steps=STEPS,
                             lr=5e-3, batch_size=16, seeds=SEEDS, progress=False,
                             collate_fn=SFTCollator(pad_token_id=tokenizer.pad_token_id), measure_steps=3)
fp32, q4, q8 = rows
table = "| base | bits | weights of the block linears | train memory | step time | held-out loss before → after |\n|---|---|---|---|---|---|\n"
for r in rows:
    table += (f"| {r['name']} | {r['quant_bits']} | {r['linear_weight_bytes'] / 1024:.0f} KiB "
              f"({r['linear_weight_bytes'] / fp32['linear_weight_bytes']:.2f}×) | "
              f"{r['train_memory_bytes'] / 2**20:.1f} MiB ({r['train_memory_bytes'] / fp32['train_memory_bytes']:.2f}×) | "
              f"{r['step_time_s'] / fp32['step_time_s']:.2f}× | {r['eval_loss_init']:.3f} → {r['eval_loss']:.3f} ± "
              f"{r['eval_loss_std']:.3f} |\n")
display(Markdown(table))
assert q4["linear_weight_bytes"] < q8["linear_weight_bytes"] < fp32["linear_weight_bytes"]
assert q4["eval_loss_init"] != fp32["eval_loss_init"]  # the rounded base is a different model

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
names = [r["name"] for r in rows]
axes[0].bar(names, [r["linear_weight_bytes"] / 1024 for r in rows], color=["grey", "tab:purple", "tab:blue"])
axes[0].set(ylabel="KiB", title="weights of the block linears (as stored)")
axes[1].bar(names, [r["train_memory_bytes"] / 2**20 for r in rows], color=["grey", "tab:purple", "tab:blue"])
axes[1].set(ylabel="MiB", title="training memory (CPU count)")
axes[2].bar(names, [r["eval_loss"] for r in rows], yerr=[r["eval_loss_std"] for r in rows],
            color=["grey", "tab:purple", "tab:blue"], capsize=4)
axes[2].set(ylabel="held-out SFT loss (nats / token)", title=f"after {STEPS} LoRA steps, {len(SEEDS)} seed(s)")
for ax in axes:
    ax.tick_params(axis="x", labelrotation=15, labelsize=8)
fig.tight_layout()
viz.save_figure(fig, "12_quantized_tuning")

# %% [markdown]
# ## 6. Merging into a quantized base, and what it costs
#
# A merged adapter has to become part of the stored weight: dequantize, add ΔW = s·BA, quantize again.
# The sum is rounded to the 4-bit grid, so the merged model is *not* the adapted one; swiftlite warns.
# Predict: the error is of the order of the quantization step, far larger than float rounding, while
# merging the same adapter into the float32 base is exact to float precision.

# %%
adapted_4bit = Swift.prepare_model(quantize_model(model, qlora_args), LoRAConfig(r=8, lora_alpha=32,
                                   target_modules=ALL_LINEAR, init_lora_weights=False))  # random B: a visible ΔW
adapted_4bit.eval()
ids = torch.tensor([train_ds[i]["input_ids"][:24] for i in range(4)])
with torch.no_grad():
    before = adapted_4bit(input_ids=ids).logits
    with warnings.catch_warnings(record=True) as caught:  # one warning per merged layer: print the first
        warnings.simplefilter("always")
        Swift.merge(adapted_4bit)
    merged_4bit_error = (adapted_4bit(input_ids=ids).logits - before).abs().max().item()
    Swift.unmerge(adapted_4bit)
    unmerged_error = (adapted_4bit(input_ids=ids).logits - before).abs().max().item()
print(caught[0].message if caught else "no warning")
adapter_dir = tempfile.mkdtemp()  # the adapter trained on the 4-bit base ...
adapted_4bit.save_pretrained(adapter_dir)
on_float = Swift.from_pretrained(zoo.load("llama-tiny")[0].eval(), adapter_dir)  # ... loaded onto the float32 base
with torch.no_grad():
    float_before = on_float(input_ids=ids).logits
    Swift.merge(on_float)
    merged_float_error = (on_float(input_ids=ids).logits - float_before).abs().max().item()
print(f"max |logit change| from merging: 4-bit base {merged_4bit_error:.3f}, float32 base {merged_float_error:.1e}; "
      f"after unmerge (4-bit) {unmerged_error:.1e}")
assert merged_float_error < 1e-3 < merged_4bit_error and unmerged_error == 0

# %% [markdown]
# The adapter trained on the 4-bit base loads onto the float32 base as it is (the same PEFT-style names):
# deploy it there and merge exactly, or keep it beside the quantized base unmerged. Unmerging a
# quantized base puts back the pre-merge layer exactly (swiftlite keeps it), instead of subtracting ΔW
# and rounding a second time (what PEFT does).

# %% [markdown]
# ## 7. A widget: bits and block size
#
# The reconstruction error of one real weight ($W$ above) as the block size changes, for several code
# books at once: evenly spaced codes (int-like) of 2, 3, 4 and 8 bits, and NF4. Smaller blocks cost more
# constants (32 bits per block) and give less error; at 4 bits NF4 beats the evenly spaced code.

# %%
BLOCKS = [16, 32, 64, 128, 256, 1024]


def reconstruction(blocksize):
    errors = {f"{b}-bit even": nf4.reconstruction_error(W, blocksize, bits=b, code="linear") for b in (2, 3, 4, 8)}
    errors["4-bit NF4"] = nf4.reconstruction_error(W, blocksize, code="nf4")
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(list(errors), list(errors.values()), color=["#bbb", "#999", "#777", "#333", "tab:purple"])
    ax.set(yscale="log", ylabel="mean |W − deq(Q(W))|", title=f"block size {blocksize}: "
           f"{32 / blocksize:.2f} extra bit per weight for the constants")
    plt.close(fig)
    return (f"block size {blocksize}: NF4 error {errors['4-bit NF4']:.2e}, 4-bit even {errors['4-bit even']:.2e}", fig)


knob = viz.knob_widget(widgets.SelectionSlider(options=BLOCKS, value=64, description="block size"), reconstruction)
display(knob)

# %% [markdown]
# ## 8. Beside the paper
#
# | | QLoRA paper | this run (`llama-tiny`, CPU) |
# |---|---|---|
# | bits per weight, NF4 + double quant | 4.127 (§3: 4 + 8/64 + 32/(64·256)) | see the table below, from the run |
# | memory | fine-tuning LLaMA-65B from >780 GB to <48 GB of GPU memory (§1; one 48 GB GPU, abstract) | weights of the block linears and training memory below |
# | quality | "preserving full 16-bit finetuning task performance" (abstract): Table 3 (RoBERTa-large / T5 on GLUE and Super-NaturalInstructions), Table 4 (LLaMA 7–65B tuned on Alpaca / FLAN v2, 5-shot MMLU) | held-out loss below |
#
# Our setting differs: the zoo's `llama-tiny` tuned for minutes on a CPU (bitsandbytes' CPU
# kernels) on instruction pairs of its own toy language, against billions of parameters on GPUs and
# public benchmarks; we compare the same kind of ratio (4-bit base against the float32 base, same
# LoRA, same data and steps), not the paper's accuracies.

# %%
ratio_linear = q4["linear_weight_bytes"] / fp32["linear_weight_bytes"]
ratio_train = q4["train_memory_bytes"] / fp32["train_memory_bytes"]
loss_gap = q4["eval_loss"] - fp32["eval_loss"]
display(Markdown(
    f"| measured here | value |\n|---|---|\n"
    f"| bits per weight of the 4-bit block linears (bitsandbytes' storage, small per-layer state included) | "
    f"{32 * ratio_linear:.2f} |\n"
    f"| weights of the block linears, NF4 / fp32 | {ratio_linear:.2f}× |\n"
    f"| training memory, NF4 / fp32 (same LoRA) | {ratio_train:.2f}× |\n"
    f"| held-out loss after {STEPS} steps, NF4 − fp32 | {loss_gap:+.3f} (std over seeds {q4['eval_loss_std']:.3f}) |"))
assert ratio_linear < 0.3

# %% [markdown]
# ## 9. What differs at tiny scale
#
# * The paper's saving is about weights: at 65B parameters they are most of the memory. In `llama-tiny`
#   the activations saved for backward and the float32 embeddings dominate, so the training-memory ratio
#   stays near 1 even though the quantized layers shrink several times (`benchmarks/quantized.py` shows the
#   same on a wider LLaMA).
# * On a CPU there is no 4-bit matrix multiply: every forward dequantizes, so a step is not faster.
# * bitsandbytes' CPU kernel misreads 4-bit weights whose rows are not whole blocks (the README gives the
#   details); the full `llama-tiny` has such a layer (`down_proj`, 352 inputs), and `quantize_model` warns.

# %%
print(f"block linears: NF4 stores {ratio_linear:.2f}× their float32 bytes; training memory NF4 / fp32: {ratio_train:.2f}×")
print(f"step time NF4 / fp32: {q4['step_time_s'] / fp32['step_time_s']:.2f}× (CPU, shared machine)")
print(f"held-out loss after {STEPS} steps: NF4 {q4['eval_loss']:.3f} ± {q4['eval_loss_std']:.3f}, "
      f"fp32 {fp32['eval_loss']:.3f} ± {fp32['eval_loss_std']:.3f} (before: {q4['eval_loss_init']:.3f} vs {fp32['eval_loss_init']:.3f})")
print(f"merging moved the logits by up to {merged_4bit_error:.3f} (4-bit base) and {merged_float_error:.1e} (float32 base)")
print(f"this run took {time.perf_counter() - started:.0f} s ({'quick' if QUICK else 'full'} mode)")
assert ratio_train > ratio_linear  # the quantized layers shrink more than the training memory does

# %% [markdown]
# ## Exercises
#
# 1. **Bits for smaller blocks.** How many bits per weight does NF4 cost with blocks of 32 and *no*
#    double quantization? Then: what does double quantization bring it down to (8-bit constants in
#    blocks of 256, one float32 each)? Give the first number.

# %%
my_bits_blocks_32 = ...  # your answer (a float)

# %% jupyter={"source_hidden": true}
reference_bits = nf4.nf4_quantize(W, blocksize=32, double_quant=False).bits_per_weight()
assert abs(reference_bits - (4 + 32 / 32)) < 1e-9  # 4 bits of index + one float32 per 32 weights
print(f"with double quantization: {nf4.nf4_quantize(W, blocksize=32, double_quant=True).bits_per_weight():.3f}")
swiftlite.check_answer(my_bits_blocks_32, reference_bits)

# %% [markdown]
# 2. **Where is zero?** Which index of the NF4 code book holds 0? Why does NF4 need an exact zero
#    (think of padding and of weights pruned to zero)? Find the index from `code`.

# %%
my_zero_index = ...  # your answer (an int, 0..15)

# %% jupyter={"source_hidden": true}
reference_zero = int((code == 0).nonzero()[0])
assert code[reference_zero] == 0 and int((library_code == 0).nonzero()[0]) == reference_zero
swiftlite.check_answer(my_zero_index, reference_zero)  # why: an exact zero keeps zeros zero after quantization

# %% [markdown]
# 3. **What if the weights were uniform?** NF4 is built for normally distributed weights. Predict
#    whether it still beats the evenly spaced 4-bit code on weights drawn uniformly from [-1, 1]
#    (True: NF4 has the smaller error), then run the answer cell to measure both errors.

# %%
uniform = torch.rand(128, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
my_nf4_wins_on_uniform = ...  # your prediction: True or False

# %% jupyter={"source_hidden": true}
nf4_error = nf4.reconstruction_error(uniform, 64, code="nf4")
even_error = nf4.reconstruction_error(uniform, 64, bits=4, code="linear")
print(f"uniform weights: NF4 {nf4_error:.4f}, evenly spaced {even_error:.4f}")
assert even_error < nf4_error  # evenly spaced values fit evenly spread weights better
swiftlite.check_answer(my_nf4_wins_on_uniform, bool(nf4_error < even_error))

# %% [markdown]
# ## Summary
#
# * QLoRA = LoRA with a quantized W0: the forward is `deq(Q(W0)) x + s·BAx`, A and B in full precision.
# * NF4: a 16-value code book at normal quantiles, one absmax per 64 weights, the absmax quantized again
#   (4.127 bits per weight); the hand-built version matches bitsandbytes' indices exactly.
# * Merging into a quantized base rounds ΔW (a warning says so); merge into the float32 base instead, where
#   the same adapter loads unchanged.
#
# Where this lives: [`swiftlite/tuners/lora/quantized.py`](../swiftlite/tuners/lora/quantized.py) (LoRA on
# bitsandbytes / torchao / hqq layers, merge), [`swiftlite/llm/quantized.py`](../swiftlite/llm/quantized.py)
# (`QuantizeArguments`, `quantize_model`, `prepare_model_for_kbit_training`, `compare_quantized`),
# [`swiftlite/llm/nf4.py`](../swiftlite/llm/nf4.py) (the NF4 reference),
# [`benchmarks/quantized.py`](../benchmarks/quantized.py).
#
# **Previous:** [`11_multimodal`](11_multimodal.ipynb) · **Next:** [`13_beyond_lora`](13_beyond_lora.ipynb)
