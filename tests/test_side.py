"""Side-Tuning: the blend σ(α)·B(x) + (1 − σ(α))·S(x) against a dense computation, and the conformance kit."""
import os

import pytest
import torch
import torch.nn as nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from swiftlite import Swift
from swiftlite.testing import check_tuner, models
from swiftlite.tuners.side import FCN4, SideConfig, SideLayer, SideTuner

KIT_CASES = {
    "mlp": lambda: SideConfig(dim=24, target_modules=["fc2"], side_module_name="mlp"),
    "cnn": lambda: SideConfig(dim=8, target_modules=["conv2"], side_module_name="conv"),
    "bert": lambda: SideConfig(dim=32, target_modules=r"encoder\.layer\.\d+", side_module_name="mlp"),
    "llama": lambda: SideConfig(dim=32, target_modules=r"model\.layers\.\d+", side_module_name="mlp"),
    "gpt2": lambda: SideConfig(dim=32, target_modules=r"transformer\.h\.\d+", side_module_name="mlp"),
    "vit": lambda: SideConfig(dim=32, target_modules=r"vit\.layers\.\d+\.mlp", side_module_name="mlp"),
    "unet": lambda: SideConfig(dim=32, target_modules=["mid_block"], side_module_name="conv"),
}


@pytest.mark.parametrize("model_name", [pytest.param(n, marks=pytest.mark.slow) if n == "unet" else n for n in KIT_CASES])
def test_conformance(model_name, tmp_path):
    report = check_tuner(KIT_CASES[model_name], models.MODELS[model_name], tmp_path=str(tmp_path))
    assert "identity" in report.skipped and "merge" in report.skipped
    assert {"perturbed", "save_load", "train", "two_adapters", "delete"} <= set(report.passed)


def test_blend_matches_dense_and_is_half_half_at_init():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 5), nn.Linear(5, 4))
    model = Swift.prepare_model(base, SideConfig(dim=4, target_modules=["1"], side_module_name="mlp", side_in_dim=5))
    layer = model.base_model[1]
    assert isinstance(layer, SideLayer) and layer.side_default.alpha.item() == 0.0
    x = torch.randn(3, 6)
    h = base[0](x)
    B, S = layer.base_layer(h), layer.side_default.side_net(h)
    torch.testing.assert_close(model(x), 0.5 * B + 0.5 * S)  # σ(0) = ½
    with torch.no_grad():
        layer.side_default.alpha.fill_(1.3)
    a = torch.sigmoid(torch.tensor(1.3))
    # R(x) = σ(α)·B(x) + (1 − σ(α))·S(x)
    torch.testing.assert_close(model(x), a * B + (1 - a) * S)
    assert not SideTuner.identity_at_init and not SideTuner.mergeable


class TinyClassifier(nn.Module):
    """backbone: image -> feature vector; Side-Tuning puts FCN4 beside it (the paper's vision setting)."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
        self.head = nn.Linear(10, 3)

    def forward(self, pixel_values):
        return self.head(self.backbone(pixel_values))


def test_fcn4_side_network_on_images():
    torch.manual_seed(0)
    model = Swift.prepare_model(TinyClassifier(), SideConfig(dim=10, target_modules=["backbone"]))  # default: fcn4
    layer = model.base_model.backbone
    assert isinstance(layer.side_default.side_net, FCN4)
    x = torch.randn(2, 3, 16, 16)
    expected = model.base_model.head(0.5 * layer.base_layer(x) + 0.5 * layer.side_default.side_net(x))
    torch.testing.assert_close(model(pixel_values=x), expected)
    # ms-swift's names: SideModule(alpha, side_net=FCN4(conv1..conv4 = Sequential(Conv2d, GroupNorm, ReLU), fc))
    convs = [f"backbone.side_default.side_net.conv{i}.{k}" for i in range(1, 5) for k in ("0.weight", "1.weight", "1.bias")]
    expected_keys = ["backbone.side_default.alpha", *convs, "backbone.side_default.side_net.fc.weight",
                     "backbone.side_default.side_net.fc.bias"]
    assert sorted(model.state_dict(adapter_name="default")) == sorted(expected_keys)


class TupleBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, extra, hidden_states=None):
        return extra, self.proj(hidden_states)


def test_keyword_input_and_tuple_output_positions():
    torch.manual_seed(0)
    block = TupleBlock()
    model = Swift.prepare_model(nn.ModuleDict({"block": block}), SideConfig(
        dim=4, target_modules=["block"], side_module_name="mlp", source_hidden_pos="hidden_states", target_hidden_pos=1))
    layer = model.base_model["block"]
    x, extra = torch.randn(2, 4), torch.randn(2)
    first, second = layer(extra, hidden_states=x)
    assert torch.equal(first, extra)
    torch.testing.assert_close(second, 0.5 * block.proj(x) + 0.5 * layer.side_default.side_net(x))


def test_clear_errors():
    with pytest.raises(ValueError, match="side_module_name.*torchvision"):
        SideConfig(dim=4, target_modules=["x"], side_module_name="alexnet")
    with pytest.raises(ValueError, match="side_module_name"):
        SideConfig(dim=4, target_modules=["x"], side_module_name="resnet")
    with pytest.raises(ValueError, match="SideConfig.dim=7.*set dim=24"):  # found at prepare time, not at the first forward
        Swift.prepare_model(models.mlp()[0], SideConfig(dim=7, target_modules=["fc2"], side_module_name="mlp", side_in_dim=24))
    with pytest.raises(ValueError, match="containers"):
        Swift.prepare_model(models.llama()[0], SideConfig(dim=32, target_modules=["layers"], side_module_name="mlp"))
