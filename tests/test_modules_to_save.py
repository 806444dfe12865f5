"""modules_to_save and Part: one copy mechanism; PEFT's matching, wrapper shape and checkpoint names."""
import os

import pytest
import torch
import torch.nn as nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from swiftlite import Swift
from swiftlite.core.modules_to_save import ModuleCopyLayer, ModulesToSaveLayer
from swiftlite.testing import models, output_tensor
from swiftlite.tuners import LoRAConfig, PartConfig
from swiftlite.tuners.part import PartLayer


@pytest.mark.parametrize("to_save", [["head"], ["lm_head"], ["embed_tokens", "norm"], ["mlp.down_proj"]])
def test_names_match_like_peft(to_save):
    peft = pytest.importorskip("peft")
    ours = Swift.prepare_model(models.llama()[0], LoRAConfig(target_modules=["q_proj"], modules_to_save=to_save))
    theirs = peft.get_peft_model(models.llama()[0], peft.LoraConfig(target_modules=["q_proj"], modules_to_save=to_save))
    wrapped = sorted(n for n, m in ours.base_model.named_modules() if isinstance(m, ModulesToSaveLayer))
    expected = sorted(n[len("base_model.model."):] for n, m in theirs.named_modules()
                      if type(m).__name__ == "ModulesToSaveWrapper")
    assert wrapped == expected and wrapped  # e.g. "head" is a plain suffix of "lm_head"


def test_wrapper_has_peft_shape_and_saves_under_the_module_names(tmp_path):
    base, inputs = models.mlp()
    head = base.head
    model = Swift.prepare_model(base, {n: LoRAConfig(target_modules=["fc1"], modules_to_save=["head"]) for n in ("a", "b")})
    layer = model.base_model.head
    assert layer.original_module is head and isinstance(layer.modules_to_save, nn.ModuleDict)
    assert sorted(layer.modules_to_save) == ["a", "b"] and layer.modules_to_save["a"] is not head
    model.set_active_adapters("a")
    assert layer.active_adapter == "a"
    model.set_active_adapters("b")
    assert layer.active_adapter == "b"
    with model.disable_adapter():
        assert layer.active_adapter is None
    assert sorted(k for k in model.state_dict(adapter_name="b") if k.startswith("head")) == ["head.bias", "head.weight"]

    with torch.no_grad():
        layer.modules_to_save["b"].bias.add_(1.0)
    y = output_tensor(model(**inputs))
    model.save_pretrained(str(tmp_path), adapter_name="b")
    loaded = Swift.from_pretrained(models.mlp()[0], str(tmp_path))
    torch.testing.assert_close(output_tensor(loaded(**inputs)), y)
    torch.testing.assert_close(loaded.base_model.head.modules_to_save["b"].bias, head.bias + 1.0)


@pytest.mark.parametrize("config", [LoRAConfig(target_modules=["fc1"], modules_to_save=["head"]),
                                    PartConfig(target_modules=["head"])], ids=["modules_to_save", "part"])
def test_safe_merge_refuses_nan_for_both_names(config):
    model = Swift.prepare_model(models.mlp()[0], config)
    layer = model.base_model.head
    assert isinstance(layer, ModuleCopyLayer)
    before = layer.base_layer.weight.detach().clone()
    with torch.no_grad():
        layer.copy_of("default").weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model.merge(safe_merge=True)
    assert torch.equal(layer.base_layer.weight, before) and not layer.merged_adapters
    model.merge(safe_merge=False)  # asked for: the copy is written as it is
    assert torch.isnan(layer.base_layer.weight[0, 0])


def test_part_and_modules_to_save_are_one_mechanism():
    assert issubclass(PartLayer, ModuleCopyLayer) and issubclass(ModulesToSaveLayer, ModuleCopyLayer)
    own = {name for cls in (PartLayer, ModulesToSaveLayer) for name in vars(cls)}
    assert not own & {"forward", "merge", "unmerge", "add_adapter", "adapter_parameters"}  # only storage differs
