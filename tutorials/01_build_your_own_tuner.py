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
# # 01 · Build your own tuner
#
# A swiftlite tuner is three small pieces:
#
# 1. a **config** — a dataclass subclassing `SwiftConfig`, whose `swift_type` names the method;
# 2. a **layer** — a `TunerLayer` that wraps one frozen module and keeps each adapter's weights in
#    containers keyed by adapter name (listed in `adapter_attrs`);
# 3. a **tuner** — a `Tuner` subclass, registered with `@register_tuner`, saying which module
#    types it attaches to and whether it can merge.
#
# Everything else — `Swift.prepare_model`, save/load, several adapters, activation,
# `disable_adapter`, merge bookkeeping, `swiftlite.show` — comes from the core for free. Then the
# **conformance kit** `swiftlite.testing.check_tuner` checks that the new tuner keeps every
# promise of that API.
#
# Our example is SSF — *Scaling & Shifting Your Features: A New Baseline for Efficient Model
# Tuning* (Lian et al., NeurIPS 2022, [arXiv:2210.08823](https://arxiv.org/abs/2210.08823)). After a
# frozen operation it learns a per-channel scale $\gamma$ and shift $\beta$:
#
# $$ y = \gamma \odot \mathrm{OP}(x) + \beta, \qquad \gamma = \mathbf{1},\ \beta = \mathbf{0} \text{ at init.} $$
#
# When OP is a linear layer $W x + b$, SSF folds into it ("re-parameterisation"):
# $W' = \mathrm{diag}(\gamma)\, W$, $\; b' = \gamma \odot b + \beta$ — so it is mergeable.

# %%
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn

import swiftlite
from swiftlite import Swift, SwiftConfig, Tuner, TunerLayer, check_finite, register_tuner
from swiftlite.testing import CHECKS, check_tuner, models

QUICK = os.environ.get("SWIFTLITE_QUICK") == "1"  # nothing slow here; kept for uniformity
torch.manual_seed(0)

# %% [markdown]
# ## 1. The tuner, in about 40 lines

# %%
@dataclass
class SSFConfig(SwiftConfig):
    swift_type: str = field(default="MY_SSF")  # the key that finds this tuner again when loading
    target_modules: Any = None  # regex (full match) or list of nn.Linear names / dotted suffixes
    _invalid_examples: ClassVar[dict] = {"target_modules": None}  # the kit checks these are refused

    def validate(self) -> None:
        self._require(self.target_modules is not None, "target_modules", "is required, e.g. ['fc1', 'fc2']")


class SSFLinear(TunerLayer):
    adapter_attrs = ("ssf_scale", "ssf_shift")  # parameters: <module>.ssf_scale.<adapter>
    mergeable = True

    def __init__(self, base_layer: nn.Linear) -> None:
        super().__init__(base_layer)
        self.ssf_scale = nn.ParameterDict()  # γ per adapter, (d_out,)
        self.ssf_shift = nn.ParameterDict()  # β per adapter, (d_out,)

    def add_adapter(self, adapter_name: str, config: SSFConfig) -> None:
        device, dtype = self._base_device_dtype()
        d_out = self.base_layer.out_features
        self.ssf_scale[adapter_name] = nn.Parameter(torch.ones(d_out, device=device, dtype=dtype))  # γ = 1
        self.ssf_shift[adapter_name] = nn.Parameter(torch.zeros(d_out, device=device, dtype=dtype))  # β = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)  # (..., d_out)
        for name in self.active_adapters:  # this thread's active, unmerged adapters
            y = self.ssf_scale[name] * y + self.ssf_shift[name]  # y = γ ⊙ OP(x) + β
        return y

    def merge(self, adapter_name: str, safe_merge: bool = True) -> None:
        gamma, beta = self.ssf_scale[adapter_name].detach(), self.ssf_shift[adapter_name].detach()
        weight, bias = self.base_layer.weight, self.base_layer.bias
        if bias is None:
            raise ValueError("SSF merge folds β into the bias, but this nn.Linear has bias=False")
        new_weight, new_bias = gamma[:, None] * weight, gamma * bias + beta  # W' = diag(γ) W ; b' = γ ⊙ b + β
        if safe_merge:
            check_finite(new_weight, f"SSF adapter {adapter_name!r}")
        weight.data, bias.data = new_weight, new_bias

    def unmerge(self, adapter_name: str) -> None:
        gamma, beta = self.ssf_scale[adapter_name].detach(), self.ssf_shift[adapter_name].detach()
        weight, bias = self.base_layer.weight, self.base_layer.bias
        weight.data, bias.data = weight / gamma[:, None], (bias - beta) / gamma  # inverse of merge (γ ≠ 0)


@register_tuner
class SSFTuner(Tuner):
    config_class = SSFConfig
    layer_class = SSFLinear
    target_types = (nn.Linear,)  # the default match/inject wraps every matched nn.Linear
    identity_at_init = True
    mergeable = True

# %% [markdown]
# ## 2. Use it like any built-in tuner
#
# A tiny MLP from `swiftlite.testing.models` (the kit's model zoo) stands in for a pretrained
# model. `show` with the config previews the targets; after `prepare_model`, the two wrapped
# layers appear as `SSFLinear` with their adapter, and only $\gamma, \beta$ are trainable.

# %%
base, inputs = models.mlp()
config = SSFConfig(target_modules=["fc1", "fc2"])
swiftlite.show(base, config=config)

# %%
with torch.no_grad():
    y_base = base(**inputs)
model = Swift.prepare_model(base, config)
model.print_trainable_parameters()
with torch.no_grad():
    assert torch.equal(model(**inputs), y_base)  # γ = 1, β = 0: identity at init
swiftlite.show(model)

# %% [markdown]
# A unit test against the paper's equation, computed densely: give $\gamma, \beta$ random values
# and compare one wrapped layer with $\gamma \odot (W x + b) + \beta$.

# %%
layer = model.base_model.fc1
with torch.no_grad():
    layer.ssf_scale["default"].normal_(1.0, 0.2)
    layer.ssf_shift["default"].normal_(0.0, 0.2)
    x = torch.randn(3, 12)
    W, b = layer.base_layer.weight, layer.base_layer.bias
    reference = layer.ssf_scale["default"] * (x @ W.T + b) + layer.ssf_shift["default"]
    assert torch.allclose(layer(x), reference, atol=1e-6)
print("SSFLinear matches y = γ ⊙ (Wx + b) + β")

# %% [markdown]
# ## 3. The conformance kit
#
# `check_tuner(config_factory, model_factory)` builds fresh models and runs every promise of the
# API: identity at init, perturbed weights change the output, save → load into a fresh base,
# `disable_adapter`, training touches only tuner parameters, merge / unmerge /
# `merge_and_unload`, two independent adapters, delete, and that each `_invalid_examples` entry is
# refused with an error naming the field. Each promise is one function in `swiftlite.testing.CHECKS`
# and builds its own models, so one broken promise never hides another: `check_tuner` returns a
# report, or raises one `AssertionError` with a line `"<check>: ..."` per broken promise.

# %%
report = check_tuner(lambda: SSFConfig(target_modules=["fc1", "fc2"]), models.mlp)
assert report.passed == list(CHECKS) and not report.skipped
report

# %% [markdown]
# The same tuner on a real 🤗 ViT (its linear layers have biases, so merging works there too):

# %%
check_tuner(lambda: SSFConfig(target_modules=["q_proj", "v_proj", "fc1", "fc2"]), models.vit)

# %% [markdown]
# ## 4. A broken tuner fails a named check
#
# A classic slip: iterating over `self.adapter_names` (every adapter) instead of
# `self.active_adapters` in `forward`. Everything looks fine with one adapter — until someone
# calls `disable_adapter()`, merges or switches adapters. The kit names every promise that broke.

# %%
class ForgetfulSSFLinear(SSFLinear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        for name in self.adapter_names:  # BUG: ignores activation; should be self.active_adapters
            y = self.ssf_scale[name] * y + self.ssf_shift[name]
        return y


@dataclass
class ForgetfulSSFConfig(SSFConfig):
    swift_type: str = field(default="FORGETFUL_SSF")


@register_tuner
class ForgetfulSSFTuner(SSFTuner):
    config_class = ForgetfulSSFConfig
    layer_class = ForgetfulSSFLinear


try:
    check_tuner(lambda: ForgetfulSSFConfig(target_modules=["fc1", "fc2"]), models.mlp)
except AssertionError as err:
    failure = err
else:
    raise RuntimeError("the kit should have rejected the forgetful tuner")
print(f"AssertionError: {failure}")
broken = [line.split(":")[0] for line in str(failure).splitlines()]
assert broken == ["disable", "merge", "two_adapters"]

# %% [markdown]
# **Where next.** A tuner that ships with swiftlite lives in one file,
# `swiftlite/tuners/<method>.py`, with the paper and its equation in the docstring, and gets a row
# in the conformance table `tests/test_conformance.py`. The smallest real tuner to copy is
# `swiftlite/tuners/ia3.py` ((IA)³: one learned vector per layer, one layer class for Linear, Conv and
# GPT-2's Conv1D through a small axis table, mergeable); tuners that insert new blocks instead of
# wrapping a module (`llamapro.py`) override `Tuner.inject`.
