"""Part: the trained copy replaces the module when active, exact merge, conformance kit."""
import os

import pytest
import torch
import torch.nn as nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from swiftlite import Swift
from swiftlite.testing import check_tuner, models
from swiftlite.tuners.part import PartConfig, PartLayer

KIT_CASES = {
    "mlp": lambda: PartConfig(target_modules=["fc2"]),
    "cnn": lambda: PartConfig(target_modules=["conv2", "norm"]),
    "bert": lambda: PartConfig(target_modules=r"encoder\.layer\.1\.output"),
    "llama": lambda: PartConfig(target_modules=r"model\.layers\.1"),  # a whole decoder layer
    "gpt2": lambda: PartConfig(target_modules=["h.1.mlp"]),
    "vit": lambda: PartConfig(target_modules=["classifier", "vit.layernorm"]),
    "unet": lambda: PartConfig(target_modules=["conv_out"]),
}


@pytest.mark.parametrize("model_name", [pytest.param(n, marks=pytest.mark.slow) if n == "unet" else n for n in KIT_CASES])
def test_conformance(model_name, tmp_path):
    report = check_tuner(KIT_CASES[model_name], models.MODELS[model_name], tmp_path=str(tmp_path))
    assert {"identity", "merge", "train"} <= set(report.passed)


def test_copy_replaces_module_and_merge_is_exact():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))
    W0 = base[2].weight.detach().clone()
    model = Swift.prepare_model(base, PartConfig(target_modules=["2"]))
    layer = model.base_model[2]
    assert isinstance(layer, PartLayer)
    copy_ = layer.part["default"]
    assert copy_ is not layer.base_layer and torch.equal(copy_.weight, W0)  # θ' = θ at init
    assert copy_.weight.requires_grad and not layer.base_layer.weight.requires_grad
    with torch.no_grad():
        copy_.weight.add_(1.0)
    x = torch.randn(3, 4)
    h = torch.tanh(base[0](x))
    # f_part(x) = f_θ'(x)
    torch.testing.assert_close(model(x), h @ (W0 + 1.0).T + base[2].base_layer.bias)
    model.merge()
    torch.testing.assert_close(layer.base_layer.weight, W0 + 1.0)
    torch.testing.assert_close(model(x), h @ (W0 + 1.0).T + base[2].base_layer.bias)
    model.unmerge()
    assert torch.equal(layer.base_layer.weight, W0)
    unloaded = model.merge_and_unload()
    assert isinstance(unloaded[2], nn.Linear) and torch.equal(unloaded[2].weight, W0 + 1.0)


def test_nested_targets_copy_the_outer_module_once():
    base, _ = models.llama()
    model = Swift.prepare_model(base, PartConfig(target_modules=r"model\.layers\.1(\.mlp)?"))
    layers = [n for n, m in model.base_model.named_modules() if isinstance(m, PartLayer)]
    assert layers == ["model.layers.1"]
    n_block = sum(p.numel() for p in model.base_model.model.layers[1].base_layer.parameters())
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == n_block


def test_state_dict_keys_name_the_copy():
    model = Swift.prepare_model(models.mlp()[0], PartConfig(target_modules=["head"]))
    assert sorted(model.state_dict(adapter_name="default")) == ["head.part.default.bias", "head.part.default.weight"]


def test_out_of_order_unmerge_restores_exactly():
    torch.manual_seed(0)
    base = nn.Linear(3, 3)
    W0 = base.weight.detach().clone()
    model = Swift.prepare_model(nn.Sequential(base), {"a": PartConfig(target_modules=["0"]), "b": PartConfig(target_modules=["0"])})
    layer = model.base_model[0]
    with torch.no_grad():
        layer.part["a"].weight.add_(1.0)
        layer.part["b"].weight.add_(2.0)
    model.merge()  # "b" is merged last, so the base now holds b's copy (the one the forward used)
    torch.testing.assert_close(base.weight, W0 + 2.0)
    model.unmerge("b")
    torch.testing.assert_close(base.weight, W0 + 1.0)  # "a" is still merged
    model.unmerge("a")
    assert torch.equal(base.weight, W0)
