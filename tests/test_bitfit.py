"""BitFit / LayerNorm tuning: against dense references and the conformance kit."""
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from swiftlite import Swift
from swiftlite.testing import check_tuner, models
from swiftlite.tuners.bitfit import BitFitConfig, BitFitLayer

LLAMA_LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
KIT_CASES = {
    "mlp": lambda: BitFitConfig(),
    "mlp-norm": lambda: BitFitConfig(mode="norm"),
    "cnn": lambda: BitFitConfig(),
    "cnn-norm": lambda: BitFitConfig(mode="norm"),
    "bert": lambda: BitFitConfig(),
    "llama": lambda: BitFitConfig(target_modules=LLAMA_LINEARS),  # bias-free: new zero-init biases
    "llama-norm": lambda: BitFitConfig(mode="norm"),  # RMSNorm γ
    "gpt2": lambda: BitFitConfig(),
    "vit": lambda: BitFitConfig(),
    "unet": lambda: BitFitConfig(),
}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c == "unet" else c for c in KIT_CASES])
def test_conformance(case, tmp_path):
    report = check_tuner(KIT_CASES[case], models.MODELS[case.split("-")[0]], tmp_path=str(tmp_path))
    assert {"identity", "merge", "train"} <= set(report.passed)


def test_linear_bias_delta_matches_dense():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(5, 7), nn.Linear(7, 3, bias=False))
    W0, b0, W1 = base[0].weight.detach().clone(), base[0].bias.detach().clone(), base[1].weight.detach().clone()
    model = Swift.prepare_model(base, BitFitConfig(target_modules=["0", "1"]))
    d0, d1 = model.base_model[0].bitfit_bias["default"], model.base_model[1].bitfit_bias["default"]
    assert torch.equal(d0, torch.zeros(7)) and torch.equal(d1, torch.zeros(3))
    with torch.no_grad():
        d0.normal_()
        d1.normal_()
    x = torch.randn(4, 5)
    # h = W x + (b + Δb); the bias-free layer gets W x + Δb
    expected = (x @ W0.T + b0 + d0) @ W1.T + d1
    torch.testing.assert_close(model(x), expected)
    # merging creates the missing bias, unmerging removes it again
    model.merge()
    assert model.base_model[1].base_layer.bias is not None
    torch.testing.assert_close(model(x), expected)
    model.unmerge()
    assert model.base_model[1].base_layer.bias is None
    torch.testing.assert_close(model.base_model[0].base_layer.bias, b0)


def test_default_targets_every_bias_and_only_biases():
    base, _ = models.bert()
    n_bias = sum(p.numel() for n, p in base.named_parameters() if n.endswith(".bias"))
    model = Swift.prepare_model(base, BitFitConfig())
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert sum(p.numel() for p in trainable.values()) == n_bias
    assert all(".bitfit_bias.default" in n for n in trainable)


def test_bias_free_model_needs_explicit_targets():
    with pytest.raises(ValueError, match="q_proj"):
        Swift.prepare_model(models.llama()[0], BitFitConfig())


def test_layernorm_and_groupnorm_tuning_match_functional():
    torch.manual_seed(0)
    ln, gn = nn.LayerNorm(6), nn.GroupNorm(2, 4)
    for norm, x, ref in (
        (ln, torch.randn(3, 6), lambda x, w, b: F.layer_norm(x, (6,), w, b, ln.eps)),
        (gn, torch.randn(2, 4, 3, 3), lambda x, w, b: F.group_norm(x, 2, w, b, gn.eps)),
    ):
        with torch.no_grad():
            norm.weight.normal_()
            norm.bias.normal_()
        w0, b0 = norm.weight.detach().clone(), norm.bias.detach().clone()
        layer = BitFitLayer(norm)
        layer.add_adapter("default", BitFitConfig(mode="norm"))
        layer.set_adapter_active("default", True)
        with torch.no_grad():
            layer.bitfit_weight["default"].normal_()
            layer.bitfit_bias["default"].normal_()
        dw, db = layer.bitfit_weight["default"], layer.bitfit_bias["default"]
        # y = (γ + Δγ) ⊙ x̂ + (β + Δβ)
        torch.testing.assert_close(layer(x), ref(x, w0 + dw, b0 + db))


def test_llama_rmsnorm_tuning_matches_manual():
    base, inputs = models.llama()
    model = Swift.prepare_model(base, BitFitConfig(mode="norm"))
    layer = model.base_model.model.norm
    assert isinstance(layer, BitFitLayer) and "default" not in layer.bitfit_bias  # RMSNorm has no β
    with torch.no_grad():
        layer.bitfit_weight["default"].normal_()
    x = torch.randn(2, 3, 32)
    g = layer.base_layer.weight + layer.bitfit_weight["default"]
    expected = g * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + layer.base_layer.variance_epsilon))
    torch.testing.assert_close(layer(x), expected)


def test_invalid_mode_names_field():
    with pytest.raises(ValueError, match="mode"):
        BitFitConfig(mode="weights")


def test_stacks_on_lora_and_merges_exactly():
    from swiftlite.tuners import LoRAConfig

    base, inputs = models.mlp()
    model = Swift.prepare_model(base, LoRAConfig(target_modules=["fc1"], init_lora_weights=False))
    Swift.prepare_model(model, {"bias": BitFitConfig(target_modules=["fc1"])})
    with torch.no_grad():
        model.base_model.fc1.bitfit_bias["bias"].normal_()
        y = model(**inputs)
        model.merge()
        torch.testing.assert_close(model(**inputs), y)
        model.unmerge()
        torch.testing.assert_close(model(**inputs), y)


def test_created_bias_survives_out_of_order_unmerge():
    torch.manual_seed(0)
    base = nn.Linear(4, 3, bias=False)
    model = Swift.prepare_model(nn.Sequential(base), {"a": BitFitConfig(target_modules=["0"]), "b": BitFitConfig(target_modules=["0"])})
    layer = model.base_model[0]
    with torch.no_grad():
        layer.bitfit_bias["a"].normal_()
        layer.bitfit_bias["b"].normal_()
    x = torch.randn(2, 4)
    y = model(x)
    model.merge()
    model.unmerge("a")  # "a" created the bias, "b" is still merged into it
    torch.testing.assert_close(model(x), y)
    model.unmerge("b")
    assert base.bias is None
    torch.testing.assert_close(model(x), y)
