"""The relatives (DiffFit, SCT, MoSA, binary adapters, Hydra, SHiRA): each method's own claim, checked
against a dense computation or the reference library. The shared promises (save/load, disable,
two adapters, merge == unmerged, ...) are tests/test_conformance.py's."""
import json
import os
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

from swiftlite import Swift
from swiftlite.testing import models
from swiftlite.tuners import (BinaryAdapterConfig, DiffFitConfig, HydraConfig, MoSAConfig, SCTConfig, ShiraConfig,
                              select_salient_channels)
from swiftlite.tuners.binary_adapter import CODE, binarize, checkpoint_bytes
from swiftlite.tuners.shira import random_mask_indices, set_scale


def _perturb(model, adapter="default", seed=0, std=0.2):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.adapter_parameters(adapter).values():
            p.add_(torch.randn(p.shape, generator=g) * std)


def _logits(model, inputs):
    model.eval()
    with torch.no_grad():
        out = model(**inputs)
    return getattr(out, "logits", out)


# ---- Hydra: W = W0 + s(Wp + Ws·W0) -------------------------------------------------------------
def test_hydra_reparameterisation_matches_the_formula_on_attention_and_mlp_projections():
    base, inputs = models.vit()
    model = Swift.prepare_model(base, HydraConfig(target_modules=["attention.o_proj", "mlp.fc2"]))
    _perturb(model)
    y = _logits(model, inputs)
    expected = {}
    for name in ("vit.layers.0.attention.o_proj", "vit.layers.1.mlp.fc2"):
        layer = model.base_model.get_submodule(name)
        w0, b0, s = layer.base_layer.weight.detach().clone(), layer.base_layer.bias.detach().clone(), layer.scale["default"]
        par, seq = layer.hydra_par["default"], layer.hydra_seq["default"]
        w_p, w_s = par.up.weight @ par.down.weight, seq.up.weight @ seq.down.weight
        c_p = par.up.weight @ par.down.bias + par.up.bias
        c_s = seq.up.weight @ seq.down.bias + seq.up.bias
        expected[name] = (w0 + s * (w_p + w_s @ w0), b0 + s * (w_s @ b0 + c_p + c_s))
        x = torch.randn(3, w0.shape[1])  # the layer alone: y0 + s·par(x) + s·seq(y0) is the merged affine map
        torch.testing.assert_close(layer(x), x @ expected[name][0].T + expected[name][1], atol=1e-5, rtol=1e-5)
    model.merge()
    for name, (w, b) in expected.items():
        layer = model.base_model.get_submodule(name)
        torch.testing.assert_close(layer.base_layer.weight, w.detach(), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(layer.base_layer.bias, b.detach(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(_logits(model, inputs), y, atol=1e-5, rtol=1e-5)  # merged == unmerged, whole model


# ---- DiffFit: γ folds into the branch's output projection --------------------------------------
def test_difffit_gamma_starts_at_one_and_folds_into_the_output_projection():
    base, inputs = models.vit()
    n_base = sum(p.numel() for p in base.parameters())
    model = Swift.prepare_model(base, DiffFitConfig(scale_modules=["attention.o_proj", "mlp.fc2"]))
    layer = model.base_model.get_submodule("vit.layers.0.attention.o_proj")
    assert layer.difffit_gamma["default"].item() == 1.0
    gammas = [n for n in model.adapter_parameters("default") if "difffit_gamma" in n]
    assert len(gammas) == 4  # one γ per residual branch: 2 blocks × (attention, MLP)
    assert sum(p.numel() for p in model.adapter_parameters("default").values()) < 0.1 * n_base
    _perturb(model)
    gamma, d_bias = layer.difffit_gamma["default"].item(), layer.difffit_bias["default"].detach().clone()
    w0, b0 = layer.base_layer.weight.detach().clone(), layer.base_layer.bias.detach().clone()
    y = _logits(model, inputs)
    model.merge()
    torch.testing.assert_close(layer.base_layer.weight, gamma * w0)  # W ← γ W
    torch.testing.assert_close(layer.base_layer.bias, gamma * (b0 + d_bias))  # b ← γ (b + Δb)
    torch.testing.assert_close(_logits(model, inputs), y, atol=1e-5, rtol=1e-5)
    model.unmerge()
    assert torch.equal(layer.base_layer.weight, w0)  # exactly back


# ---- MoSA: experts summed into one adapter, exactly ---------------------------------------------
def test_mosa_experts_stay_disjoint_and_their_sum_is_one_exact_adapter():
    base, inputs = models.vit()
    model = Swift.prepare_model(base, MoSAConfig(target_modules=r"vit\.layers\.\d+\.mlp", adapter_length=8))
    module = model.base_model.get_submodule("vit.layers.0.mlp").mosa["default"]
    assert module.mask_down.sum(0).eq(1).all() and module.mask_up.sum(0).eq(1).all()  # a partition: each entry once
    assert module.mask_down.flatten(1).sum(1).tolist() == [8 * 32 // 4] * 4  # equal shares
    optimizer = torch.optim.AdamW(model.create_optimizer_param_groups(lr=1e-2), lr=1e-2)
    model.train()
    torch.manual_seed(0)
    for _ in range(6):  # each step: one random down-expert and one random up-expert
        loss = model(**inputs).logits.pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    w_down, w_up = module.merged_experts()
    assert w_up.abs().sum() > 0  # training reached the up-experts
    for e in range(4):  # the merged adapter holds every expert unchanged on its own entries
        torch.testing.assert_close(w_down * module.mask_down[e], module.down_experts[e] * module.mask_down[e], rtol=0, atol=0)
    module.train()  # training: one random expert per matrix, drawn from torch's RNG like dropout
    x = torch.randn(2, 5, 32)
    torch.manual_seed(1)
    a, b = torch.randint(4, (2,)).tolist()
    torch.manual_seed(1)
    y_train = module(x)
    w_a, w_b = module.down_experts[a] * module.mask_down[a], module.up_experts[b] * module.mask_up[b]
    torch.testing.assert_close(y_train, 0.1 * (module.act(x @ w_a.T + module.down_bias) @ w_b.T + module.up_bias))
    # eval == a plain dense adapter (two nn.Linear) with the summed weights
    dense_down, dense_up = nn.Linear(32, 8), nn.Linear(8, 32)
    with torch.no_grad():
        dense_down.weight.copy_(w_down), dense_down.bias.copy_(module.down_bias)
        dense_up.weight.copy_(w_up), dense_up.bias.copy_(module.up_bias)
    module.eval()
    x = torch.randn(2, 5, 32)
    torch.testing.assert_close(module(x), 0.1 * dense_up(module.act(dense_down(x))), rtol=0, atol=1e-6)


# ---- 1-bit adapters: one bit per weight on disk ---------------------------------------------------
def test_binary_adapter_weights_take_two_values_and_the_file_packs_one_bit_each(tmp_path):
    base, inputs = models.vit()
    model = Swift.prepare_model(base, BinaryAdapterConfig(target_modules=r"vit\.layers\.\d+\.mlp", adapter_length=8))
    _perturb(model, std=0.05)
    params = model.adapter_parameters("default")
    for name, p in params.items():
        w_hat = binarize(p.detach())
        mu, sigma = p.mean(), p.std()
        levels = ((w_hat - mu) / sigma).round(decimals=4).unique()
        torch.testing.assert_close(levels, torch.tensor([-CODE, CODE]), msg=name)  # two values: μ ± 0.6745σ
    y = _logits(model, inputs)
    model.save_pretrained(str(tmp_path))
    saved = load_file(tmp_path / "default" / "adapter_model.safetensors")
    n_weights = sum(p.numel() for p in params.values())
    codes = {k: t for k, t in saved.items() if k.endswith(".codes")}
    assert len(codes) == len(params) == 4 and all(t.dtype == torch.uint8 for t in codes.values())
    assert sum(t.numel() for t in codes.values()) == sum(-(-p.numel() // 8) for p in params.values())  # 1 bit each
    sizes = checkpoint_bytes(saved)
    assert sizes["packed"] == n_weights // 8 + 4 * 2 * 4  # bits + (mean, std) in float32 per matrix
    assert sizes["float32"] == 4 * n_weights
    file_bytes = os.path.getsize(tmp_path / "default" / "adapter_model.safetensors")
    assert file_bytes < 4 * n_weights / 8 + 2048  # the file itself: packed tensors plus a small JSON header
    loaded = Swift.from_pretrained(models.vit()[0], str(tmp_path))
    torch.testing.assert_close(_logits(loaded, inputs), y, atol=1e-5, rtol=1e-5)
    for name, p in loaded.adapter_parameters("default").items():  # the loaded Ŵ is the saved Ŵ
        torch.testing.assert_close(binarize(p.detach()), binarize(params[name].detach()), atol=1e-6, rtol=1e-5)
    renamed = Swift.from_pretrained(models.vit()[0], str(tmp_path), adapter_name={"default": "bits"})
    renamed.set_active_adapters("bits")
    torch.testing.assert_close(_logits(renamed, inputs), y, atol=1e-5, rtol=1e-5)


def test_binary_adapter_gradient_passes_straight_through():
    w = torch.randn(6, 4, requires_grad=True)
    (binarize(w) * torch.arange(24.0).reshape(6, 4)).sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


# ---- SHiRA: PEFT's format, both ways --------------------------------------------------------------
def test_shira_mask_and_sparse_update_are_peft_s():
    from peft.tuners.shira.mask_functions import random_mask

    linear = nn.Linear(24, 12)
    for seed in (None, 3):
        rows, cols = random_mask_indices(12, 24, 2, seed)
        mask = random_mask(linear, 2, random_seed=seed)
        assert torch.equal(torch.stack(torch.where(mask == 1)), torch.stack([rows, cols]))
    base, inputs = models.mlp()
    model = Swift.prepare_model(base, ShiraConfig(target_modules=["fc2"], r=2, init_weights=False))
    layer = model.base_model.fc2
    delta = layer.delta_weight("default")
    assert int((delta != 0).sum()) == 2 * (24 + 24)  # r(m+n) entries
    assert torch.linalg.matrix_rank(delta) > 2  # sparse, yet higher rank than LoRA's r
    y1 = _logits(model, inputs)
    set_scale(model, "default", 0.5)
    x = torch.randn(3, 24)
    torch.testing.assert_close(layer(x), layer.base_layer(x) + 0.5 * x @ delta.T)
    assert not torch.allclose(_logits(model, inputs), y1)


def test_shira_checkpoint_loads_in_peft_and_peft_s_loads_here(tmp_path):
    import peft

    warnings.filterwarnings("ignore", message=".*hooks.*")
    base, inputs = models.llama()
    config = ShiraConfig(target_modules=["q_proj", "v_proj"], r=2, random_seed=11)
    model = Swift.prepare_model(base, config)
    _perturb(model)
    y = _logits(model, inputs)
    model.save_pretrained(str(tmp_path / "ours"), peft_format=True)
    assert json.load(open(tmp_path / "ours" / "adapter_config.json"))["peft_type"] == "SHIRA"
    model.save_pretrained(str(tmp_path / "swift"))
    Swift.save_to_peft_format(str(tmp_path / "swift"), str(tmp_path / "converted"))
    # the saved indices are what a load uses (as in PEFT), not a fresh draw from the config's seed
    from safetensors.torch import save_file

    path = tmp_path / "swift" / "default" / "adapter_model.safetensors"
    state = load_file(path)
    key = next(k for k in state if k.endswith("q_proj.shira_indices.default"))
    other = random_mask_indices(32, 32, 2, 99).to(torch.int32)
    save_file({**state, key: other}, path)
    tampered = Swift.from_pretrained(models.llama()[0], str(tmp_path / "swift"))
    layer = tampered.base_model.get_submodule(key.rsplit(".shira_indices", 1)[0])
    assert torch.equal(layer.shira_indices["default"], other.long())
    save_file(state, path)
    for folder in ("ours", "converted"):
        pm = peft.PeftModel.from_pretrained(models.llama()[0], str(tmp_path / folder))
        torch.testing.assert_close(_logits(pm, inputs), y, atol=1e-5, rtol=1e-5)
    # and PEFT's own save loads here
    pm = peft.get_peft_model(models.llama()[0], peft.ShiraConfig(r=2, target_modules=["q_proj", "v_proj"], random_seed=5,
                                                                 init_weights=False))
    pm.eval()
    y_peft = _logits(pm, inputs)
    pm.save_pretrained(str(tmp_path / "theirs"))
    ours = Swift.from_pretrained(models.llama()[0], str(tmp_path / "theirs"))
    assert ours.adapters["default"].random_seed == 5
    torch.testing.assert_close(_logits(ours, inputs), y_peft, atol=1e-5, rtol=1e-5)
    renamed = Swift.from_pretrained(models.llama()[0], str(tmp_path / "theirs"), adapter_name={"default": "sparse"})
    torch.testing.assert_close(_logits(renamed, inputs), y_peft, atol=1e-5, rtol=1e-5)
    ours.save_pretrained(str(tmp_path / "again"), peft_format=True)
    theirs, again = (load_file(tmp_path / d / "adapter_model.safetensors") for d in ("theirs", "again"))
    assert sorted(theirs) == sorted(again)
    assert all(torch.equal(theirs[k], again[k]) for k in theirs)


# ---- SCT: channels chosen from data, inspectable ------------------------------------------------
def _labelled_loader(n=12, batch_size=4):
    from datasets import Dataset
    from torch.utils.data import DataLoader

    g = torch.Generator().manual_seed(0)
    data = Dataset.from_dict({"pixel_values": torch.randn(n, 3, 16, 16, generator=g).numpy(),
                              "labels": [i % 3 for i in range(n)]}).with_format("torch")
    return DataLoader(data, batch_size=batch_size)


def test_sct_selection_is_the_class_averaged_channel_norm_and_is_saved_with_the_adapter(tmp_path):
    base, inputs = models.vit()
    loader = _labelled_loader()
    channels, scores = select_salient_channels(base, loader, r"vit\.layers\.\d+", top_k=4, return_scores=True)
    # dense reference: every example's tokens (CLS dropped), grouped by class
    feats = {0: [], 1: []}
    hooks = [base.vit.layers[i].register_forward_hook(lambda m, a, o, i=i: feats[i].append(o[0] if isinstance(o, tuple) else o))
             for i in (0, 1)]
    labels = []
    with torch.no_grad():
        for batch in loader:
            base(pixel_values=batch["pixel_values"])
            labels.append(batch["labels"])
    for h in hooks:
        h.remove()
    labels = torch.cat(labels)
    for i in (0, 1):
        h = torch.cat(feats[i])[:, 1:]  # (N, T-1, C)
        expected = torch.stack([h[labels == k].norm(dim=(0, 1)) for k in range(3)]).mean(0)
        torch.testing.assert_close(scores[f"vit.layers.{i}"], expected, atol=1e-4, rtol=1e-5)
        assert channels[f"vit.layers.{i}"] == sorted(expected.topk(4).indices.tolist())
    model = Swift.prepare_model(base, SCTConfig(target_modules=r"vit\.layers\.\d+", salient_channels=channels, top_k=4))
    trainable = sum(p.numel() for p in model.adapter_parameters("default").values())
    assert trainable == 2 * (4 * 4 + 4)  # one K×K linear (+ bias) per layer
    _perturb(model)
    h_in = torch.randn(2, 5, 32)
    layer = model.base_model.vit.layers[0]
    out, ref = layer(h_in), layer.base_layer(h_in)
    out, ref = (o[0] if isinstance(o, tuple) else o for o in (out, ref))
    others = [c for c in range(32) if c not in channels["vit.layers.0"]]
    torch.testing.assert_close(out[..., others], ref[..., others])  # only the salient channels change
    model.save_pretrained(str(tmp_path))
    saved = json.load(open(tmp_path / "default" / "adapter_config.json"))
    assert saved["salient_channels"] == channels  # the choice travels with the adapter, readable
    with pytest.raises(ValueError, match="salient_channels"):
        SCTConfig(target_modules=r"vit\.layers\.\d+", top_k=4)
    fresh, _ = models.vit()
    with pytest.raises(ValueError, match=r"salient_channels: channel 40 does not exist.*32 channels"):
        Swift.prepare_model(fresh, SCTConfig(target_modules=r"vit\.layers\.\d+", salient_channels=[1, 2, 3, 40], top_k=4))
    assert not any(n.endswith(".sct") for n, _ in fresh.named_modules())  # refused before anything changed
