"""Res-Tuning's unbinding identity on real transformers attention modules.

Prefix tuning (swiftlite's PrefixConfig, running through the model's own attention function) must equal

    (1 − λ(q))·Attn(q, K, V) + λ(q)·Attn(q, K_pre, V_pre),
    λ(q) = Σ_j exp(q·k_pre_j/√d) / (Σ_j exp(q·k_j/√d) + Σ_j exp(q·k_pre_j/√d))

per head and per query row q, where the right side is computed here independently, in float64, from the
module's frozen weights and the adapter's K_pre / V_pre (no swiftlite attention code is used for it).
"""
from __future__ import annotations

import pytest
import torch
from einops import rearrange

from swiftlite import Swift
from swiftlite.testing import kit, models
from swiftlite.tuners import PrefixConfig, UTuningConfig


def _attn(q, k, v, key_bias):
    """softmax(q·kᵀ/√d + key_bias)·v with explicit exponentials: (h, T, d) x (h, S, d) -> (h, T, d)."""
    weights = torch.exp(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5 + key_bias)  # (h, T, S)
    return (weights / weights.sum(-1, keepdim=True)) @ v, weights.sum(-1, keepdim=True)


def _unbound(x, parts, k_pre, v_pre, visible):
    """Right side of the identity for one sequence x (T, d); returns (output (T, h·d_h), λ (h, T, 1))."""
    heads = parts["heads"]
    x = x.double()

    def proj(layer):  # x·W + b, split into heads: (h, T, d_h)
        return rearrange(x @ layer.weight.double().T + layer.bias.double(), "t (h e) -> h t e", h=heads)

    q, k, v = proj(parts["q"]), proj(parts["k"]), proj(parts["v"])
    k_pre = rearrange(k_pre.double(), "p (h e) -> h p e", h=heads)
    v_pre = rearrange(v_pre.double(), "p (h e) -> h p e", h=heads)
    key_bias = torch.where(visible, 0.0, -torch.inf).double()  # padded keys are invisible
    attn_kv, z_kv = _attn(q, k, v, key_bias)  # Attn(q, K, V), Σ_j exp(q·k_j/√d)
    attn_pre, z_pre = _attn(q, k_pre, v_pre, torch.zeros(k_pre.shape[1], dtype=torch.float64))
    lam = z_pre / (z_kv + z_pre)  # λ(q), one per head and query row
    out = (1 - lam) * attn_kv + lam * attn_pre
    return rearrange(out, "h t e -> t (h e)"), lam


def _prefixed(family: str):
    """(SwiftModel with a perturbed prefix on every attention module, inputs, name of the first one)."""
    target = {"bert": r".*attention\.self", "vit": r".*layers\.\d+\.attention"}[family]
    base, inputs = getattr(models, family)()
    model = Swift.prepare_model(base, PrefixConfig(target_modules=target, num_virtual_tokens=4, init_std=0.5))
    kit.perturb(model, "default", seed=7)
    first = model.base_model.get_submodule(
        "encoder.layer.0.attention.self" if family == "bert" else "vit.layers.0.attention")
    return model, inputs, first


@pytest.mark.parametrize("family", ["bert", "vit"])
def test_prefix_attention_is_a_gated_sum_of_two_attentions(family):
    from swiftlite.core.modules import attention_parts

    model, inputs, layer = _prefixed(family)
    seen = {}
    layer.register_forward_hook(lambda m, args, kwargs, out: seen.update(x=args[0] if args else kwargs["hidden_states"],
                                                                         out=out[0]), with_kwargs=True)
    with torch.no_grad():
        model(**inputs)
    parts = attention_parts(layer.base_layer)
    k_pre, v_pre = layer.prefixes("default")
    mask = inputs.get("attention_mask", torch.ones(seen["x"].shape[:2], dtype=torch.long)).bool()
    lams = []
    for i in range(seen["x"].shape[0]):
        expected, lam = _unbound(seen["x"][i], parts, k_pre, v_pre, mask[i])
        if parts["o"] is not None:  # ViTAttention ends with o_proj; BERT's self-attention has none
            expected = expected @ parts["o"].weight.double().T + parts["o"].bias.double()
        torch.testing.assert_close(seen["out"][i].double(), expected, atol=1e-5, rtol=1e-5)
        lams.append(lam)
    lam = torch.cat(lams, dim=1)
    assert ((lam > 0) & (lam < 1)).all()
    assert lam.std() > 1e-3, "λ must differ between query rows (a per-query gate, not a constant)"


def test_identity_fails_for_a_wrong_gate():
    """The check can fail: a constant λ (the mean of the true ones) does not reproduce prefix attention."""
    from swiftlite.core.modules import attention_parts

    model, inputs, layer = _prefixed("vit")
    seen = {}
    layer.register_forward_hook(lambda m, args, out: seen.update(x=args[0], out=out[0]))
    with torch.no_grad():
        model(**inputs)
    parts = attention_parts(layer.base_layer)
    k_pre, v_pre = layer.prefixes("default")
    x = seen["x"][0]
    _, lam = _unbound(x, parts, k_pre, v_pre, torch.ones(x.shape[0], dtype=torch.bool))
    heads = parts["heads"]
    q = rearrange(x.double() @ parts["q"].weight.double().T + parts["q"].bias.double(), "t (h e) -> h t e", h=heads)
    k = rearrange(x.double() @ parts["k"].weight.double().T + parts["k"].bias.double(), "t (h e) -> h t e", h=heads)
    v = rearrange(x.double() @ parts["v"].weight.double().T + parts["v"].bias.double(), "t (h e) -> h t e", h=heads)
    attn_kv, _ = _attn(q, k, v, torch.zeros(k.shape[1], dtype=torch.float64))
    attn_pre, _ = _attn(q, rearrange(k_pre.double(), "p (h e) -> h p e", h=heads),
                        rearrange(v_pre.double(), "p (h e) -> h p e", h=heads), torch.zeros(k_pre.shape[0]).double())
    constant = lam.mean()
    wrong = rearrange((1 - constant) * attn_kv + constant * attn_pre, "h t e -> t (h e)")
    wrong = wrong @ parts["o"].weight.double().T + parts["o"].bias.double()
    assert not torch.allclose(seen["out"][0].double(), wrong, atol=1e-5, rtol=1e-5)  # the tolerance used above


def test_res_prefix_is_the_unbound_prefix_branch():
    """U-Tuning's Res-Prefix drops the gate: OP(x) + Attn(x·W_q, K_pre, V_pre)·W_o, checked by hand on ViT."""
    base, inputs = models.vit()
    model = Swift.prepare_model(base, UTuningConfig(target_modules=r".*layers\.\d+\.attention", tuner="res_prefix",
                                                    num_tokens=4))
    kit.perturb(model, "default", seed=3)
    layer = model.base_model.get_submodule("vit.layers.0.attention")
    seen = {}
    layer.register_forward_hook(lambda m, args, out: seen.update(x=args[0], out=out[0]))
    with torch.no_grad():
        model(**inputs)
        x_in, tuned = seen["x"], seen["out"]
        frozen = layer.base_layer(x_in)[0]  # OP(x), the frozen attention alone
    branch = layer.branch("default")
    op = layer.base_layer
    heads = op.num_attention_heads
    x = x_in.double()
    q = rearrange(x @ op.q_proj.weight.double().T + op.q_proj.bias.double(), "b t (h e) -> b h t e", h=heads)
    k_pre, v_pre = branch.prefix_key.double(), branch.prefix_value.double()  # (h, p, d_h)
    weights = torch.softmax(q @ k_pre.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
    t_x = rearrange(weights @ v_pre, "b h t e -> b t (h e)") @ op.o_proj.weight.double().T  # W_o without its bias
    torch.testing.assert_close(tuned.double(), frozen.double() + t_x, atol=1e-5, rtol=1e-5)
    assert t_x.abs().max() > 1e-3  # the branch contributes


def test_unbind_prefix_rebuilds_the_module_output_and_its_gate():
    """`unbind_prefix` (used by tutorial 03) against the real module and the hand-computed λ."""
    from swiftlite.core.modules import attention_parts
    from swiftlite.tuners.prefix import unbind_prefix

    model, inputs, layer = _prefixed("vit")
    seen = {}
    layer.register_forward_hook(lambda m, args, out: seen.update(x=args[0], out=out[0]))
    with torch.no_grad():
        model(**inputs)
        parts = unbind_prefix(layer, seen["x"])
    torch.testing.assert_close(parts["output"], seen["out"], atol=1e-5, rtol=1e-5)
    k_pre, v_pre = layer.prefixes("default")
    _, lam = _unbound(seen["x"][0], attention_parts(layer.base_layer), k_pre, v_pre,
                      torch.ones(seen["x"].shape[1], dtype=torch.bool))
    torch.testing.assert_close(parts["lam"][0].double(), lam, atol=1e-6, rtol=1e-5)
