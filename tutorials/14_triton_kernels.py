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
# # 14 · Triton kernels for LoRA, checked on a CPU, and one batch serving many adapters
#
# Punica ([arXiv:2310.18547](https://arxiv.org/abs/2310.18547), Chen et al., MLSys 2024) batches the
# LoRA products of *different* adapters in one GPU kernel, so one copy of the base model serves many
# fine-tuned variants at once; vLLM's `bgmv_shrink` / `bgmv_expand` kernels descend from it.
#
# **Claim:** one batch that mixes adapters computes exactly what each adapter computes alone, and
# serving it that way is much faster than one model per adapter (Punica's abstract: **12× higher
# throughput** than state-of-the-art LLM serving systems on a fixed GPU cluster, adding 2 ms latency
# per token). Here we check the exactness on a real `LlamaForCausalLM`, check every Triton kernel of
# `swiftlite.kernels` against its PyTorch reference in Triton's *interpreter* on this CPU, and time
# mixed batches against looping over adapters in eager PyTorch on the CPU (no GPU timing exists yet).
#
# **Running time** on the project's 2-core CPU with one torch thread, measured 2026-12-04 while other
# jobs shared the machine: full mode 28 s as a plain script in the last run, 44 s and 62 s in two earlier runs (`jupyter nbconvert --execute`, kernel
# start included; 26 s and 40 s inside the notebook); quick mode (`SWIFTLITE_QUICK=1`, the zoo's quick `llama-tiny` cached) 35 s in
# `tests/test_notebooks.py`. The last section prints this run's time.
#
# **You will learn**
# * the LoRA backward derived by hand (dx, dA, dB with W0 frozen), and why the forward's kernel also
#   computes dx;
# * how a Triton kernel tiles its output, and how to run it on CPU tensors in Triton's interpreter;
# * how `model(..., adapter_names=[...])` gives every sample its own adapter in one forward.

# %%
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before swiftlite.kernels is imported: Triton reads it at @triton.jit

import time

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import transformers
from IPython.display import Markdown, display

import swiftlite
import swiftlite.zoo as zoo
from swiftlite import LoRAConfig, Swift, viz
from swiftlite.kernels import bgmv, dispatch, fused_lora, mixed_batch, use_triton
from swiftlite.settings import quick_mode

QUICK = quick_mode()  # CI smoke run: fewer timing rounds and shapes
ROUNDS = 3 if QUICK else 15  # timing rounds (median)
torch.set_num_threads(1)
torch.manual_seed(0)
started = time.perf_counter()
HAS_TRITON = fused_lora.triton is not None
print(f"swiftlite {swiftlite.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, "
      f"triton {fused_lora.triton.__version__ if HAS_TRITON else 'not installed'} "
      f"(interpreter: {fused_lora.KERNELS.interpreted}), {'quick' if QUICK else 'full'} mode")

# %% [markdown]
# ## 1. The equation, forward and backward
#
# A LoRA linear layer on rows $x \in \mathbb{R}^{M\times d_{in}}$, with $W_0 \in \mathbb{R}^{d_{out}\times d_{in}}$
# frozen, $A \in \mathbb{R}^{r\times d_{in}}$, $B \in \mathbb{R}^{d_{out}\times r}$ ($B = 0$ at init) and $s = \alpha / r$:
#
# $$ y = x W_0^\top + b + s\,(x A^\top) B^\top, \qquad z = x A^\top \in \mathbb{R}^{M\times r}. $$
#
# With $dy = \partial L / \partial y$, the chain rule gives (no $dW_0$: it is frozen)
#
# $$ dB = s\, dy^\top z, \qquad dz = s\, dy\, B, \qquad dA = dz^\top x, \qquad dx = dy\, W_0 + dz\, A. $$
#
# `y` and `dx` are both "a big matmul plus a rank-r correction" ($X W^\top + s' Z U^\top$), so one
# kernel serves both ([`fused_lora.py`](../swiftlite/kernels/fused_lora.py), where each formula is a
# comment above its line). **Predict:** the four formulas, typed out here, match autograd to float32
# rounding on a real `q_proj` of the zoo's `llama-tiny`.

# %%
lm, tok = zoo.load("llama-tiny")
lm.eval()
configs = {name: LoRAConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
           for name, r in [("math", 4), ("code", 8), ("chat", 2)]}  # random B: each adapter changes the output
model = Swift.prepare_model(lm, configs)
layer = model.base_model.model.layers[0].self_attn.q_proj  # a LoRALinear holding three adapters
A, B = layer.factors("math")
s, W0 = layer.scaling["math"], layer.base_layer.weight
x = torch.randn(20, W0.shape[1], requires_grad=True)
dy = torch.randn(20, W0.shape[0])
y = torch.nn.functional.linear(x, W0) + s * (x @ A.T) @ B.T  # y = x W0ᵀ + s (x Aᵀ) Bᵀ
auto_dx, auto_dA, auto_dB = torch.autograd.grad(y, (x, A, B), dy)

# %%
z = x.detach() @ A.T.detach()  # z = x Aᵀ          (M, r)
dB = s * dy.T @ z  # dB = s dyᵀ z                   (d_out, r)
dz = s * dy @ B.detach()  # dz = s dy B              (M, r)
dA = dz.T @ x.detach()  # dA = dzᵀ x                 (r, d_in)
dx = dy @ W0 + dz @ A.detach()  # dx = dy W0 + dz A  (M, d_in)
errors = {name: (mine - auto).abs().max().item() for name, mine, auto in
          [("dx", dx, auto_dx), ("dA", dA, auto_dA), ("dB", dB, auto_dB)]}
print({k: f"{v:.1e}" for k, v in errors.items()})
assert max(errors.values()) < 1e-5

# %% [markdown]
# ## 2. Where it attaches
#
# Three LoRA adapters sit side by side in every `q_proj` and `v_proj`; an ordinary forward runs the
# active ones, a mixed batch picks one per sample.

# %%
fig = viz.tuner_diagram(model)
viz.save_figure(fig, "14_triton_kernels_model")
plt.show()

# %% [markdown]
# ## 3. bgmv from scratch: every row gathers its own A and B
#
# Flatten the batch to rows (one per token); row $n$ carries the index $i_n$ of its adapter
# ($-1$: none). Stack the adapters' factors, zero-padded to the largest rank. Then
#
# $$ z_n = s_{i_n} A_{i_n} x_n \;\;(\text{shrink}), \qquad y_n = B_{i_n} z_n \;\;(\text{expand}). $$
#
# In plain PyTorch that is a gather and two batched products. **Predict:** it equals the package's
# `bgmv_lora_delta` (which, with Triton on, runs the kernels) to float32 rounding.

# %%
names = ["math", "__base__", "code", "chat", "math"]  # one adapter per sample
held = ["math", "code", "chat"]
A_stack, B_stack, scaling = bgmv.stack_adapters(layer, held)  # (L, r_max, d_in), (L, d_out, r_max), (L,)
xs = torch.randn(len(names), 6, W0.shape[1])  # (samples, tokens, d_in)
idx = torch.tensor([held.index(n) if n in held else -1 for n in names]).repeat_interleave(6)  # i_n per token
rows = xs.reshape(-1, xs.shape[-1])  # (N, d_in)
safe = idx.clamp(min=0)
z = torch.einsum("nrd,nd->nr", A_stack[safe], rows) * scaling[safe, None]  # z_n = s A x_n
y_scratch = torch.einsum("nor,nr->no", B_stack[safe], z) * (idx >= 0)[:, None]  # y_n = B z_n (0 if none)
with use_triton(True):
    y_package = bgmv.bgmv_lora_delta(layer, xs, names).reshape(-1, W0.shape[0])
print(f"max |scratch - package| = {(y_scratch - y_package).abs().max():.1e}")
torch.testing.assert_close(y_scratch, y_package, atol=1e-5, rtol=1e-5)

# %% [markdown]
# ## 4. The tiling picture
#
# `matmul_lowrank` computes $X W^\top + s' Z U^\top$ in tiles: program $(i, j)$ of the grid
# $(\lceil M/B_M\rceil, \lceil N/B_N\rceil)$ owns one $B_M\times B_N$ output tile, walks the inner
# dimension in strips of $B_K$ accumulating in float32 registers, adds the rank-r term and the bias
# to the same registers, and stores once. The edge programs hang over the matrix: masks stop their
# loads and stores there. Blocks are at least 16 (what `tl.dot` needs on a GPU).

# %%
M, N, BM, BN = 37, 70, 16, 32
owner = fused_lora.tile_map(M, N, BM, BN)
grid = (-(-M // BM), -(-N // BN))
fig, ax = plt.subplots(figsize=(7, 3.8))
ax.imshow(owner.numpy() % 2 + (owner.numpy() // grid[1]) % 2 * 0.5, cmap="Pastel1", aspect="auto")
for pid in range(grid[0] * grid[1]):  # each program's tile, drawn whole: the part outside the matrix is masked
    i, j = divmod(pid, grid[1])
    ax.add_patch(plt.Rectangle((j * BN - 0.5, i * BM - 0.5), BN, BM, fill=False, lw=1.5))
    ax.text(j * BN + BN / 2, i * BM + BM / 2, f"program {pid}\n(i={i}, j={j})", ha="center", va="center", fontsize=8)
ax.add_patch(plt.Rectangle((N - 0.5, -0.5), grid[1] * BN - N, grid[0] * BM, hatch="//", fill=False, ec="grey",
                           label="masked: outside the matrix"))
ax.add_patch(plt.Rectangle((-0.5, M - 0.5), N, grid[0] * BM - M, hatch="//", fill=False, ec="grey"))
ax.set_xlim(-0.5, grid[1] * BN - 0.5)
ax.set_ylim(grid[0] * BM - 0.5, -0.5)
ax.set_xlabel(f"output column (N = {N}, tiles of B_N = {BN})")
ax.set_ylabel(f"output row (M = {M}, B_M = {BM})")
ax.set_title(f"{grid[0]} × {grid[1]} = {grid[0] * grid[1]} programs, each writing one tile")
ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18))
viz.save_figure(fig, "14_triton_kernels_tiling")
plt.show()
padding = grid[0] * BM * grid[1] * BN - M * N
print(f"{padding} of {grid[0] * BM * grid[1] * BN} tile slots lie outside the matrix and are masked")

# %% [markdown]
# What one program of that grid computes for the forward $y = x W_0^\top + b + s\,(x A^\top) B^\top$
# of the `q_proj` above (its "math" adapter): the inner dimension in strips, the rank-r term and
# the bias added to the same float32 registers, one store.

# %%
BK, r_math, d_in = 32, A.shape[0], W0.shape[1]
fd = viz.FlowDiagram(f"matmul_lowrank, program (i, j): one {BM} × {BN} tile of y")
fd.box("x", f"x strip\n{BM} × {BK}", at=(0, 1.4))
fd.box("w", f"$W_0^T$ strip\n{BK} × {BN} (frozen)", at=(0, -0.2), kind="frozen")
fd.node("dot", "×", at=(2.6, 0.6))
fd.box("acc", f"acc += x · $W_0^T$ per strip\n{BM} × {BN} float32, {-(-d_in // BK)} strips of {d_in}", at=(5.5, 0.6))
fd.box("z", f"z = x $A^T$\n{BM} × {r_math}", at=(5.3, -1.4), kind="tuner")
fd.box("u", f"s · $B^T$\n{r_math} × {BN}", at=(5.3, -2.9), kind="tuner")
fd.node("zu", "×", at=(7.6, -1.4))
fd.node("sum", "+", at=(8.4, 0.6))
fd.box("bias", f"bias b ({BN})\nif the layer has one", at=(8.4, 2.2), kind="frozen")
fd.box("y", f"y tile {BM} × {BN}\n(masked store)", at=(11, 0.6))
for a, b, label in [("x", "dot", ""), ("w", "dot", ""), ("dot", "acc", ""), ("z", "zu", ""),
                    ("u", "zu", ""), ("zu", "sum", ""), ("acc", "sum", ""), ("bias", "sum", ""), ("sum", "y", "")]:
    fd.arrow(a, b, label=label)
viz.save_figure(fd.draw(), "14_triton_kernels_data_flow")

# %% [markdown]
# ## 5. The kernels in the interpreter, against their references
#
# With `TRITON_INTERPRET=1` (set in the first cell, before `swiftlite.kernels` was imported) Triton
# runs each program of the grid with numpy on CPU tensors: slow, but every load, store, mask and
# `tl.dot` is the GPU program's. **Predict:** float32 agrees to ~1e-6 relative; float16, whose
# inputs carry 11 bits, to ~1e-3 relative; in both the gradients (dx, dA, dB) too.

# %%
def kernel_errors(M, d_in, d_out, r, dtype):
    """Max |fused − reference| / max |reference| of y, dx, dA, dB (reference: float32 autograd)."""
    g = torch.Generator().manual_seed(M)
    x = torch.randn(M, d_in, generator=g).to(dtype).requires_grad_()
    W, b = (torch.randn(d_out, d_in, generator=g) * 0.2).to(dtype), torch.randn(d_out, generator=g).to(dtype)
    A = (torch.randn(r, d_in, generator=g) * 0.2).to(dtype).requires_grad_()
    B = torch.randn(d_out, r, generator=g).to(dtype).requires_grad_()
    dy = torch.randn(M, d_out, generator=g).to(dtype)
    with use_triton(True):
        y = fused_lora.lora_linear(x, W, b, A, B, 0.5)
        got = [y, *torch.autograd.grad(y, (x, A, B), dy)]
    leaves = [t.detach().float().requires_grad_() for t in (x, A, B)]
    y_ref = fused_lora.lora_linear_reference(leaves[0], W.float(), b.float(), leaves[1], leaves[2], 0.5)
    want = [y_ref, *torch.autograd.grad(y_ref, leaves, dy.float())]
    return [((a.float() - e).abs().max() / e.abs().max()).item() for a, e in zip(got, want)]


shapes = [(1, 5, 3, 1), (37, 45, 70, 5)] + ([] if QUICK else [(200, 64, 48, 8)])
table = [(shape, str(dtype).split(".")[-1], *kernel_errors(*shape, dtype))
         for shape in shapes for dtype in (torch.float32, torch.float16)]
display(Markdown("| (M, d_in, d_out, r) | dtype | y | dx | dA | dB |\n|---|---|---|---|---|---|\n" + "\n".join(
    f"| {shape} | {dt} | " + " | ".join(f"{e:.1e}" for e in errs) + " |" for shape, dt, *errs in table)))
worst = {dt: max(max(errs) for _, d, *errs in table if d == dt) for dt in ("float32", "float16")}
assert worst["float32"] < 1e-5 and worst["float16"] < 1e-2, worst

# %% [markdown]
# ## 6. One batch, several adapters
#
# `model(input_ids, adapter_names=[...])` gives sample $i$ the adapter $a_i$ in every LoRA layer:
# $h_i = W_0 x_i + s_{a_i} B_{a_i} A_{a_i} x_i$, with `"__base__"` for none. **Predict:** each row
# of one mixed forward equals the same prompt run with its adapter alone — exactly up to float
# rounding — and the Triton bgmv path gives the same logits as the plain PyTorch path.

# %%
model.eval()
prompts = torch.randint(0, lm.config.vocab_size, (8, 24), generator=torch.Generator().manual_seed(1))
batch_names = ["math", "code", "chat", "__base__"] * 2
mixed = model(input_ids=prompts, adapter_names=batch_names).logits


def alone(name, ids):
    if name == "__base__":
        with model.disable_adapter():
            return model(input_ids=ids).logits
    model.set_active_adapters([name])
    out = model(input_ids=ids).logits
    model.set_active_adapters(list(configs))
    return out


gap = max((mixed[i] - alone(n, prompts[i:i + 1])[0]).abs().max().item() for i, n in enumerate(batch_names))
with use_triton(True):
    mixed_bgmv = model(input_ids=prompts[:4], adapter_names=batch_names[:4]).logits  # in the interpreter: 4 rows
bgmv_gap = (mixed_bgmv - mixed[:4]).abs().max().item()
print(f"mixed vs alone: {gap:.1e}; bgmv (Triton) vs PyTorch: {bgmv_gap:.1e}")
assert gap < 1e-4 and bgmv_gap < 1e-4

# %% [markdown]
# Serving: one mixed forward against one forward per adapter (each on its own samples), in eager
# PyTorch on this CPU (the interpreter's speed says nothing). **Predict:** the loop pays the base
# model once per adapter, so its time grows with the number of adapters in the batch while the
# mixed forward's barely does.

# %%
def serve_times(n_adapters, samples=8, rounds=ROUNDS):
    """Median seconds of (one mixed forward, one forward per adapter) for `samples` prompts."""
    pool = ["math", "code", "chat", "__base__"]
    names = [pool[i % n_adapters] for i in range(samples)]
    ids = prompts[:samples]
    groups = {n: [i for i, m in enumerate(names) if m == n] for n in dict.fromkeys(names)}
    mixed_t, loop_t = [], []
    with torch.no_grad():
        for _ in range(rounds):
            t = time.perf_counter()
            model(input_ids=ids, adapter_names=names)
            mixed_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            for n, rows in groups.items():
                alone(n, ids[rows])
            loop_t.append(time.perf_counter() - t)
    return float(np.median(mixed_t)), float(np.median(loop_t))


counts = [1, 2, 4]
times = {k: serve_times(k) for k in counts}
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(counts, [times[k][0] * 1e3 for k in counts], "o-", label="one mixed forward")
ax.plot(counts, [times[k][1] * 1e3 for k in counts], "s-", label="one forward per adapter")
ax.set_xlabel("distinct adapters among 8 samples")
ax.set_ylabel("time per batch (ms, CPU, median)")
ax.set_ylim(bottom=0)
ax.set_xticks(counts)
ax.legend()
viz.save_figure(fig, "14_triton_kernels_serving")
plt.show()
speedup = times[4][1] / times[4][0]
print(f"4 adapters: loop / mixed = {speedup:.2f}×")
assert times[4][1] > times[1][1]  # the loop pays the base model once per adapter

# %% [markdown]
# `generate` takes the names too (greedy or beams); the keyword never reaches transformers' model.

# %%
gen_ids = prompts[:3, :6]
mixed_gen = model.generate(input_ids=gen_ids, attention_mask=torch.ones_like(gen_ids),
                           adapter_names=["math", "chat", "__base__"], max_new_tokens=5, do_sample=False)
model.set_active_adapters(["chat"])
chat_gen = model.generate(input_ids=gen_ids[1:2], attention_mask=torch.ones_like(gen_ids[1:2]),
                          max_new_tokens=5, do_sample=False)
model.set_active_adapters(list(configs))
print(tok.batch_decode(mixed_gen[:, 6:]))
assert torch.equal(mixed_gen[1:2], chat_gen)

# %% [markdown]
# ## 7. The paper's number beside ours
#
# Not like with like: Punica measures a serving system (scheduler, paged KV cache, its SGMV CUDA
# kernel) on GPUs with 7B–70B models; ours is one eager PyTorch forward on a CPU with a 2-layer
# model. What carries over is the mechanism: the base model runs once for all adapters.

# %%
display(Markdown(
    "| setting | what is compared | ratio |\n|---|---|---|\n"
    "| Punica (arXiv:2310.18547, abstract): GPU cluster, 7B–70B LLaMA | throughput, Punica vs serving systems | 12× |\n"
    f"| here: `llama-tiny`, CPU, 8 samples, 4 adapters | time, loop over adapters / one mixed forward | {speedup:.2f}× |"))

# %% [markdown]
# ## 8. Turn the knob: adapters in one batch
#
# Move the slider: the batch of 8 is spread over that many distinct adapters (one of them
# `"__base__"` at 4) and both ways are timed again.

# %%
def render(n_adapters):
    mixed_s, loop_s = serve_times(n_adapters, rounds=max(2, ROUNDS // 2))
    return f"{n_adapters} adapter(s): mixed {mixed_s * 1e3:.1f} ms, loop {loop_s * 1e3:.1f} ms, loop/mixed {loop_s / mixed_s:.2f}×"


viz.knob_widget(widgets.IntSlider(value=2, min=1, max=4, description="adapters"), render)

# %% [markdown]
# ## 9. What differs at tiny scale
#
# The kernels are the GPU programs, run here by Triton's interpreter; the timings are eager PyTorch
# on a shared CPU with a 2-layer model, so they show the mechanism (the base model runs once for all
# adapters), not a GPU speed-up. `benchmarks/kernels.py` measures the GPU ratios on a CUDA machine;
# no such run is quoted here. This run's numbers:

# %%
print(f"hand-derived backward vs autograd: {max(errors.values()):.1e}")
print(f"fused kernel vs reference (relative): float32 {worst['float32']:.1e}, float16 {worst['float16']:.1e}")
print(f"mixed batch vs each adapter alone: {gap:.1e}; bgmv (Triton) vs PyTorch: {bgmv_gap:.1e}")
print(f"4 adapters among 8 samples: loop / mixed = {speedup:.2f}× (CPU, eager; Punica: 12× throughput on GPUs)")
print(f"masked tile slots in the picture: {padding} of {grid[0] * BM * grid[1] * BN}")

# %% [markdown]
# ## Exercises
#
# 1. **The shape of dA.** For x of shape (M, d_in) = (20, 64) and r = 4, what is the shape of
#    $dA = dz^\top x$? Write it as a tuple in `my_dA_shape`.

# %%
my_dA_shape = ...  # e.g. (a, b)

# %% jupyter={"source_hidden": true}
reference_dA_shape = tuple(dA.shape)
assert reference_dA_shape == tuple(A.shape) == tuple(auto_dA.shape)  # one row per rank, one column per input feature
swiftlite.check_answer(my_dA_shape if my_dA_shape is ... else tuple(my_dA_shape), reference_dA_shape)

# %% [markdown]
# 2. **Count the programs.** How many programs does `matmul_lowrank` launch for an output of
#    M = 100 rows and N = 70 columns with B_M = 16 and B_N = 32? And how many of their tile slots
#    are masked (a second thought, not checked)?

# %%
my_programs = ...  # an int

# %% jupyter={"source_hidden": true}
reference_programs = int(fused_lora.tile_map(100, 70, 16, 32).max()) + 1
assert reference_programs == -(-100 // 16) * -(-70 // 32)  # row tiles × column tiles
swiftlite.check_answer(my_programs, reference_programs)

# %% [markdown]
# 3. **What if an adapter is missing from a layer?** Add an adapter `"mlp"` only on `down_proj`.
#    In a mixed batch, what does a sample named `"mlp"` get in `q_proj`: the base output, or an
#    error? Set `my_guess` to `"base"` or `"error"`.

# %%
my_guess = ...  # "base" or "error"

# %% jupyter={"source_hidden": true}
model.add_adapter("mlp", LoRAConfig(r=2, target_modules=["down_proj"], init_lora_weights=False))
model.eval()
q_in = torch.randn(1, 3, lm.config.hidden_size)
try:
    with mixed_batch.adapter_batch(model, ["mlp"]):
        q_out = layer(q_in)
    reference_guess = "base" if torch.allclose(q_out, layer.base_layer(q_in)) else "something else"
except Exception:  # noqa: BLE001 - the other possible answer
    reference_guess = "error"
model.delete_adapter("mlp")
assert reference_guess == "base"  # the layer leaves that sample's rows as the base computes them (PEFT too)
swiftlite.check_answer(my_guess, reference_guess)

# %% [markdown]
# 4. **Why before the import?** Triton decides interpreter or compiler when `@triton.jit` runs, i.e.
#    when `swiftlite/kernels/fused_lora.py` is imported. If you set `TRITON_INTERPRET=1` only after
#    that import, on a machine without a GPU, does the fused path run Triton? Set `my_runs_triton`.

# %%
my_runs_triton = ...  # True or False

# %% jupyter={"source_hidden": true}
saved = os.environ.pop("TRITON_INTERPRET", None)  # a kernel file imported while the variable was not set
try:
    late = dispatch.KernelFile("a_file_imported_before_the_variable")
finally:
    if saved is not None:
        os.environ["TRITON_INTERPRET"] = saved
reason = late.why_not(torch.ones(1))
print(reason)  # why: the kernels were defined for the compiler, which needs a GPU; the reference runs
reference_runs_triton = reason is None
assert torch.cuda.is_available() or not reference_runs_triton
swiftlite.check_answer(my_runs_triton, reference_runs_triton)

# %% [markdown]
# ## Summary
#
# * LoRA's backward is four small formulas; `dx = dy W0 + dz A` has the forward's shape, so one
#   tiled kernel (`matmul_lowrank`) adds the rank-r term to each output tile in registers, both ways.
# * Triton's interpreter runs the very same kernels on CPU tensors when `TRITON_INTERPRET=1` is set
#   before import: every kernel here is checked against its PyTorch reference on this machine.
# * `adapter_names=[...]` serves several LoRA adapters in one forward or `generate`, each sample
#   exactly as with its adapter alone; bgmv does the update for all rows in two launches.
#
# Where this lives: [`swiftlite/kernels/fused_lora.py`](../swiftlite/kernels/fused_lora.py),
# [`swiftlite/kernels/bgmv.py`](../swiftlite/kernels/bgmv.py),
# [`swiftlite/kernels/mixed_batch.py`](../swiftlite/kernels/mixed_batch.py),
# [`swiftlite/kernels/bottleneck.py`](../swiftlite/kernels/bottleneck.py) (the SC-Tuner),
# [`swiftlite/kernels/dispatch.py`](../swiftlite/kernels/dispatch.py) (the switch and the fallback),
# [`benchmarks/kernels.py`](../benchmarks/kernels.py) (GPU ratios, once a GPU runs it).

# %%
print(f"This run took {time.perf_counter() - started:.0f} s ({'quick' if QUICK else 'full'} mode).")

# %% [markdown]
# **Previous:** [`13_beyond_lora`](13_beyond_lora.ipynb) · **Next:** none (the last tutorial)
