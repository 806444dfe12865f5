"""LongLoRA: S²-Attn against a dense block-masked reference, full attention at inference, trainable
embeddings and norms, save/load. On transformers' real LlamaForCausalLM (tiny)."""
import json
import os

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.models.llama.modeling_llama import eager_attention_forward

from swiftlite import Swift
from swiftlite.testing import models
from swiftlite.tuners.longlora import LongLoRAConfig, shifted_sparse_attention
from swiftlite.tuners.lora import LoRAConfig

TARGETS = ["q_proj", "v_proj"]


def batch(t=8, pad=0):
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(0, 64, (2, t), generator=g)
    mask = torch.ones_like(ids)
    if pad:
        mask[1, -pad:] = 0  # right padding: every query still sees a key
    return {"input_ids": ids, "attention_mask": mask}


def longlora(**kwargs):
    base, _ = models.llama()
    config = LongLoRAConfig(target_modules=TARGETS, init_lora_weights=False, **kwargs)
    return Swift.prepare_model(base, config)


def logits(model, inputs, train):
    model.train(train)
    with torch.no_grad():
        return model(**inputs).logits


# ---- S²-Attn: the pattern -----------------------------------------------------------------------
# T = 8, G = 4, shift G/2 = 2. Written out by hand, not derived from the code's formula.
GROUPS_UNSHIFTED = [{0, 1, 2, 3}, {4, 5, 6, 7}]
GROUPS_SHIFTED = [{2, 3, 4, 5}, {6, 7, 0, 1}]


def allowed_by_hand(groups, t=8):
    """allowed[i, j]: j ≤ i (causal) and i, j in one group."""
    same = torch.zeros(t, t, dtype=torch.bool)
    for group in groups:
        for i in group:
            for j in group:
                same[i, j] = True
    return same & torch.ones(t, t, dtype=torch.bool).tril()


def dense_reference(q, k, v, allowed):
    """softmax(q kᵀ/√d masked by allowed[h]) v with the kv heads repeated; allowed (B or 1, H, T, T)."""
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    logits = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    out = torch.softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1) @ v  # (B, H, T, d)
    return out.transpose(1, 2)  # (B, T, H, d), as transformers' attention functions return it


def _attention_module():
    base, _ = models.llama()
    return base.model.layers[0].self_attn  # 4 query heads, 2 key/value heads, head_dim 8


@pytest.mark.parametrize("attend", [eager_attention_forward, sdpa_attention_forward], ids=["eager", "sdpa"])
def test_shift_pattern_matches_the_hand_written_block_mask(attend):
    module = _attention_module()
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 2, 8, 8, generator=g), torch.randn(2, 2, 8, 8, generator=g)
    out, _ = shifted_sparse_attention(module, q, k, v, None, 4, attend, scaling=8 ** -0.5, dropout=0.0)
    heads = [GROUPS_UNSHIFTED] * 2 + [GROUPS_SHIFTED] * 2  # half of the heads shifted
    allowed = torch.stack([allowed_by_hand(groups) for groups in heads])[None]  # (1, H, T, T)
    torch.testing.assert_close(out, dense_reference(q, k, v, allowed), atol=1e-5, rtol=1e-5)
    # the wrapped group {6, 7, 0, 1} keeps causality: token 0 sees only itself
    assert allowed[0, 2, 0].nonzero().flatten().tolist() == [0]


def test_padding_mask_is_kept_in_every_group():
    module = _attention_module()
    g = torch.Generator().manual_seed(1)
    q, k, v = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 2, 8, 8, generator=g), torch.randn(2, 2, 8, 8, generator=g)
    keys_ok = torch.ones(2, 8, dtype=torch.bool)
    keys_ok[1, 5] = False  # one masked key inside the second group
    mask = (torch.ones(8, 8, dtype=torch.bool).tril() & keys_ok[:, None, :])[:, None]  # (B, 1, T, T), True = attend
    out, _ = shifted_sparse_attention(module, q, k, v, mask, 4, sdpa_attention_forward, scaling=8 ** -0.5)
    heads = [GROUPS_UNSHIFTED] * 2 + [GROUPS_SHIFTED] * 2
    allowed = torch.stack([allowed_by_hand(groups) for groups in heads])[None] & keys_ok[:, None, None, :]
    torch.testing.assert_close(out, dense_reference(q, k, v, allowed), atol=1e-5, rtol=1e-5)


# ---- S²-Attn in the model -------------------------------------------------------------------------
def test_one_group_covering_the_sequence_is_full_attention():
    model = longlora(group_size_ratio=1.0)
    for inputs in (batch(), batch(pad=3)):
        torch.testing.assert_close(logits(model, inputs, train=True), logits(model, inputs, train=False),
                                   atol=1e-5, rtol=1e-5)


def test_eager_and_sdpa_give_the_same_training_output():
    outputs = []
    for impl in ("sdpa", "eager"):
        base, _ = models.llama()
        base.set_attn_implementation(impl)
        model = Swift.prepare_model(base, LongLoRAConfig(target_modules=TARGETS, init_lora_weights=False,
                                                         group_size_ratio=0.5))
        outputs.append(logits(model, batch(pad=3), train=True))
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5, rtol=1e-5)


def test_heads_sharing_a_kv_head_across_the_halves_are_refused():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=1)  # one kv head for all 4 query heads
    with pytest.raises(ValueError, match="halves would share"):
        Swift.prepare_model(LlamaForCausalLM(cfg), LongLoRAConfig(target_modules=TARGETS))


def test_smaller_groups_change_training_but_not_inference():
    model = longlora(group_size_ratio=0.5)
    inputs = batch()
    y_eval = logits(model, inputs, train=False)
    assert (logits(model, inputs, train=True) - y_eval).abs().max() > 1e-3  # S²-Attn runs in training
    with model.disable_adapter():  # an inactive adapter: full attention in training too
        y_base_train, y_base_eval = logits(model, inputs, train=True), logits(model, inputs, train=False)
    torch.testing.assert_close(y_base_train, y_base_eval)


def test_eval_mode_is_plain_lora():
    model = longlora(group_size_ratio=0.25)
    base, _ = models.llama()
    lora = Swift.prepare_model(base, LoRAConfig(target_modules=TARGETS))
    lora_keys = lora.state_dict(adapter_name="default")
    lora.load_state_dict({k: v for k, v in model.state_dict(adapter_name="default").items() if k in lora_keys},
                         adapter_name="default")
    inputs = batch()
    torch.testing.assert_close(logits(model, inputs, train=False), logits(lora, inputs, train=False))
    assert (logits(model, inputs, train=True) - logits(lora, inputs, train=True)).abs().max() > 1e-3


def test_a_base_in_eval_mode_stays_in_full_attention_without_calling_eval_again():
    """The wrapper follows the attention module's mode (a new nn.Module starts in training mode)."""
    base, _ = models.llama()  # returned in eval mode
    lora_base, _ = models.llama()
    config = dict(target_modules=TARGETS, init_lora_weights=False)
    model = Swift.prepare_model(base, LongLoRAConfig(group_size_ratio=0.5, embedder_and_normalizer=[], **config))
    lora = Swift.prepare_model(lora_base, LoRAConfig(**config))
    lora.load_state_dict(model.state_dict(adapter_name="default"), adapter_name="default")
    with torch.no_grad():  # no .eval() / .train() call after prepare_model
        torch.testing.assert_close(model(**batch()).logits, lora(**batch()).logits)


def test_sequence_not_divisible_into_groups_is_refused_in_training():
    model = longlora(group_size_ratio=0.4)
    model.train()
    with pytest.raises(ValueError, match=r"group_size_ratio=0.4: .* 8 tokens .* G = int\(8 · 0.4\) = 3"):
        model(**batch(t=8))
    model.eval()
    model(**batch(t=8))  # full attention: any length


def test_a_model_without_llama_attention_is_refused():
    base, _ = models.gpt2()
    with pytest.raises(ValueError, match="no LLaMA-structure attention"):
        Swift.prepare_model(base, LongLoRAConfig(target_modules=["c_attn"]))


# ---- trainable embeddings and norms ---------------------------------------------------------------
def test_embeddings_and_norms_train_as_copies():
    model = longlora()
    trainable = set(model.adapter_parameters("default"))
    expected_full = {"model.embed_tokens.weight", "model.norm.weight"} | {
        f"model.layers.{i}.{norm}.weight" for i in (0, 1) for norm in ("input_layernorm", "post_attention_layernorm")}
    assert expected_full <= trainable
    assert {k for k in trainable if "lora_" not in k} == expected_full  # lm_head and projections stay frozen
    frozen_embedding = model.base_model.model.embed_tokens.base_layer.weight.detach().clone()
    optimizer = torch.optim.SGD(model.create_optimizer_param_groups(lr=0.1), lr=0.1)
    model.train()
    model(**batch()).logits.pow(2).mean().backward()
    optimizer.step()
    params = model.adapter_parameters("default")
    assert params["model.embed_tokens.weight"].grad.abs().sum() > 0 and params["model.norm.weight"].grad.abs().sum() > 0
    assert torch.equal(model.base_model.model.embed_tokens.base_layer.weight, frozen_embedding)
    base, _ = models.llama()
    with model.disable_adapter():
        torch.testing.assert_close(logits(model, batch(), train=False), logits(base, batch(), train=False))


def test_embedder_and_normalizer_rules():
    # a str is a regex over whole parameter names
    model = longlora(embedder_and_normalizer=r"model\.norm\.weight")
    assert {k for k in model.adapter_parameters("default") if "lora_" not in k} == {"model.norm.weight"}
    # [] trains LoRA only
    model = longlora(embedder_and_normalizer=[])
    assert all("lora_" in k for k in model.adapter_parameters("default"))
    with pytest.raises(ValueError, match="embedder_and_normalizer"):
        longlora(embedder_and_normalizer=["no_such_parameter"])


def test_embedding_in_both_target_modules_and_embedder_is_refused():
    base, _ = models.llama()
    with pytest.raises(ValueError, match="embedder_and_normalizer.*target_modules"):
        Swift.prepare_model(base, LongLoRAConfig(target_modules=["q_proj", "embed_tokens"]))


# ---- checkpoints ------------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    model = longlora(group_size_ratio=0.5)
    with torch.no_grad():
        for p in model.adapter_parameters("default").values():
            p.add_(0.01 * torch.randn_like(p))
    inputs = batch()
    y_eval, y_train = logits(model, inputs, train=False), logits(model, inputs, train=True)
    model.save_pretrained(str(tmp_path))
    saved = json.load(open(os.path.join(tmp_path, "default", "adapter_config.json")))
    assert saved["swift_type"] == "longlora" and saved["group_size_ratio"] == 0.5
    assert saved["embedder_and_normalizer"] == ["embed", "norm"]
    fresh, _ = models.llama()
    loaded = Swift.from_pretrained(fresh, str(tmp_path))
    assert isinstance(loaded.adapters["default"], LongLoRAConfig)
    assert "model.embed_tokens.weight" in loaded.state_dict(adapter_name="default")
    torch.testing.assert_close(logits(loaded, inputs, train=False), y_eval)
    torch.testing.assert_close(logits(loaded, inputs, train=True), y_train)


def test_config_defaults_follow_ms_swift():
    config = LongLoRAConfig(target_modules=TARGETS)
    assert (config.swift_type, config.group_size_ratio, config.model_type) == ("longlora", 0.25, None)
    assert list(config.embedder_and_normalizer) == ["embed", "norm"]
    assert isinstance(config, LoRAConfig) and config.r == 8
