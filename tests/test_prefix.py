"""Prefix tuning: Attn(Q, [K_pre; K], [V_pre; V]) on the real HF attention modules vs a dense reference."""
import pytest
import torch
import torch.nn.functional as F

from swiftlite.testing import models
from swiftlite import PrefixConfig, Swift
from swiftlite.tuners.prefix import PrefixLayer, attention, decompose_prefix_attention

NEG = torch.finfo(torch.float32).min


def test_res_tuning_decomposition_is_exact():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=g) for _ in range(3))  # (B, H, T, d)
    k_pre, v_pre = torch.randn(2, 3, 4, 8, generator=g), torch.randn(2, 3, 4, 8, generator=g)
    full = attention(q, torch.cat((k_pre, k), dim=2), torch.cat((v_pre, v), dim=2))
    a_kv, a_pre, lam = decompose_prefix_attention(q, k, v, k_pre, v_pre)
    # Attn(Q,[K_pre;K],[V_pre;V]) = (1 − λ)·Attn(Q,K,V) + λ·Attn(Q,K_pre,V_pre)
    torch.testing.assert_close(full, (1 - lam) * a_kv + lam * a_pre)
    # λ by its definition, written out with plain exp sums
    s_pre = (q @ k_pre.transpose(-1, -2) / 8 ** 0.5).exp().sum(-1, keepdim=True)
    s_kv = (q @ k.transpose(-1, -2) / 8 ** 0.5).exp().sum(-1, keepdim=True)
    torch.testing.assert_close(lam, s_pre / (s_kv + s_pre))
    torch.testing.assert_close(attention(q, k, v), F.scaled_dot_product_attention(q, k, v))


def _capture(module):
    """Record the (args, kwargs) and the output of `module`'s next call."""
    seen = {}
    h1 = module.register_forward_pre_hook(lambda m, a, kw: seen.update(args=a, kwargs=kw), with_kwargs=True)
    h2 = module.register_forward_hook(lambda m, a, out: seen.update(out=out[0] if isinstance(out, tuple) else out))
    return seen, (h1, h2)


def _heads(x, d):  # (B, T, H·d) -> (B, H, T, d)
    return x.view(x.shape[0], x.shape[1], -1, d).transpose(1, 2)


def _merge(x):  # (B, H, T, d) -> (B, T, H·d)
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)


def _reference(q, k, v, layer, key_bias):
    """softmax(Q [K_pre; K]ᵀ/√d + [0, bias]) [V_pre; V] with this layer's prefixes; bias: (B, 1, Tq, Tk)."""
    k_pre, v_pre = layer.prefixes("default")  # (p, H_kv·d)
    d = q.shape[-1]
    k_pre, v_pre = (_heads(t[None].expand(q.shape[0], -1, -1), d) for t in (k_pre, v_pre))
    reps = q.shape[1] // k.shape[1]  # grouped-query attention: share each K/V head
    k = torch.cat((k_pre, k), dim=2).repeat_interleave(reps, dim=1)
    v = torch.cat((v_pre, v), dim=2).repeat_interleave(reps, dim=1)
    bias = F.pad(key_bias, (k_pre.shape[2], 0))  # prefix keys visible to every query
    return _merge(attention(q, k, v, bias))


def _padding_bias(mask, t, causal):
    bias = torch.zeros(mask.shape[0], 1, t, t)
    bias = bias.masked_fill(mask[:, None, None, :] == 0, NEG)
    if causal:
        bias = bias.masked_fill(torch.ones(t, t).triu(1).bool(), NEG)
    return bias


def _model(factory, target, **kw):
    base, inputs = factory()
    model = Swift.prepare_model(base, PrefixConfig(target_modules=target, num_virtual_tokens=3, init_std=0.5, **kw))
    return model, inputs


def test_bert_self_attention_matches_dense_reference():
    model, inputs = _model(models.bert, r".*attention\.self")
    layer = model.base_model.encoder.layer[1].attention.self
    seen, hooks = _capture(layer.base_layer)
    with torch.no_grad():
        model(**inputs)
        x = seen["args"][0]
        q, k, v = (_heads(lin(x), 8) for lin in (layer.query, layer.key, layer.value))
        ref = _reference(q, k, v, layer, _padding_bias(inputs["attention_mask"], x.shape[1], causal=False))
    torch.testing.assert_close(seen["out"], ref, atol=1e-5, rtol=1e-5)


def test_gpt2_attention_matches_dense_reference():
    model, inputs = _model(models.gpt2, r".*h\.\d+\.attn")
    layer = model.base_model.transformer.h[0].attn
    seen, hooks = _capture(layer.base_layer)
    with torch.no_grad():
        model(**inputs)
        x = seen["args"][0]
        q, k, v = (_heads(t, 8) for t in layer.c_attn(x).split(32, dim=2))
        ref = layer.c_proj(_reference(q, k, v, layer, _padding_bias(inputs["attention_mask"], x.shape[1], causal=True)))
    torch.testing.assert_close(seen["out"], ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("projection", [False, True])
def test_llama_attention_with_gqa_rotary_and_left_padding(impl, projection):
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    model, inputs = _model(models.llama, r".*self_attn", prefix_projection=projection, encoder_hidden_size=16)
    model.base_model.set_attn_implementation(impl)
    inputs["attention_mask"][1, :2] = 0  # left padding: the explicit-mask path
    layer = model.base_model.model.layers[1].self_attn
    seen, hooks = _capture(layer.base_layer)
    with torch.no_grad():
        model(**inputs)
        x, cos_sin = seen["kwargs"]["hidden_states"], seen["kwargs"]["position_embeddings"]
        q, k, v = (_heads(lin(x), 8) for lin in (layer.q_proj, layer.k_proj, layer.v_proj))
        q, k = apply_rotary_pos_emb(q, k, *cos_sin)  # prefixes are not rotated
        bias = _padding_bias(inputs["attention_mask"], x.shape[1], causal=True)
        ref = layer.o_proj(_reference(q, k, v, layer, bias))
    assert len(layer.prefix_mlp) == int(projection)
    torch.testing.assert_close(seen["out"], ref, atol=1e-5, rtol=1e-5)


def test_vit_attention_matches_dense_reference():
    model, inputs = _model(models.vit, r".*layers\.\d+\.attention")
    layer = model.base_model.vit.layers[0].attention
    seen, hooks = _capture(layer.base_layer)
    with torch.no_grad():
        model(**inputs)
        x = seen["args"][0]
        q, k, v = (_heads(lin(x), 8) for lin in (layer.q_proj, layer.k_proj, layer.v_proj))
        ref = layer.o_proj(_reference(q, k, v, layer, torch.zeros(1, 1, x.shape[1], x.shape[1])))
    torch.testing.assert_close(seen["out"], ref, atol=1e-5, rtol=1e-5)


def test_cached_generation_step_equals_full_forward():
    model, inputs = _model(models.llama, r".*self_attn")
    ids = inputs["input_ids"]
    with torch.no_grad():
        full = model(input_ids=ids, use_cache=False).logits
        past = model(input_ids=ids[:, :4], use_cache=True).past_key_values
        assert past.get_seq_length() == 4  # prefixes never enter the cache
        step = model(input_ids=ids[:, 4:5], past_key_values=past, use_cache=True).logits
    torch.testing.assert_close(step[:, -1], full[:, 4], atol=1e-5, rtol=1e-5)


def test_delete_restores_config_and_wrong_targets_are_named():
    model, inputs = _model(models.llama, r".*self_attn")
    attn = model.base_model.model.layers[0].self_attn
    assert isinstance(attn, PrefixLayer) and attn.config.base is model.base_model.config
    model.delete_adapter("default")
    assert model.base_model.model.layers[0].self_attn.config is model.base_model.config
    with pytest.raises(ValueError, match="target_modules.*q_proj"):
        Swift.prepare_model(models.llama()[0], PrefixConfig(target_modules=["q_proj"]))
    for field, value in [("num_virtual_tokens", 0), ("target_modules", None), ("init_std", -1.0)]:
        with pytest.raises(ValueError, match=field):
            PrefixConfig(**{"target_modules": ["attn"], field: value})


def test_allow_listed_attention_classes_still_dispatch_through_the_registry():
    """Version-proofing: every allow-listed class that this transformers ships still looks up
    ALL_ATTENTION_FUNCTIONS in its (unwrapped) forward; fails loudly when a release changes one."""
    import importlib
    import inspect

    import transformers

    from swiftlite.tuners.prefix import KNOWN_ATTENTION_CLASSES

    found = {}
    for family in ["llama", "mistral", "qwen2", "gemma", "phi", "opt", "gpt2", "bert", "roberta", "vit", "clip"]:
        try:
            modeling = importlib.import_module(f"transformers.models.{family}.modeling_{family}")
        except ImportError:
            continue
        for name in KNOWN_ATTENTION_CLASSES:
            if hasattr(modeling, name):
                found[name] = getattr(modeling, name)
    assert {"LlamaAttention", "GPT2Attention", "BertSelfAttention"} <= set(found), transformers.__version__
    for name, cls in found.items():
        forward = inspect.unwrap(cls.forward)
        assert "ALL_ATTENTION_FUNCTIONS" in forward.__code__.co_names, f"{name} no longer dispatches (transformers {transformers.__version__})"


def test_a_decorated_forward_is_still_recognised():
    """transformers wraps forward in decorators (deprecation, output capture): the check must see through them."""
    import functools

    from swiftlite.tuners.prefix import _dispatches_attention

    model, _ = models.llama()
    attn = model.model.layers[0].self_attn
    original = type(attn).forward

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        return original(*args, **kwargs)

    Renamed = type("MyAttention", (type(attn),), {"forward": wrapper, "__module__": type(attn).__module__})
    attn.__class__ = Renamed  # not in the allow-list: only the unwrapped forward can vouch for it
    assert _dispatches_attention(attn)
    assert not _dispatches_attention(model.model.layers[0].mlp)
