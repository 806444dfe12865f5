"""SC-Tuner (SCEdit): the equation, where it hooks in diffusers' U-Net, scale, errors, and the kit."""
import math

import pytest
import torch
import torch.nn as nn

from swiftlite.testing import check_tuner, models
from swiftlite import SCETuningConfig, Swift, scetuning_scale
from swiftlite.tuners.scetuning import SCEAdapter, SCETuningLayer, unet_skip_widths

UP_RESNETS = r"up_blocks\.\d+\.resnets\.\d+"


def _perturb(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.adapter_parameters("default").values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def _run(model, inputs):
    model.eval()
    with torch.no_grad():
        return model(**inputs).sample


def test_equation_against_a_dense_hand_computation():
    g = torch.Generator().manual_seed(0)
    tuner = SCEAdapter(dim=6, adapter_length=3)
    with torch.no_grad():
        for p in tuner.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    x = torch.randn(2, 6, 4, 5, generator=g)  # (B, C, H, W)
    W_down, b_down, W_up, b_up = tuner.ln1.weight, tuner.ln1.bias, tuner.ln2.weight, tuner.ln2.bias
    expected = torch.empty_like(x)
    for b in range(2):
        for i in range(4):
            for j in range(5):
                v = x[b, :, i, j]  # one pixel's channels
                u = W_down @ v + b_down
                gelu = 0.5 * u * (1 + torch.erf(u / math.sqrt(2)))
                expected[b, :, i, j] = v + W_up @ gelu + b_up  # O = x + W_up·GELU(W_down·x)
    torch.testing.assert_close(tuner(x), expected, atol=1e-5, rtol=1e-5)
    s = 0.3  # x + s·(O − x)
    torch.testing.assert_close(tuner(x, scale=s), x + s * (expected - x), atol=1e-5, rtol=1e-5)


def test_identity_at_init_and_width_from_down_ratio():
    base, inputs = models.unet()
    y_base = _run(base, inputs)
    base, _ = models.unet()
    model = Swift.prepare_model(base, SCETuningConfig(dims=[32, 16, 16, 16], target_modules=UP_RESNETS, down_ratio=0.5))
    layers = [m for m in model.modules() if isinstance(m, SCETuningLayer)]
    assert len(layers) == 4
    for layer in layers:
        op = layer.tuner("default").tuner_op
        assert torch.count_nonzero(op.ln2.weight) == 0 and torch.count_nonzero(op.ln2.bias) == 0  # W_up = 0
        assert op.ln1.out_features == int(op.dim * 0.5)
    assert torch.equal(_run(model, inputs), y_base)


def test_skip_widths_are_the_ones_diffusers_concatenates():
    """unet_skip_widths reads the module tree; here diffusers' real skips (the up blocks'
    res_hidden_states_tuple, consumed last-first) must agree, also when a skip is wider than the hidden part."""
    from diffusers import UNet2DConditionModel

    wide = UNet2DConditionModel(  # channels shrink with depth: the last resnet of up block 0 gets a 32-ch skip, 16-ch hidden
        sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(32, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8).eval()
    for model in (models.unet()[0], wide):
        seen = {}

        def record(block, args, kwargs):
            seen[block] = [t.shape[1] for t in kwargs["res_hidden_states_tuple"]][::-1]

        for block in model.up_blocks:
            block.register_forward_pre_hook(record, with_kwargs=True)
        _, inputs = models.unet()
        with torch.no_grad():
            model(**inputs)
        real = {f"up_blocks.{j}.resnets.{i}": w for j, b in enumerate(model.up_blocks) for i, w in enumerate(seen[b])}
        assert unet_skip_widths(model) == real
    assert unet_skip_widths(wide)["up_blocks.0.resnets.1"] == 32 > wide.up_blocks[0].resnets[0].out_channels


@pytest.mark.parametrize("wide", [False, True])
def test_decoder_mode_changes_only_the_skip_channels(wide):
    """Tune one resnet's input: its hidden channels stay bit-identical, its skip channels become T(skip)."""
    from diffusers import UNet2DConditionModel

    def build():
        if not wide:
            return models.unet()
        torch.manual_seed(0)
        m = UNet2DConditionModel(
            sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(32, 16),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8).eval()
        return m, models.unet()[1]

    target = "up_blocks.0.resnets.1"  # wide: 16 hidden + 32 skip channels
    base, inputs = build()
    skip = unet_skip_widths(base)[target]
    captured = {}
    base.get_submodule(target).register_forward_pre_hook(lambda m, a: captured.__setitem__("base", a[0]))
    _run(base, inputs)

    model, _ = build()
    model = Swift.prepare_model(model, SCETuningConfig(dims=skip, target_modules=[target]))
    _perturb(model)
    layer = model.base_model.get_submodule(target)
    layer.base_layer.register_forward_pre_hook(lambda m, a: captured.__setitem__("tuned", a[0]))
    _run(model, inputs)

    x, y = captured["base"], captured["tuned"]
    hidden = x.shape[1] - skip
    assert torch.equal(y[:, :hidden], x[:, :hidden])
    torch.testing.assert_close(y[:, hidden:], layer.tuner("default")(x[:, hidden:]))
    assert not torch.allclose(y[:, hidden:], x[:, hidden:])


def test_encoder_mode_tunes_the_output_and_module_list_means_last_item():
    base, inputs = models.unet()
    model = Swift.prepare_model(base, SCETuningConfig(dims=16, target_modules=["down_blocks.0.resnets"], tuner_mode="encoder"))
    keys = set(model.state_dict(adapter_name="default"))
    assert keys == {f"down_blocks.0.resnets.0.scetuner_default.tuner_op.{l}.{p}" for l in ("ln1", "ln2")
                    for p in ("weight", "bias")}
    _perturb(model)
    layer = model.base_model.down_blocks[0].resnets[0]
    captured = {}
    layer.base_layer.register_forward_hook(lambda m, a, out: captured.__setitem__("base", out))
    layer.register_forward_hook(lambda m, a, out: captured.__setitem__("tuned", out))
    _run(model, inputs)
    torch.testing.assert_close(captured["tuned"], layer.tuner("default")(captured["base"]))


def test_tuner_scale_field_and_context_manager():
    base, inputs = models.unet()
    y_base = _run(base, inputs)

    def tuned(scale=1.0):
        m, _ = models.unet()
        m = Swift.prepare_model(m, SCETuningConfig(dims=[32, 16, 16, 16], target_modules=UP_RESNETS, tuner_scale=scale))
        _perturb(m)
        return m

    model = tuned()
    y = _run(model, inputs)
    assert not torch.allclose(y, y_base)
    with scetuning_scale(model, 0.0):
        torch.testing.assert_close(_run(model, inputs), y_base)
    with scetuning_scale(model, 0.4, adapter_name="default"):
        y_04 = _run(model, inputs)
    assert torch.equal(_run(model, inputs), y)  # restored on exit
    torch.testing.assert_close(_run(tuned(0.4), inputs), y_04)  # the config field is the same knob
    torch.testing.assert_close(_run(tuned(0.0), inputs), y_base)
    with pytest.raises(ValueError, match="no SC-Tuner adapter 'other'"):
        with scetuning_scale(model, 0.5, adapter_name="other"):
            pass


def test_clear_errors_name_the_field():
    base, _ = models.unet()
    with pytest.raises(ValueError, match=r"SCETuningConfig\.dims\[1\]=32: .*'up_blocks\.0\.resnets\.1' has 16 channels"):
        Swift.prepare_model(base, SCETuningConfig(dims=[32, 32, 16, 16], target_modules=UP_RESNETS))
    with pytest.raises(ValueError, match=r"SCETuningConfig\.dims: 3 entries for 4 targets"):
        Swift.prepare_model(base, SCETuningConfig(dims=[32, 16, 16], target_modules=UP_RESNETS))
    with pytest.raises(ValueError, match=r"SCETuningConfig\.dims=8: the output of 'down_blocks\.0\.resnets\.0'.* set it to 16"):
        Swift.prepare_model(base, SCETuningConfig(dims=8, target_modules=r"down_blocks\.0\.resnets\.0", tuner_mode="encoder"))
    with pytest.raises(ValueError, match=r"hint_modules='conv_in' selects 1 modules for 4 targets"):
        Swift.prepare_model(base, SCETuningConfig(dims=[32, 16, 16, 16], target_modules=UP_RESNETS, hint_modules="conv_in"))
    with pytest.raises(ValueError, match="tuner_mode"):
        SCETuningConfig(dims=16, target_modules=UP_RESNETS, tuner_mode="middle")
    with pytest.raises(ValueError, match="down_ratio"):
        SCETuningConfig(dims=2, target_modules=UP_RESNETS, down_ratio=0.25)
    assert not any(isinstance(m, SCETuningLayer) for m in base.modules())  # nothing was changed


def test_pipeline_style_module_with_unet_inside():
    """ms-swift's README tunes a whole pipeline module (target regex with `^unet\\.` in front); the skip
    widths are still found (and checked) under the `unet.` prefix."""

    class Pipe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.unet = models.unet()[0]

        def forward(self, **kwargs):
            return self.unet(**kwargs)

    target = r"^unet\.up_blocks\.\d+\.resnets\.\d+$"
    assert unet_skip_widths(Pipe())["unet.up_blocks.0.resnets.0"] == 32
    with pytest.raises(ValueError, match=r"dims\[0\]=16: .*'unet\.up_blocks\.0\.resnets\.0' has 32 channels"):
        Swift.prepare_model(Pipe(), SCETuningConfig(dims=[16, 16, 16, 16], target_modules=target))
    model = Swift.prepare_model(Pipe(), SCETuningConfig(dims=[32, 16, 16, 16], target_modules=target))
    assert "unet.up_blocks.0.resnets.0.scetuner_default.tuner_op.ln1.weight" in model.state_dict(adapter_name="default")


def test_backward_stops_at_the_skips():
    """Decoder-mode tuners read frozen encoder features: no autograd graph reaches the down blocks, yet
    every tuner weight gets a gradient."""
    base, inputs = models.unet()
    model = Swift.prepare_model(base, SCETuningConfig(dims=[32, 16, 16, 16], target_modules=UP_RESNETS))
    _perturb(model)
    model.train()
    encoder_outputs = []
    for block in model.base_model.down_blocks:
        block.register_forward_hook(lambda m, a, out: encoder_outputs.extend(out[1]))  # the skips it produces
    model(**inputs).sample.square().mean().backward()
    assert encoder_outputs and not any(t.requires_grad for t in encoder_outputs)
    params = model.adapter_parameters("default")
    assert params and all(p.grad is not None and p.grad.abs().sum() > 0 for p in params.values())


class SkipNet(nn.Module):
    """A two-level toy U-Net written by hand: the decoder conv reads cat([hidden, skip]), skip wider than hidden."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Conv2d(3, 12, 3, padding=1)  # produces the skip (12 ch)
        self.down = nn.Conv2d(12, 4, 3, stride=2, padding=1)
        self.up = nn.Upsample(scale_factor=2)
        self.dec = nn.Conv2d(4 + 12, 3, 3, padding=1)  # [hidden 4, skip 12]

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        skip = torch.relu(self.enc(pixel_values))
        hidden = self.up(torch.relu(self.down(skip)))
        return self.dec(torch.cat([hidden, skip], dim=1))


def skipnet():
    torch.manual_seed(0)
    return SkipNet().eval(), {"pixel_values": torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))}


def test_conformance_kit_on_a_custom_module():
    report = check_tuner(lambda: SCETuningConfig(dims=12, target_modules=["dec"]), skipnet)
    assert not report.failed and "identity" in report.passed and "save_load" in report.passed
    with pytest.raises(ValueError, match=r"SCETuningConfig\.dims=16: decoder mode .*'dec', which has 16 channels"):
        Swift.prepare_model(skipnet()[0], SCETuningConfig(dims=16, target_modules=["dec"]))


@pytest.mark.slow
def test_conformance_kit_on_unet_encoder_mode():
    report = check_tuner(lambda: SCETuningConfig(dims=[16, 32], target_modules=r"down_blocks\.\d+\.resnets\.0",
                                                 tuner_mode="encoder"), models.unet)
    assert not report.failed
