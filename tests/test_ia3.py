"""(IA)^3: against the paper's equation computed densely, against PEFT's IA3, and the conformance kit."""
import os

import pytest
import torch
import torch.nn as nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from swiftlite import Swift
from swiftlite.testing import check_tuner, models, output_tensor
from swiftlite.tuners.ia3 import IA3Config, IA3Layer

KIT_CASES = {
    "mlp": lambda: IA3Config(target_modules=["fc1", "fc2"], feedforward_modules=["fc2"]),
    "cnn": lambda: IA3Config(target_modules=["conv1", "conv2"], feedforward_modules=["conv2"]),
    "bert": lambda: IA3Config(target_modules=r".*(key|value|layer\.\d+\.output\.dense)",
                              feedforward_modules=r".*layer\.\d+\.output\.dense"),
    "llama": lambda: IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"]),
    "gpt2": lambda: IA3Config(target_modules=["c_attn", "mlp.c_proj"], feedforward_modules=["mlp.c_proj"]),
    "vit": lambda: IA3Config(target_modules=["k_proj", "v_proj", "mlp.fc2"], feedforward_modules=["mlp.fc2"]),
    "unet": lambda: IA3Config(target_modules=r".*attn\d\.(to_k|to_v)|.*ff\.net\.2", feedforward_modules=r".*ff\.net\.2"),
}


@pytest.mark.parametrize("model_name", [pytest.param(n, marks=pytest.mark.slow) if n == "unet" else n for n in KIT_CASES])
def test_conformance(model_name, tmp_path):
    report = check_tuner(KIT_CASES[model_name], models.MODELS[model_name], tmp_path=str(tmp_path))
    assert "identity" in report.passed and "merge" in report.passed


def test_dense_equation_linear():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))
    x = torch.randn(3, 6)
    W1, b1, W2, b2 = (t.detach().clone() for t in (base[0].weight, base[0].bias, base[2].weight, base[2].bias))
    model = Swift.prepare_model(base, IA3Config(target_modules=["0", "2"], feedforward_modules=["2"], init_ia3_weights=False))
    l_out, l_ff = model.base_model[0].ia3_l["default"], model.base_model[2].ia3_l["default"]
    assert l_out.shape == (8,) and l_ff.shape == (8,)
    # h = l_out ⊙ (W1 x + b1);  y = W2 (l_ff ⊙ relu(h)) + b2
    h = l_out * (x @ W1.T + b1)
    expected = (l_ff * torch.relu(h)) @ W2.T + b2
    torch.testing.assert_close(model(x), expected)


def test_init_is_ones_and_conv_channels():
    model = Swift.prepare_model(models.cnn()[0], IA3Config(target_modules=["conv1", "conv2"], feedforward_modules=["conv2"]))
    layer = model.base_model.conv1
    assert isinstance(layer, IA3Layer)
    assert torch.equal(layer.ia3_l["default"], torch.ones(8))
    with torch.no_grad():
        layer.ia3_l["default"].copy_(torch.arange(1.0, 9.0))
    x = torch.randn(1, 3, 4, 4)
    expected = layer.base_layer(x) * torch.arange(1.0, 9.0).view(1, 8, 1, 1)
    torch.testing.assert_close(layer(x), expected)


def _copy_vectors_to_peft(swift_model, peft_model):
    """Give PEFT's ia3_l (shape (d_out, 1) or (1, d_in)) the same values as ours (shape (d,))."""
    ours = swift_model.state_dict(adapter_name="default")
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "ia3_l" in name:
                key = name.removeprefix("base_model.model.")  # same module path and attribute names as PEFT
                p.copy_(ours[key].view_as(p))


@pytest.mark.parametrize("model_name, targets, ff", [
    ("llama", ["k_proj", "v_proj", "down_proj"], ["down_proj"]),
    ("gpt2", ["c_attn", "mlp.c_proj"], ["mlp.c_proj"]),
])
def test_matches_peft(model_name, targets, ff):
    import peft

    torch.manual_seed(0)
    base, inputs = models.MODELS[model_name]()
    peft_model = peft.get_peft_model(models.MODELS[model_name]()[0],
                                     peft.IA3Config(target_modules=targets, feedforward_modules=ff))
    model = Swift.prepare_model(base, IA3Config(target_modules=targets, feedforward_modules=ff, init_ia3_weights=False))
    _copy_vectors_to_peft(model, peft_model)
    n_peft = sum(p.numel() for n, p in peft_model.named_parameters() if "ia3_l" in n)
    n_ours = sum(p.numel() for p in model.state_dict(adapter_name="default").values())
    assert n_peft == n_ours > 0
    with torch.no_grad():
        y_ours = output_tensor(model(**inputs))
        y_peft = output_tensor(peft_model(**inputs))
        assert (y_ours - output_tensor(models.MODELS[model_name]()[0](**inputs))).abs().max() > 1e-4
        torch.testing.assert_close(y_ours, y_peft, atol=1e-5, rtol=1e-5)
        # Merged weights agree too (PEFT folds the same rows/columns).
        model.merge()
        peft_model.merge_adapter()
        torch.testing.assert_close(output_tensor(model(**inputs)), output_tensor(peft_model(**inputs)), atol=1e-5, rtol=1e-5)


def test_feedforward_must_be_subset_and_zero_vector_refuses_merge():
    with pytest.raises(ValueError, match="feedforward_modules"):
        IA3Config(target_modules=["k_proj"], feedforward_modules=["down_proj"])
    base, inputs = models.mlp()
    model = Swift.prepare_model(base, IA3Config(target_modules=["fc1"]))
    with torch.no_grad():
        model.base_model.fc1.ia3_l["default"][0] = 0.0
    before = model.base_model.fc1.base_layer.weight.detach().clone()
    with pytest.raises(ValueError, match="zero entries"):
        model.merge()
    assert torch.equal(model.base_model.fc1.base_layer.weight, before)


def test_refuses_to_stack_on_another_tuner():
    from swiftlite.tuners import LoRAConfig

    model = Swift.prepare_model(models.mlp()[0], LoRAConfig(target_modules=["fc1"]))
    with pytest.raises(ValueError, match="target_modules.*wrapped"):
        Swift.prepare_model(model, {"ia3": IA3Config(target_modules=["fc1"])})
    assert list(model.adapters) == ["default"]
