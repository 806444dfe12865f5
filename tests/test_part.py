"""Part: the trained copy replaces the module when active, exact merge, ms-swift's structure and keys.

The conformance kit runs Part on every model family in tests/test_conformance.py."""
import os

import pytest
import torch
import torch.nn as nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from swiftlite import Swift
from swiftlite.testing import models
from swiftlite.tuners.part import PartConfig, PartLayer

def test_copy_replaces_module_and_merge_is_exact():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))
    W0 = base[2].weight.detach().clone()
    model = Swift.prepare_model(base, PartConfig(target_modules=["2"]))
    layer = model.base_model[2]
    assert isinstance(layer, PartLayer)
    copy_ = model.base_model.get_submodule("2._part_default")  # ms-swift's place for the copy
    assert copy_ is layer.copy_of("default") and copy_.activated
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
    # ms-swift saves a Part copy under the module's own names
    assert sorted(model.state_dict(adapter_name="default")) == ["head.bias", "head.weight"]


def test_out_of_order_unmerge_restores_exactly():
    torch.manual_seed(0)
    base = nn.Linear(3, 3)
    W0 = base.weight.detach().clone()
    model = Swift.prepare_model(nn.Sequential(base), {"a": PartConfig(target_modules=["0"]), "b": PartConfig(target_modules=["0"])})
    layer = model.base_model[0]
    with torch.no_grad():
        layer.copy_of("a").weight.add_(1.0)
        layer.copy_of("b").weight.add_(2.0)
    model.merge()  # "b" is merged last, so the base now holds b's copy (the one the forward used)
    torch.testing.assert_close(base.weight, W0 + 2.0)
    model.unmerge("b")
    torch.testing.assert_close(base.weight, W0 + 1.0)  # "a" is still merged
    model.unmerge("a")
    assert torch.equal(base.weight, W0)


def test_activated_mirrors_activation_and_delete_removes_the_submodule():
    model = Swift.prepare_model(models.mlp()[0], {"a": PartConfig(target_modules=["head"]),
                                                  "b": PartConfig(target_modules=["head"])})
    head = model.base_model.head
    assert [n for n, _ in head.named_children()] == ["base_layer", "_part_a", "_part_b"]
    model.set_active_adapters("a")
    assert head._part_a.activated and not head._part_b.activated
    model.delete_adapter("a")
    assert not hasattr(head, "_part_a") and head.adapter_names == ["b"]


def test_part_under_lora_copies_the_base_layer_and_lora_stays_on_top():
    """ms-swift puts the Part copy on the LoRA layer's base_layer: LoRA's branch adds to whichever copy runs."""
    from swiftlite.tuners import LoRAConfig

    base, inputs = models.mlp()
    model = Swift.prepare_model(base, {"lora": LoRAConfig(target_modules=["fc1"], init_lora_weights=False),
                                       "part": PartConfig(target_modules=["fc1"])})
    lora_layer = model.base_model.fc1
    part_layer = lora_layer.base_layer
    assert isinstance(part_layer, PartLayer) and type(part_layer.base_layer) is nn.Linear
    assert model.base_model.get_submodule("fc1.base_layer._part_part").activated
    assert {id(p) for p in model.adapter_parameters("part").values()} == {id(p) for p in part_layer.copy_of("part").parameters()}
    assert not any("lora" in k for k in model.adapter_parameters("part"))  # the copy holds no LoRA weights
    x = torch.randn(3, part_layer.base_layer.in_features, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        part_layer.copy_of("part").weight.add_(1.0)
        y_both = lora_layer(x)
        model.deactivate_adapter("part")
        y_lora_only = lora_layer(x)
        delta = x @ torch.ones_like(part_layer.base_layer.weight).T  # (W + 1) x − W x
    torch.testing.assert_close(y_both - y_lora_only, delta)
    model.delete_adapter("part")
    assert type(model.base_model.fc1.base_layer) is nn.Linear
