"""U-Tuning: x' = OP(x) + T(x) for every Res-Tuner, against hand computations on real transformers modules."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from swiftlite import Swift
from swiftlite.testing import kit, models
from swiftlite.tuners import UTuningConfig
from swiftlite.tuners.parallel import ParallelLayer

ZERO_AT_INIT = {  # the parameter that starts at 0 in each Res-Tuner
    "res_adapter": "ln2.weight", "res_lora": "lora_B.weight", "res_prefix": "prefix_value",
    "res_prompt": "gate", "res_attn": "o.weight",
}


def _seen(layer):
    seen = {}
    layer.register_forward_hook(lambda m, args, kwargs, out: seen.update(
        x=args[0] if args else kwargs["hidden_states"], out=out[0] if isinstance(out, tuple) else out), with_kwargs=True)
    return seen


def _hand_branch(kind, branch, op, x):
    """T(x) from the formulas in utuning.py's docstring, in float64."""
    x = x.double()
    w = {n: p.double() for n, p in branch.named_parameters()}
    if kind == "res_adapter":  # W_2 · GELU(W_1 · x + b_1) + b_2
        return F.gelu(x @ w["ln1.weight"].T + w["ln1.bias"]) @ w["ln2.weight"].T + w["ln2.bias"]
    if kind == "res_lora":  # x · A · B
        return x @ w["lora_A.weight"].T @ w["lora_B.weight"].T
    q_proj, k_proj, v_proj, o_proj = op.q_proj, op.k_proj, op.v_proj, op.o_proj
    heads = op.config.num_attention_heads
    q = rearrange(F.linear(x, q_proj.weight.double(), q_proj.bias.double() if q_proj.bias is not None else None),
                  "b t (h e) -> b h t e", h=heads)
    if kind == "res_prefix":  # Attn(x·W_q, K_pre, V_pre) · W_o
        k, v = w["prefix_key"], w["prefix_value"]
    else:  # res_prompt: g ⊙ Attn(x·W_q, P·W_k, P·W_v) · W_o, the K/V heads shared by groups of query heads
        p = w["prompt"]
        bias = (lambda lin: lin.bias.double() if lin.bias is not None else None)
        k = rearrange(F.linear(p, k_proj.weight.double(), bias(k_proj)), "p (h e) -> h p e", e=q.shape[-1])
        v = rearrange(F.linear(p, v_proj.weight.double(), bias(v_proj)), "p (h e) -> h p e", e=q.shape[-1])
        k, v = (t.repeat_interleave(heads // t.shape[0], dim=0) for t in (k, v))
    weights = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
    out = rearrange(weights @ v, "b h t e -> b t (h e)") @ o_proj.weight.double().T
    return out * w["gate"] if kind == "res_prompt" else out


@pytest.mark.parametrize("family,op_name,kind", [
    ("vit", "vit.layers.0.attention", "res_prefix"),
    ("vit", "vit.layers.0.attention", "res_prompt"),
    ("vit", "vit.layers.1.mlp", "res_adapter"),
    ("vit", "vit.layers.1.mlp", "res_lora"),
    ("llama", "model.layers.0.self_attn", "res_prompt"),  # grouped-query attention: 4 query heads, 2 K/V heads
    ("llama", "model.layers.1.mlp", "res_adapter"),
])
def test_operation_plus_res_tuner_equals_the_hand_computation(family, op_name, kind):
    base, inputs = getattr(models, family)()
    model = Swift.prepare_model(base, UTuningConfig(target_modules=[op_name], tuner=kind, num_tokens=4,
                                                    adapter_length=8, r=4))
    layer = model.base_model.get_submodule(op_name)
    assert isinstance(layer, ParallelLayer)
    branch = layer.branch("default")
    assert torch.count_nonzero(dict(branch.named_parameters())[ZERO_AT_INIT[kind]]) == 0
    kit.perturb(model, "default", seed=5)
    seen = _seen(layer)
    with torch.no_grad():
        model(**inputs)
        x, tuned = seen["x"], seen["out"]
        with model.disable_adapter():
            frozen = layer(x, **({"position_embeddings": _rope(model, x)} if family == "llama" and "attn" in op_name else {}))
    frozen = frozen[0] if isinstance(frozen, tuple) else frozen
    t_x = _hand_branch(kind, branch, layer.base_layer, x)
    # x' = OP(x) + T(x)
    torch.testing.assert_close(tuned.double(), frozen.double() + t_x, atol=1e-5, rtol=1e-5)
    assert t_x.abs().max() > 1e-3


def _rope(model, x):
    llama = model.base_model.model
    positions = torch.arange(x.shape[1])[None].expand(x.shape[0], -1)
    return llama.rotary_emb(x, positions)


def test_per_operation_choice_and_nesting():
    """A dict picks the Res-Tuner per operation; a block and its own attention and MLP all get theirs."""
    base, inputs = models.vit()
    config = UTuningConfig(tuner={r"vit\.layers\.0": "res_attn", "attention": "res_prefix", "mlp": "res_adapter"},
                           r=4, num_tokens=3, adapter_length=8)
    model = Swift.prepare_model(base, config)
    kinds = {name: layer.branch_info["default"][0] for name, layer in model.base_model.named_modules()
             if isinstance(layer, ParallelLayer)}
    assert kinds == {"vit.layers.0": "res_attn", "vit.layers.0.base_layer.attention": "res_prefix",
                     "vit.layers.0.base_layer.mlp": "res_adapter", "vit.layers.1.attention": "res_prefix",
                     "vit.layers.1.mlp": "res_adapter"}
    keys = set(model.state_dict(adapter_name="default"))  # canonical keys: no base_layer segments
    assert "vit.layers.0.attention.utuning_default.prefix_key" in keys
    assert "vit.layers.0.utuning_default.o.weight" in keys


def test_target_modules_with_a_dict_tuner_must_cover_every_operation():
    base, _ = models.vit()
    with pytest.raises(ValueError, match=r"UTuningConfig.tuner: no pattern .* 'vit.layers.0.mlp'"):
        Swift.prepare_model(base, UTuningConfig(target_modules=r".*layers\.\d+\.(attention|mlp)",
                                                tuner={"attention": "res_prefix"}))


@pytest.mark.parametrize("config,words", [
    (dict(target_modules=["fc2"], tuner="res_prefix"), r"UTuningConfig.tuner \('fc2'\): res_prefix reuses"),
    (dict(target_modules=["fc1"], tuner="res_adapter"), r"UTuningConfig.tuner \('fc1'\): res_adapter maps d -> d.*12 -> 24"),
    (dict(tuner={"fc9": "res_lora"}), r"UTuningConfig.tuner=.*matched no module"),
    (dict(target_modules=["fc2"], dim=7), r"UTuningConfig.dim=7"),
])
def test_what_cannot_attach_is_refused_before_anything_changes(config, words):
    base, _ = models.mlp()
    keys = set(base.state_dict())
    with pytest.raises(ValueError, match=words):
        Swift.prepare_model(base, UTuningConfig(**config))
    assert set(base.state_dict()) == keys


@pytest.mark.parametrize("kw,field", [
    (dict(tuner="res_nothing"), "tuner"),
    (dict(tuner={}), "tuner"),
    (dict(tuner={"(": "res_lora"}), "tuner"),
    (dict(tuner="res_attn", r=6, num_heads=4), "num_heads"),
    (dict(tuner="res_lora", target_modules=None), "target_modules"),
])
def test_bad_configs_name_the_field(kw, field):
    fields = dict(target_modules=["fc2"])
    with pytest.raises(ValueError, match=f"UTuningConfig.{field}"):
        UTuningConfig(**{**fields, **kw})


def test_feature_maps_go_through_token_tuners_channel_wise():
    """A conv block's (B, C, H, W) map: T acts on each pixel's C channels, as on (B, HW, C) tokens."""
    base, inputs = models.cnn()
    model = Swift.prepare_model(base, UTuningConfig(target_modules=["conv2"], tuner="res_lora", r=2))
    kit.perturb(model, "default", seed=2)
    layer = model.base_model.conv2
    x = torch.relu(base.conv1(inputs["pixel_values"]))
    branch = layer.branch("default")
    with torch.no_grad():
        t_x = torch.einsum("bchw,rc,or->bohw", x, branch.lora_A.weight, branch.lora_B.weight)
        torch.testing.assert_close(layer(x), layer.base_layer(x) + t_x, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["res_adapter", "res_lora", "res_prefix", "res_prompt", "res_attn"])
def test_a_bfloat16_model_keeps_its_dtype_and_every_branch_trains(kind):
    base, inputs = models.vit()
    base = base.to(torch.bfloat16)
    model = Swift.prepare_model(base, UTuningConfig(target_modules=r".*layers\.\d+\.attention", tuner=kind, r=4))
    kit.perturb(model, "default", seed=1)
    logits = model(pixel_values=inputs["pixel_values"].to(torch.bfloat16)).logits
    assert logits.dtype == torch.bfloat16
    logits.float().pow(2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.adapter_parameters("default").values())
