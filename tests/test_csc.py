"""Controllable SC-Tuner (CSC): the hint reaches the tuner, only through the tuner; equation, zero init,
several conditions with their own scales, ms-swift's hint_modules, the conformance kit with a condition."""
import pytest
import torch
import torch.nn as nn

from swiftlite.testing import check_tuner, models
from swiftlite import SCETuningConfig, Swift, scetuning_condition, scetuning_scale, set_condition
from swiftlite.tuners.scetuning import SCETuningLayer, unet_skip_widths
from swiftlite.tuners.scetuning_condition import ConditionHints, unet_skip_levels

UP_RESNETS = r"up_blocks\.\d+\.resnets\.\d+"
DIMS = [32, 16, 16, 16]  # skip widths of models.unet()'s four up-block resnets


def csc(**kw):
    return SCETuningConfig(dims=DIMS, target_modules=UP_RESNETS, condition_channels=1, condition_dims=[8, 16], **kw)


def conditions(seed=0, batch=2):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 8, 8, generator=g) > 0.5).float()  # (B, H, W) binary maps, like a mask


def perturb(model, adapter="default", seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.adapter_parameters(adapter).values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def run(model, inputs):
    model.eval()
    with torch.no_grad():
        return model(**inputs).sample


def skips_seen(model, inputs, names):
    """{target: the skip part of its wrapped module's input} (what the tuners produced) in one forward."""
    seen, handles = {}, []
    for name in names:
        layer = model.base_model.get_submodule(name)
        dim = layer.tuner(layer.adapter_names[0]).dim
        handles.append(layer.base_layer.register_forward_pre_hook(
            lambda m, a, n=name, d=dim: seen.__setitem__(n, a[0][:, -d:])))
    run(model, inputs)
    for handle in handles:
        handle.remove()
    return seen


def test_skip_levels_are_the_resolutions_diffusers_concatenates():
    base, inputs = models.unet()
    seen = {}
    for block in base.up_blocks:
        block.register_forward_pre_hook(
            lambda b, a, kw: seen.__setitem__(b, [t.shape[-1] for t in kw["res_hidden_states_tuple"]][::-1]),
            with_kwargs=True)
    run(base, inputs)
    size = inputs["sample"].shape[-1]
    real = {f"up_blocks.{j}.resnets.{i}": s for j, b in enumerate(base.up_blocks) for i, s in enumerate(seen[b])}
    assert {n: size // 2 ** level for n, level in unet_skip_levels(base).items()} == real
    assert sorted(set(unet_skip_levels(base).values())) == [0, 1]


def test_zero_init_gives_the_base_output_even_with_a_condition():
    base, inputs = models.unet()
    y_base = run(base, inputs)
    model = Swift.prepare_model(models.unet()[0], csc())
    encoder = model.base_model.scecondition_default.encoder
    assert all(torch.count_nonzero(c.weight) == 0 and torch.count_nonzero(c.bias) == 0 for c in encoder.hint_convs)
    with scetuning_condition(model, conditions()):
        assert torch.equal(run(model, inputs), y_base)
        assert all(torch.count_nonzero(c) == 0 for c in encoder(conditions()[:, None]))  # c_j = 0


def test_equation_on_every_skip():
    """skip' = skip + α · (c + T(skip + c)), with c_j the encoder's hint for that skip (hand-computed here)."""
    base, inputs = models.unet()
    plain = skips_seen(Swift.prepare_model(base, SCETuningConfig(dims=DIMS, target_modules=UP_RESNETS)), inputs,
                       unet_skip_widths(base))  # W_up = 0: the untouched skips
    model = Swift.prepare_model(models.unet()[0], csc(tuner_scale=0.7))
    perturb(model)
    cond = conditions()
    with scetuning_condition(model, cond):
        tuned = skips_seen(model, inputs, plain)
    hints = model.base_model.scecondition_default.encoder(cond[:, None])
    for j, name in enumerate(plain):
        op = model.base_model.get_submodule(name).tuner("default").tuner_op
        skip, c = plain[name], hints[j]
        x = (skip + c).permute(0, 2, 3, 1)  # (B, H, W, C)
        t = op.ln2(torch.nn.functional.gelu(op.ln1(x))).permute(0, 3, 1, 2)  # T(skip + c)
        torch.testing.assert_close(tuned[name], skip + 0.7 * (c + t), atol=1e-5, rtol=1e-5)


def test_the_condition_changes_the_output_only_through_the_tuner():
    base, inputs = models.unet()
    y_base = run(base, inputs)
    model = Swift.prepare_model(models.unet()[0], csc())
    perturb(model)
    with scetuning_condition(model, conditions(0)):
        y_a = run(model, inputs)
        with model.disable_adapter():  # the tuner off: the condition has no effect
            assert torch.equal(run(model, inputs), y_base)
        with scetuning_scale(model, 0.0):  # α = 0: no effect either
            assert torch.equal(run(model, inputs), y_base)
    with scetuning_condition(model, conditions(1)):
        y_b = run(model, inputs)
    y_none = run(model, inputs)  # no condition: c = 0, the plain SC-Tuner
    assert (y_a - y_b).abs().max() > 1e-3 and (y_a - y_none).abs().max() > 1e-3
    with scetuning_condition(model, conditions(0)):
        assert torch.equal(run(model, inputs), y_a)  # deterministic: the difference is the condition
    # the condition's effect goes only through the encoder's hints: zero the hint convs and it is gone
    with torch.no_grad():
        for conv in model.base_model.scecondition_default.encoder.hint_convs:
            conv.weight.zero_(), conv.bias.zero_()
    with scetuning_condition(model, conditions(0)):
        assert torch.equal(run(model, inputs), y_none)


def test_gradients_reach_the_condition_encoder_and_not_the_unet_encoder():
    model = Swift.prepare_model(models.unet()[0], csc())
    _, inputs = models.unet()
    model.train()
    down_outputs = []
    for block in model.base_model.down_blocks:
        block.register_forward_hook(lambda m, a, out: down_outputs.extend(out[1]))
    set_condition(model, conditions())
    model(**inputs).sample.square().mean().backward()
    encoder = model.base_model.scecondition_default.encoder
    assert all(c.weight.grad.abs().sum() > 0 for c in encoder.hint_convs)  # at init: the zero convs learn first
    assert not any(t.requires_grad for t in down_outputs)  # backward stops at the skips
    model.zero_grad()
    perturb(model)
    model(**inputs).sample.square().mean().backward()
    params = model.adapter_parameters("default")
    assert any(k.startswith("scecondition_default.encoder.levels.0") for k in params)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params.values())
    set_condition(model, None)


def test_several_conditions_add_their_edits_with_their_own_scales():
    """Two CSC adapters (edge, mask) on the same skips: skip' − skip = Σ_m α_m · edit_m, each from the same skip."""
    base, inputs = models.unet()
    model = Swift.prepare_model(base, {"edge": csc(), "mask": csc()})
    perturb(model, "edge", 1), perturb(model, "mask", 2)
    model.set_active_adapters(["edge", "mask"])
    names = list(unet_skip_widths(base))
    with scetuning_scale(model, 0.0):
        skip = skips_seen(model, inputs, names)
    cond = {"edge": conditions(3), "mask": conditions(4)}

    def edits(edge, mask):
        with scetuning_condition(model, cond), scetuning_scale(model, edge, "edge"), scetuning_scale(model, mask, "mask"):
            return {n: s - skip[n] for n, s in skips_seen(model, inputs, names).items()}

    both, edge, mask, half = edits(1.0, 1.0), edits(1.0, 0.0), edits(0.0, 1.0), edits(0.5, 0.25)
    for n in names:
        torch.testing.assert_close(both[n], edge[n] + mask[n], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(half[n], 0.5 * edge[n] + 0.25 * mask[n], atol=1e-5, rtol=1e-5)
        assert edge[n].abs().max() > 1e-3 and mask[n].abs().max() > 1e-3
    with scetuning_condition(model, edge=None, mask=cond["mask"]):  # edge without its map: c = 0 (plain SC edit)
        y = run(model, inputs)
    assert not torch.equal(y, run(model, inputs))


def test_one_condition_is_tiled_over_the_batch_as_in_classifier_free_guidance():
    model = Swift.prepare_model(models.unet()[0], csc())
    perturb(model)
    _, inputs = models.unet()
    one = conditions(batch=1)
    with scetuning_condition(model, one):
        y_tiled = run(model, inputs)
    with scetuning_condition(model, one.expand(2, -1, -1)):
        torch.testing.assert_close(run(model, inputs), y_tiled)
    with scetuning_condition(model, conditions(batch=3)), pytest.raises(ValueError, match="batch of 3 does not divide"):
        run(model, inputs)
    with pytest.raises(ValueError, match="condition_channels=1"):
        set_condition(model, torch.zeros(2, 3, 8, 8))
    with scetuning_condition(model, torch.zeros(2, 1, 16, 16)), pytest.raises(ValueError, match="U-Net input's resolution"):
        run(model, inputs)


class ControlledUNet(nn.Module):
    """ms-swift's hint_modules: the user's model holds its own hint modules, which receive the condition."""

    def __init__(self) -> None:
        super().__init__()
        self.unet = models.unet()[0]
        torch.manual_seed(1)
        self.hint_net = nn.ModuleList([nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.Conv2d(1, 16, 3, stride=2, padding=1),
                                       nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(1, 16, 3, padding=1)])

    def forward(self, hint, **kwargs):
        for conv in self.hint_net:
            conv(hint)  # the outputs reach the tuners through the hint modules' hooks
        return self.unet(**kwargs)


def test_hint_modules_as_in_ms_swift():
    _, unet_inputs = models.unet()
    model = Swift.prepare_model(ControlledUNet(), SCETuningConfig(
        dims=DIMS, target_modules=r"unet\.up_blocks\.\d+\.resnets\.\d+", hint_modules=r"hint_net\.\d+"))
    # checkpoint keys: ms-swift's (the hint modules stay the model's own, unsaved, frozen)
    keys = set(model.state_dict(adapter_name="default"))
    assert keys and all(".scetuner_default.tuner_op.ln" in k for k in keys)
    assert not any(p.requires_grad for p in model.base_model.hint_net.parameters())
    perturb(model)
    ys = [run(model, {"hint": conditions(s)[:, None], **unet_inputs}) for s in (0, 1)]
    assert (ys[0] - ys[1]).abs().max() > 1e-3
    with model.disable_adapter():
        y0 = run(model, {"hint": conditions(0)[:, None], **unet_inputs})
        assert torch.equal(y0, run(model, {"hint": conditions(1)[:, None], **unet_inputs}))
    with pytest.raises(RuntimeError, match="ran before its hint module 'hint_net.0'"):
        run(model.base_model.unet, unet_inputs)  # the hint modules did not run
    with pytest.raises(ValueError, match=r"hint_modules=.* selects 2 modules for 4 targets"):
        Swift.prepare_model(ControlledUNet(), SCETuningConfig(dims=DIMS, target_modules=r"unet\.up_blocks\.\d+\.resnets\.\d+",
                                                              hint_modules=["hint_net.0", "hint_net.1"]))
    model.delete_adapter("default")
    assert not any(m._forward_hooks for m in model.base_model.hint_net)  # the probes are gone


def test_bad_csc_configs_name_the_field_and_change_nothing():
    base, _ = models.unet()
    with pytest.raises(ValueError, match="hint_modules"):
        SCETuningConfig(dims=16, target_modules=UP_RESNETS, hint_modules="conv_in", condition_channels=1)
    with pytest.raises(ValueError, match="condition_dims"):
        SCETuningConfig(dims=16, target_modules=UP_RESNETS, condition_dims=[8])
    with pytest.raises(ValueError, match="condition_channels"):
        Swift.prepare_model(base, SCETuningConfig(dims=16, target_modules=r"down_blocks\.0\.resnets\.0",
                                                  tuner_mode="encoder", condition_channels=1))
    with pytest.raises(ValueError, match=r"condition_channels: .*\['up_blocks\.0\.upsamplers\.0'\]"):
        Swift.prepare_model(base, SCETuningConfig(dims=32, target_modules=["up_blocks.0.upsamplers.0"], condition_channels=1))
    assert not any(isinstance(m, (SCETuningLayer, ConditionHints)) for m in base.modules())


def test_save_load_and_rename_keep_the_encoder(tmp_path):
    model = Swift.prepare_model(models.unet()[0], csc())
    perturb(model)
    _, inputs = models.unet()
    with scetuning_condition(model, conditions()):
        y = run(model, inputs)
    model.save_pretrained(str(tmp_path))
    loaded = Swift.from_pretrained(models.unet()[0], str(tmp_path), adapter_name={"default": "edge"})
    assert any(k.startswith("scecondition_edge.encoder.hint_convs.0") for k in loaded.state_dict(adapter_name="edge"))
    with scetuning_condition(loaded, edge=conditions()):
        torch.testing.assert_close(run(loaded, inputs), y)
    loaded.delete_adapter("edge")
    assert not hasattr(loaded.base_model, "scecondition_edge")
    assert not loaded.base_model._forward_pre_hooks and not loaded.base_model._forward_hooks


class ConditionedUNet(nn.Module):
    """A U-Net whose forward takes the condition as an input (for the kit: `model(**inputs)`)."""

    def __init__(self) -> None:
        super().__init__()
        self.unet = models.unet()[0]

    def forward(self, condition, **kwargs):
        from swiftlite.tuners.scetuning_condition import condition_encoders

        if not condition_encoders(self):  # the untouched base
            return self.unet(**kwargs)
        with scetuning_condition(self, {name: condition for name in condition_encoders(self)}):
            return self.unet(**kwargs)


def conditioned_unet():
    model, inputs = ConditionedUNet().eval(), models.unet()[1]
    return model, {"condition": conditions(5), **inputs}


@pytest.mark.slow
def test_conformance_kit_with_a_condition():
    report = check_tuner(lambda: SCETuningConfig(dims=DIMS, target_modules=r"unet\.up_blocks\.\d+\.resnets\.\d+",
                                                 condition_channels=1, condition_dims=[8, 16]), conditioned_unet)
    assert not report.failed and "identity" in report.passed and "save_load" in report.passed
