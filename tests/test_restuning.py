"""Res-Tuning-Bypass: the equation against a dense hand computation, the bypass' gradient claim, hooks,
several adapters, and the errors for configs that cannot work."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from swiftlite import Swift
from swiftlite.tuners import ResTuningConfig
from swiftlite.tuners.restuning import ResTuningBypassModule


class Toy(nn.Module):
    """inp -> b1 -> b2 -> norm -> head, all width 8 (b1, b2 play the backbone blocks)."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(4, 8)
        self.b1 = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
        self.b2 = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.b2(self.b1(self.inp(x)))))


def toy() -> tuple[Toy, torch.Tensor]:
    torch.manual_seed(0)
    return Toy().eval(), torch.randn(2, 5, 4)


def config(**kw) -> ResTuningConfig:
    base = dict(dims=8, root_modules="inp", root_modules_hook="output", stem_modules=["b1", "b2"], target_modules="norm")
    return ResTuningConfig(**{**base, **kw})


def perturb(model, name="default", seed=0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.adapter_parameters(name).values():
            p.add_(0.3 * torch.randn(p.shape, generator=g))


def res_adapter(h: torch.Tensor, tuner: nn.Module) -> torch.Tensor:
    """T(h) = h + W_2 GELU(W_1 h + b_1) + b_2, written out with the parameters."""
    a = F.gelu(h @ tuner.ln1.weight.T + tuner.ln1.bias)
    return h + a @ tuner.ln2.weight.T + tuner.ln2.bias


def test_bypass_equals_dense_hand_computation():
    base, x = toy()
    model = Swift.prepare_model(base, config(tuner_cfg=None))  # None: the default Res-Adapter
    perturb(model)
    blocks = base.restuning_default.bypass_blocks
    with torch.no_grad(), model.disable_adapter():  # the hooks off: base modules called one by one
        x0 = base.inp(x)
        s1 = base.b1(x0)
        s2 = base.b2(s1)
        x_b = x0
        for block, s in zip(blocks, [s1, s2]):
            # x_i = lateral_i(s_i) + vertical_i(x_{i-1})
            x_b = res_adapter(s, block.lateral_tuner.tuner) + res_adapter(x_b, block.vertical_tuner.tuner)
        expected, y_base = base.head(base.norm(x_b)), base.head(base.norm(s2))
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
        assert (model(x) - y_base).abs().max() > 1e-3  # it did change the output


def test_stem_list_order_zero_identity_and_weights():
    """Stems in list order (b2 first), a zero vertical and an identity lateral, adapter weights."""
    base, x = toy()
    tuner_cfg = [{"lateral_cfg": {"res_adapter": {"adapter_length": 4, "adapter_weight": "scalar_0.5"}},
                  "vertical_cfg": "zero"},
                 {"lateral_cfg": None, "vertical_cfg": {"res_adapter": {"adapter_weight": "scale_channel"}}}]
    model = Swift.prepare_model(base, config(stem_modules=["b2", "b1"], tuner_cfg=tuner_cfg))
    perturb(model)
    block0, block1 = base.restuning_default.bypass_blocks
    assert block0.lateral_tuner.tuner.ln1.out_features == 4
    scale = block1.vertical_tuner.tuner.scaling
    with torch.no_grad(), model.disable_adapter():
        s_b1 = base.b1(base.inp(x))
        s_b2 = base.b2(s_b1)
        lat = block0.lateral_tuner.tuner
        x1 = s_b2 + 0.5 * (F.gelu(s_b2 @ lat.ln1.weight.T + lat.ln1.bias) @ lat.ln2.weight.T + lat.ln2.bias)  # + 0
        ver = block1.vertical_tuner.tuner
        x2 = s_b1 + x1 + scale * (F.gelu(x1 @ ver.ln1.weight.T + ver.ln1.bias) @ ver.ln2.weight.T + ver.ln2.bias)
        expected = base.head(base.norm(x2))
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def test_zero_init_last_zeroes_only_the_last_block():
    base, _ = toy()
    Swift.prepare_model(base, config(zero_init_last=True))
    first, last = base.restuning_default.bypass_blocks
    assert torch.count_nonzero(last.lateral_tuner.tuner.ln2.weight) == 0
    assert torch.count_nonzero(last.vertical_tuner.tuner.ln2.weight) == 0
    assert torch.count_nonzero(first.lateral_tuner.tuner.ln2.weight) > 0


@pytest.mark.parametrize("use_bypass", [True, False])
def test_gradients_reach_the_backbone_only_without_bypass(use_bypass):
    base, x = toy()
    model = Swift.prepare_model(base, config(use_bypass=use_bypass))
    for p in base.parameters():
        p.requires_grad_(True)  # let the backbone say whether a gradient reaches it
    model.train()
    model(x).pow(2).mean().backward()
    upstream = [base.inp.weight, base.b1[0].weight, base.b2[0].weight]  # before the target
    reached = [p.grad is not None and p.grad.abs().sum() > 0 for p in upstream]
    assert all(reached) != use_bypass, reached
    assert base.head.weight.grad is not None and base.norm.weight.grad is not None  # after the target: always
    assert all(p.grad is not None for p in model.adapter_parameters("default").values())


def test_delete_removes_hooks_and_child_and_restores_the_base():
    base, x = toy()
    y0 = base(x)
    model = Swift.prepare_model(base, config())
    assert base.b1._forward_hooks and base.norm._forward_pre_hooks
    model.delete_adapter("default")
    assert not hasattr(base, "restuning_default")
    for module in base.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    torch.testing.assert_close(model(x), y0)


def test_two_adapters_work_together_and_apart():
    base, x = toy()
    y0 = base(x)
    model = Swift.prepare_model(base, {"a": config(), "b": config(stem_modules=["b2"], root_modules=None,
                                                                  tuner_cfg="res_adapter")})
    perturb(model, "a", 1)
    perturb(model, "b", 2)
    assert isinstance(base.restuning_a, ResTuningBypassModule) and len(base.restuning_b.bypass_blocks) == 1
    with torch.no_grad():
        both = model(x)  # each probes its own features; the later-added adapter's x_N reaches the target
        model.set_active_adapters("a")
        only_a = model(x)
        model.set_active_adapters("b")
        only_b = model(x)
        model.set_active_adapters([])
        none = model(x)
    torch.testing.assert_close(both, only_b)
    torch.testing.assert_close(none, y0)
    assert (only_a - only_b).abs().max() > 1e-3
    model.delete_adapter("b")
    model.activate_adapter("a")
    torch.testing.assert_close(model(x), only_a)


def test_save_and_load_under_another_name(tmp_path):
    base, x = toy()
    model = Swift.prepare_model(base, config())
    perturb(model)
    y = model(x)
    model.save_pretrained(str(tmp_path))
    fresh, _ = toy()
    loaded = Swift.from_pretrained(fresh, str(tmp_path), adapter_name={"default": "task"})
    assert hasattr(fresh, "restuning_task")
    torch.testing.assert_close(loaded(x), y)


def test_target_output_hook_replaces_the_output():
    base, x = toy()
    model = Swift.prepare_model(base, config(stem_modules=["b1"], target_modules="b2", target_modules_hook="output"))
    block = base.restuning_default.bypass_blocks[0]
    with torch.no_grad(), model.disable_adapter():
        x0 = base.inp(x)
        s1 = base.b1(x0)
        expected = base.head(base.norm(block.lateral_tuner(s1) + block.vertical_tuner(x0)))
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("kw, field, words", [
    ({"target_modules": r"b\d"}, "target_modules", "matched 2 modules"),
    ({"stem_modules": ["b1", "b3"]}, "stem_modules", "b3"),
    ({"dims": [8, 8, 8]}, "dims", "one entry per stem"),
    ({"tuner_cfg": ["res_adapter"]}, "tuner_cfg", "one entry per stem"),
    ({"tuner_cfg": "res_adaptor"}, "tuner_cfg", "res_group_adapter"),
    ({"tuner_cfg": {"res_adapter": {}}}, "tuner_cfg", "lateral_cfg"),
    ({"tuner_cfg": {"lateral_cfg": "upsample"}}, "tuner_cfg", "aux_cfg"),
    ({"tuner_cfg": {"lateral_cfg": {"res_adapter": {"adapter_weight": "scale_kv"}}}}, "tuner_cfg", "scale_kv"),
    ({"tuner_cfg": {"lateral_cfg": "res_adapter"}, "use_upsample": True}, "use_upsample", "aux_cfg"),
    ({"stem_modules_hook": "outputs"}, "stem_modules_hook", "input"),
    ({"dims": None}, "dims", "required"),
])
def test_bad_configs_name_the_field(kw, field, words):
    base, _ = toy()
    keys = set(base.state_dict())
    with pytest.raises(ValueError, match=field) as err:
        Swift.prepare_model(base, config(**kw))
    assert words in str(err.value)
    assert set(base.state_dict()) == keys and not any(m._forward_hooks or m._forward_pre_hooks for m in base.modules())


def test_target_before_its_stems_is_an_error():
    base, x = toy()
    model = Swift.prepare_model(base, config(target_modules="b1", stem_modules=["b2"]))
    with pytest.raises(RuntimeError, match="before the backbone produced"):
        model(x)


def test_sequential_model_is_refused():
    seq = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.LayerNorm(8))
    with pytest.raises(ValueError, match="nn.Sequential"):
        Swift.prepare_model(seq, ResTuningConfig(dims=8, stem_modules=["1"], target_modules="2"))


def test_config_defaults_follow_ms_swift():
    cfg = ResTuningConfig(dims=8, stem_modules="s", target_modules="t")
    assert (cfg.swift_type, cfg.root_modules_hook, cfg.stem_modules_hook, cfg.target_modules_hook) == (
        "RESTUNING", "input", "output", "input")
    assert cfg.target_hidden_pos == 0 and cfg.use_bypass is True and cfg.tuner_cfg is None
    assert ResTuningConfig.from_dict(cfg.to_dict()) == cfg


def test_features_do_not_outlive_the_forward_and_inactive_adapters_do_not_probe():
    base, x = toy()
    model = Swift.prepare_model(base, config(use_bypass=False))
    model.train()
    model(x).sum().backward()
    assert base.restuning_default.features == {}  # with use_bypass=False they would hold the backbone graph
    model.deactivate_adapter("default")
    model(x)
    assert base.restuning_default.features == {}


def test_deepcopy_keeps_an_independent_working_copy():
    import copy

    base, x = toy()
    model = Swift.prepare_model(base, config())
    y = model(x)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in model.adapter_parameters("default").values():
            p.zero_()  # the original changes; the copy's hooks must use the copy's own bypass
    torch.testing.assert_close(twin(x), y)
    assert (model(x) - y).abs().max() > 1e-3


class Decoder(nn.Module):
    """(B, 8, 2, 2) -> up1 (8 ch, 2x2) -> up2 (4 ch, 4x4) -> norm -> out: a two-stage toy U-Net decoder."""

    def __init__(self) -> None:
        super().__init__()
        self.mid = nn.Conv2d(8, 8, 1)
        self.up1 = nn.Conv2d(8, 8, 3, padding=1)
        self.up2 = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(8, 4, 3, padding=1))
        self.norm = nn.GroupNorm(2, 4)
        self.out = nn.Conv2d(4, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(self.up2(self.up1(self.mid(x)))))


def group_adapter(h: torch.Tensor, tuner: nn.Module, head: int) -> torch.Tensor:
    """Channel c·head + g of every pixel goes through group g's copy of the shared MLP, by a loop."""
    out = h.clone()
    for g in range(head):
        channels = list(range(g, h.shape[1], head))
        pixels = h[:, channels].permute(0, 2, 3, 1)  # (B, H, W, C/head)
        mlp = F.gelu(pixels @ tuner.ln1.weight.T + tuner.ln1.bias) @ tuner.ln2.weight.T + tuner.ln2.bias
        out[:, channels] += mlp.permute(0, 3, 1, 2)
    return out


def test_group_adapter_and_upsample_equal_a_loop_computation():
    torch.manual_seed(0)
    base, x = Decoder().eval(), torch.randn(2, 8, 2, 2)
    model = Swift.prepare_model(base, ResTuningConfig(
        dims=[8, 4], root_modules="mid", root_modules_hook="output", stem_modules=["up1", "up2"],
        target_modules="norm", tuner_cfg="res_group_adapter", use_upsample=True, upsample_out_channels=[4, None]))
    block0, block1 = base.restuning_default.bypass_blocks
    assert torch.count_nonzero(block0.aux_tuner.tuner.conv.weight) == 0  # the upsampling conv starts at zero
    assert not hasattr(block1, "aux_tuner")  # none after the last block
    perturb(model)
    with torch.no_grad(), model.disable_adapter():
        x0 = base.mid(x)
        s1, s2 = base.up1(x0), base.up2(base.up1(x0))
        x1 = group_adapter(s1, block0.lateral_tuner.tuner, 4) + group_adapter(x0, block0.vertical_tuner.tuner, 4)
        x1 = block0.aux_tuner.tuner.conv(F.interpolate(x1, size=(4, 4), mode="nearest"))  # to s2's 4x4, 8 -> 4 ch
        x2 = group_adapter(s2, block1.lateral_tuner.tuner, 4) + group_adapter(x1, block1.vertical_tuner.tuner, 4)
        expected = base.out(base.norm(x2))
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)

    half = Swift.prepare_model(Decoder().to(torch.bfloat16), model.adapters["default"])  # a bf16 backbone
    assert half.base_model.restuning_default.bypass_blocks[0].aux_tuner.tuner.conv.weight.dtype == torch.float32
    with torch.no_grad():
        assert half(x.to(torch.bfloat16)).dtype == torch.bfloat16  # the float32 bypass casts in and out


def test_injection_failing_midway_rolls_back(monkeypatch):
    """The target hook fails after the root and stem probes were registered: the model is left as it was."""
    base, x = toy()
    y0, keys = base(x), set(base.state_dict())

    def failing(self, *args, **kwargs):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(ResTuningBypassModule, "replace_at", failing)
    with pytest.raises(RuntimeError, match="injected failure"):
        Swift.prepare_model(base, config())
    assert set(base.state_dict()) == keys and not hasattr(base, "restuning_default")
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in base.modules())
    torch.testing.assert_close(base(x), y0)


@pytest.mark.parametrize("use_bypass", [True, False])
def test_kit_on_a_custom_module(use_bypass, tmp_path):
    from swiftlite.testing import check_tuner

    def factory():
        base, x = toy()
        return base, {"x": x}

    report = check_tuner(lambda: config(use_bypass=use_bypass, zero_init_last=True), factory, tmp_path=str(tmp_path))
    assert not report.failed, report.failed
    assert set(report.skipped) == {"identity", "merge"}  # x_N replaces the target's input; nothing to fold


def test_features_are_kept_per_thread():
    """Features probed in another thread are not this thread's: threads may run one model at once."""
    import threading

    base, x = toy()
    model = Swift.prepare_model(base, config())
    worker = threading.Thread(target=lambda: base.b2(base.b1(base.inp(x))))  # probes only, no target
    worker.start()
    worker.join()
    assert base.restuning_default.features == {}
    with pytest.raises(RuntimeError, match="before the backbone produced"):
        base.norm(x.new_zeros(2, 5, 8))  # the target, in this thread: nothing was probed here
    y = model(x)  # a whole forward in this thread works
    assert torch.isfinite(y).all()
