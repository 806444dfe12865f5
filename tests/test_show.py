"""swiftlite.show: folding, shapes, tuner marking, totals, config highlighting, renderings."""
import re

import pytest
import torch.nn as nn

import swiftlite
from swiftlite import LoRAConfig, Swift
from swiftlite.core import tuner_layers
from swiftlite.api.inspect import MATCH_MARK, compress_names
from swiftlite.testing import models


def _lines_with(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def test_identical_blocks_fold_into_a_range():
    model, _ = models.llama()
    text = str(swiftlite.show(model))
    assert "layers.0-1 (LlamaDecoderLayer) x2" in text
    assert not re.search(r"[│├└ ]0 \(LlamaDecoderLayer\)", text)
    # the folded subtree is printed once
    assert len(_lines_with(text, "q_proj (Linear)")) == 1

    unfolded = str(swiftlite.show(model, fold=False))
    assert "layers (ModuleList)" in unfolded
    assert "0 (LlamaDecoderLayer)" in unfolded and "1 (LlamaDecoderLayer)" in unfolded
    assert "0-1" not in unfolded
    assert len(_lines_with(unfolded, "q_proj (Linear)")) == 2


def test_blocks_that_differ_do_not_fold():
    model, _ = models.llama()
    model = Swift.prepare_model(model, LoRAConfig(target_modules=r"model\.layers\.0\.self_attn\.q_proj"))
    tree = swiftlite.show(model)
    text = str(tree)
    assert "0-1" not in text
    assert "0 (LlamaDecoderLayer)" in text and "1 (LlamaDecoderLayer)" in text
    assert tree.tuner_paths() == ["base_model.model.layers.0.self_attn.q_proj"]


def test_only_consecutive_equal_siblings_fold():
    blocks = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2), nn.Linear(4, 4), nn.Linear(4, 4)])
    text = str(swiftlite.show(nn.Sequential(blocks)))
    assert "0-1 (Linear) x2 weight:[4,4] bias:[4]" in text
    assert "2 (Linear) weight:[2,4] bias:[2]" in text
    assert "3-4 (Linear) x2 weight:[4,4] bias:[4]" in text
    folded = swiftlite.show(nn.Sequential(blocks))
    # every path is still accounted for under the folded lines
    paths = sorted(p for node in folded.root.walk() if node.type_name == "Linear" for p in node.paths)
    assert paths == [f"0.{i}" for i in range(5)]


def test_parameter_shapes_on_the_module_line():
    model, _ = models.mlp()
    text = str(swiftlite.show(model))
    assert "fc1 (Linear) weight:[24,12] bias:[24] (trainable)" in text
    assert "embed (Embedding) weight:[16,12] (trainable)" in text
    assert "norm (LayerNorm) weight:[24] bias:[24] (trainable)" in text
    llama, _ = models.llama()
    assert "q_proj (Linear) weight:[32,32] (trainable)" in str(swiftlite.show(llama))


def test_tuner_layers_adapters_and_trainable_are_marked():
    model, _ = models.mlp()
    model = Swift.prepare_model(model, LoRAConfig(target_modules=["fc1", "fc2"], r=2))
    model.add_adapter("second", LoRAConfig(target_modules=["fc1"], r=2))
    model.deactivate_adapter("second")
    tree = swiftlite.show(model)
    text = str(tree)
    assert tree.tuner_paths() == sorted("base_model." + n for n, _ in tuner_layers(model.base_model))
    assert "fc1 (LoRALinear) [tuner default:active second:inactive]" in text
    assert "fc2 (LoRALinear) [tuner default:active]" in text
    assert "[adapters: default:active second:inactive]" in text.splitlines()[0]
    assert "base_layer (Linear) weight:[24,12] bias:[24] (frozen)" in text
    assert "default (Linear) weight:[2,12] (trainable)" in text  # lora_A of fc1, two adapters: not joined
    assert "lora_A.default (Linear) weight:[2,24] (trainable)" in text  # fc2: one adapter, joined
    assert "head (Linear) weight:[4,24] bias:[4] (frozen)" in text

    model.set_active_adapters("default")
    model.merge()
    assert "fc2 (LoRALinear) [tuner default:merged]" in str(swiftlite.show(model))


def test_mixed_trainable_parameters_are_starred():
    layer = nn.Linear(3, 2)
    layer.bias.requires_grad_(False)
    text = str(swiftlite.show(nn.Sequential(layer)))
    assert "weight:[2,3]* bias:[2] (* trainable, rest frozen)" in text


def test_totals_equal_parameter_counts():
    model, _ = models.llama()
    model = Swift.prepare_model(model, LoRAConfig(target_modules=["q_proj", "v_proj"], r=4))
    totals = swiftlite.show(model).totals
    params = list(model.parameters())
    assert totals["total"] == sum(p.numel() for p in params)
    assert totals["trainable"] == sum(p.numel() for p in params if p.requires_grad)
    assert totals["tuner"] == sum(v.numel() for v in model.state_dict().values())
    assert totals["frozen"] == totals["total"] - totals["trainable"]
    assert totals["tuner"] > 0
    footer = str(swiftlite.show(model)).splitlines()[-1]
    pct = 100 * totals["tuner"] / totals["total"]
    assert f"total {totals['total']:,}" in footer and f"tuner {totals['tuner']:,} ({pct:.2f}%)" in footer


def test_tied_weights_counted_once_and_labelled():
    model, _ = models.gpt2()  # lm_head.weight is transformer.wte.weight
    assert model.lm_head.weight is model.transformer.wte.weight
    tree = swiftlite.show(model)
    unique = {id(p): p.numel() for p in model.parameters()}
    assert tree.totals["total"] == sum(unique.values())
    assert "lm_head (Linear) weight:[64,32](tied:transformer.wte.weight)" in str(tree)


@pytest.mark.parametrize("fold", [True, False])
def test_config_highlights_exactly_the_matched_modules(fold):
    model, _ = models.llama()
    config = LoRAConfig(target_modules=r".*layers\.1\.self_attn\.(q_proj|k_proj)|.*mlp\.up_proj")
    matched = config.matched_modules(model)
    tree = swiftlite.show(model, config=config, fold=fold)
    assert tree.matched == matched
    assert tree.marked_paths() == sorted(matched)
    text = str(tree)
    if not fold:  # one line per module: exactly one mark per matched module
        assert len(_lines_with(text, MATCH_MARK)) - 1 == len(matched)  # - the footer line
    *body, footer = text.splitlines()
    assert "0-1" not in "\n".join(body)  # layer 1 differs from layer 0 (its q/k are marked)
    assert footer == (
        f"LoRAConfig would attach to {len(matched)} modules (marked '{MATCH_MARK}'): "
        "model.layers.0-1.mlp.up_proj, model.layers.1.self_attn.q_proj, model.layers.1.self_attn.k_proj")
    assert not any(isinstance(m, swiftlite.TunerLayer) for m in model.modules())  # nothing applied


def test_config_on_a_swift_model_matches_its_base():
    model, _ = models.mlp()
    model = Swift.prepare_model(model, LoRAConfig(target_modules=["fc1"]))
    config = LoRAConfig(target_modules=["fc2", "head"])
    tree = swiftlite.show(model, config=config)
    assert tree.matched == ["fc2", "head"]
    assert tree.marked_paths() == ["fc2", "head"]
    assert len(_lines_with(str(tree), MATCH_MARK)) == 3


def test_max_depth_summarises_hidden_subtrees():
    model, _ = models.llama()
    model = Swift.prepare_model(model, LoRAConfig(target_modules=["q_proj"]))
    tree = swiftlite.show(model, max_depth=3)
    layers = model.base_model.model.layers
    n_sub = len(list(layers.modules())) - 1
    n_params = sum(p.numel() for p in layers.parameters())
    assert f"layers (ModuleList) ... {n_sub} submodules, {n_params:,} params, 2 tuner layers" in str(tree)
    assert max(len(line) - len(line.lstrip("│├└─ ")) for line in str(tree).splitlines()) <= 4 * 3
    with pytest.raises(ValueError, match="max_depth"):
        swiftlite.show(model, max_depth=-1)


def test_renderings_html_and_ansi():
    model, _ = models.mlp()
    model = Swift.prepare_model(model, LoRAConfig(target_modules=["fc1"]))
    tree = swiftlite.show(model, config=LoRAConfig(target_modules=["head"]))
    page = tree._repr_html_()
    assert page.count("<details") >= 2 and "<summary>" in page
    assert "LoRALinear" in page and "color:#a020a0" in page and "background:#fde68a" in page
    assert "&lt;&lt; match" in page  # escaped
    assert "\033[" not in str(tree) and "\033[" not in repr(tree)  # pytest's stdout is not a tty
    coloured = tree.to_text(color=True)
    assert "\033[1;35m" in coloured and re.sub(r"\033\[[0-9;]*m", "", coloured) == tree.to_text()


def test_errors_name_the_argument():
    with pytest.raises(TypeError, match="nn.Module"):
        swiftlite.show("not a model")
    model, _ = models.mlp()
    with pytest.raises(TypeError, match="config"):
        swiftlite.show(model, config={"target_modules": ["fc1"]})
    with pytest.raises(ValueError, match="target_modules"):
        swiftlite.show(model, config=LoRAConfig(target_modules=["no_such_layer"]))


def test_compress_names():
    names = ["a.0.q", "a.1.q", "a.3.q", "a.0.k", "head"]
    assert compress_names(names) == ["a.0-1,3.q", "a.0.k", "head"]
