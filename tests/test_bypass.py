"""Res-Tuning-Bypass: what the bypass promises, checked on the autograd graph, plus multi-task inference.

- With `use_bypass=True` no activation computed inside the backbone is saved for backward, and no backbone
  parameter is reachable from the loss (checked with backbone parameters set to requires_grad=True, so
  `requires_grad` alone could not hide them); with `use_bypass=False` both happen (the checks can fail).
- `multi_task_forward`: one backbone forward feeding K bypasses gives the outputs of K separate forwards.
- The ms-swift defects the issue lists: default `tuner_cfg=None`, `use_bypass=False` meaning the same bypass
  without detaching, hooks removed on delete, several adapters on one model.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from swiftlite import Swift
from swiftlite.testing import kit, models
from swiftlite.tuners import LoRAConfig, ResTuningConfig, multi_task_forward
from swiftlite.tuners.restuning import ResTuningBypassModule


def vit_config(**kw) -> ResTuningConfig:
    """ms-swift's ViT recipe: x_0 = embeddings, stems = every layer, x_N replaces the final norm's input."""
    fields = dict(dims=32, root_modules=r"vit\.embeddings", root_modules_hook="output",
                  stem_modules=r"vit\.layers\.\d+", target_modules="vit.layernorm")
    return ResTuningConfig(**{**fields, **kw})


def sd_config(**kw) -> ResTuningConfig:
    """ms-swift's Stable Diffusion recipe on the tiny U-Net."""
    return ResTuningConfig(dims=[32, 32, 16], root_modules="mid_block", root_modules_hook="output",
                           stem_modules=["mid_block", "up_blocks.0", "up_blocks.1"], target_modules="conv_norm_out",
                           tuner_cfg="res_group_adapter", use_upsample=True, upsample_out_channels=[32, 16, None],
                           zero_init_last=True, **kw)


def _graph_leaves(loss: torch.Tensor) -> set[int]:
    """ids of every leaf tensor (parameter) reachable from `loss` through its autograd graph."""
    seen, leaves, stack = set(), set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if hasattr(node, "variable"):  # AccumulateGrad
            leaves.add(id(node.variable))
        stack.extend(next_node for next_node, _ in node.next_functions)
    return leaves


AFTER_TARGET = ("vit.layernorm", "classifier")  # frozen modules applied to the bypass output x_N


@pytest.mark.parametrize("use_bypass", [True, False])
def test_no_backbone_parameter_is_reachable_from_the_loss(use_bypass):
    """Backbone parameters are made trainable on purpose: only the detached probes can keep them out."""
    base, inputs = models.vit()
    model = Swift.prepare_model(base, vit_config(use_bypass=use_bypass))
    kit.perturb(model, "default", seed=1)
    bypass_params = {id(p) for p in model.adapter_parameters("default").values()}
    backbone = {n: p for n, p in model.base_model.named_parameters()
                if id(p) not in bypass_params and not n.startswith(AFTER_TARGET)}
    for p in backbone.values():
        p.requires_grad_(True)
    model.train()
    loss = kit.output_tensor(model(**inputs)).pow(2).mean()
    leaves = _graph_leaves(loss)
    loss.backward()
    reachable = sorted(n for n, p in backbone.items() if id(p) in leaves)
    with_grad = sorted(n for n, p in backbone.items() if p.grad is not None)
    assert bypass_params <= leaves and all(p.grad is not None for p in model.adapter_parameters("default").values())
    if use_bypass:
        assert reachable == [] and with_grad == []
    else:  # the same bypass without detaching: the loss reaches every backbone block
        assert reachable == with_grad and any(n.startswith("vit.layers.0.") for n in reachable)
        assert any(n.startswith("vit.embeddings.") for n in reachable)


def _saved_backbone_activations(config) -> list[tuple]:
    """Shapes of the backbone-internal activations saved for backward in one training forward of the
    frozen tiny ViT with `config`."""
    base, inputs = models.vit()
    model = Swift.prepare_model(base, config)
    kit.perturb(model, "default", seed=1)
    # every activation computed INSIDE the backbone blocks (their submodules' outputs); the blocks' own
    # outputs are the stems the bypass reads, so they may be among its saved inputs and are not counted
    internal: list[torch.Tensor] = []  # kept alive, so no storage is reused while the forward runs
    hooks = [module.register_forward_hook(lambda m, a, out: internal.extend(
                 t for t in (out if isinstance(out, tuple) else (out,)) if isinstance(t, torch.Tensor)))
             for name, module in model.base_model.named_modules()
             if name.startswith(("vit.embeddings.", "vit.layers.")) and name.count(".") >= 3
             and "utuning_" not in name]
    saved: list[torch.Tensor] = []
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        kit.output_tensor(model(**inputs)).pow(2).mean()
    for h in hooks:
        h.remove()
    assert internal and saved
    storages = {t.untyped_storage().data_ptr() for t in internal}
    return [tuple(t.shape) for t in saved if t.untyped_storage().data_ptr() in storages]


def test_bypass_saves_no_backbone_activation_for_backward():
    """Frozen backbone (the Res-Tuning setting): the bypass keeps none of the backbone's inner activations;
    Res-Tuning with Res-Adapters inside the backbone (U-Tuning) must keep them (so the check can fail)."""
    from swiftlite.tuners import UTuningConfig

    bypass_saved = _saved_backbone_activations(vit_config())
    assert bypass_saved == [], f"backbone activations saved for backward: {bypass_saved[:4]}"
    inside_saved = _saved_backbone_activations(
        UTuningConfig(target_modules=r"vit\.layers\.\d+\.(attention|mlp)", tuner="res_adapter"))
    assert inside_saved, "U-Tuning inside the backbone must keep activations for its backward"
    # Without detaching, the bypass still keeps none here: a frozen backbone's features carry no graph, so
    # use_bypass=False only costs memory when something before the probes trains (see the test above).
    assert _saved_backbone_activations(vit_config(use_bypass=False)) == []


def test_use_bypass_false_is_the_same_bypass_with_gradients_into_the_backbone():
    """Same weights: identical outputs and identical gradients of the bypass; only the backbone differs."""
    outputs, grads = {}, {}
    for use_bypass in (True, False):
        base, inputs = models.vit()
        model = Swift.prepare_model(base, vit_config(use_bypass=use_bypass))
        kit.perturb(model, "default", seed=1)
        model.train()
        loss = kit.output_tensor(model(**inputs)).pow(2).mean()
        loss.backward()
        outputs[use_bypass] = loss.detach()
        grads[use_bypass] = {k: p.grad.clone() for k, p in model.adapter_parameters("default").items()}
    torch.testing.assert_close(outputs[True], outputs[False])
    assert grads[True].keys() == grads[False].keys()
    for key in grads[True]:
        torch.testing.assert_close(grads[True][key], grads[False][key], atol=1e-6, rtol=1e-5)


def test_default_tuner_cfg_none_is_the_res_adapter():
    configs = {"none": vit_config(), "named": vit_config(tuner_cfg="res_adapter")}
    assert configs["none"].tuner_cfg is None  # ms-swift crashes on this default
    outs, keys = {}, {}
    for name, config in configs.items():
        base, inputs = models.vit()
        torch.manual_seed(0)  # the adapters' init draws from the global RNG
        model = Swift.prepare_model(base, config)
        keys[name] = set(model.state_dict())
        outs[name] = kit.run(model, inputs)
    assert keys["none"] == keys["named"] and any("lateral_tuner.tuner.ln1.weight" in k for k in keys["none"])
    torch.testing.assert_close(outs["none"], outs["named"])


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_delete_removes_every_probe_and_target_hook():
    base, inputs = models.vit()
    before, y_base = _hook_count(base), kit.run(base, inputs)
    model = Swift.prepare_model(base, {"a": vit_config(), "b": vit_config(use_bypass=False)})
    assert _hook_count(model.base_model) == before + 2 * (1 + 2 + 1)  # per adapter: root, 2 stems, target
    model.delete_adapter("a")
    assert _hook_count(model.base_model) == before + 4
    model.delete_adapter("b")
    assert _hook_count(model.base_model) == before
    assert not [m for m in model.base_model.modules() if isinstance(m, ResTuningBypassModule)]
    torch.testing.assert_close(kit.run(model, inputs), y_base)


@pytest.mark.parametrize("family", ["vit", "mlp", pytest.param("unet", marks=pytest.mark.slow)])
def test_multi_task_forward_equals_separate_forwards(family):
    config = {"vit": vit_config,
              "mlp": lambda: ResTuningConfig(dims=24, root_modules="fc2", stem_modules=["fc1", "fc2"], target_modules="head"),
              "unet": sd_config}[family]
    base, inputs = getattr(models, family)()
    names = ["task0", "task1", "task2"]
    model = Swift.prepare_model(base, {n: config() for n in names})
    for i, n in enumerate(names):
        kit.perturb(model, n, seed=10 + i)
    model.deactivate_adapter("task1")  # states are restored afterwards, whatever they were
    with torch.no_grad():
        together = multi_task_forward(model, names, **inputs)
    assert not model.base_model.restuning_task1.is_active("task1")
    assert model.base_model.restuning_task0.is_active("task0")
    separate = {}
    for n in names:
        model.set_active_adapters(n)
        separate[n] = kit.run(model, inputs)
    for n in names:
        torch.testing.assert_close(kit.output_tensor(together[n]), separate[n], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(separate["task0"], separate["task1"])  # the tasks really differ


def test_multi_task_forward_counts_one_backbone_forward():
    """The backbone blocks run once for K tasks; the part after the target runs on the K·B batch."""
    base, inputs = models.vit()
    names = ["a", "b", "c", "d"]
    model = Swift.prepare_model(base, {n: vit_config() for n in names})
    calls = {"block": 0, "head_batch": []}
    model.base_model.vit.layers[0].register_forward_hook(lambda *a: calls.__setitem__("block", calls["block"] + 1))
    model.base_model.classifier.register_forward_hook(lambda m, a, out: calls["head_batch"].append(out.shape[0]))
    with torch.no_grad():
        outputs = multi_task_forward(model, names, **inputs)
    assert calls["block"] == 1
    assert calls["head_batch"] == [len(names) * inputs["pixel_values"].shape[0]]
    assert all(outputs[n].logits.shape[0] == inputs["pixel_values"].shape[0] for n in names)


def test_multi_task_forward_refuses_what_it_cannot_share():
    base, inputs = models.vit()
    model = Swift.prepare_model(base, {"a": vit_config(), "b": vit_config(target_modules="classifier"),
                                       "lora": LoRAConfig(target_modules=["q_proj"])})
    with pytest.raises(ValueError, match="different targets"):
        multi_task_forward(model, ["a", "b"], **inputs)
    with pytest.raises(ValueError, match="'lora' is not a ResTuning adapter"):
        multi_task_forward(model, ["a", "lora"], **inputs)
