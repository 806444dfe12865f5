"""Prompt (deep VPT): compared with a reference that feeds the prompts through HF's own code paths.

The reference never touches swiftlite's mask / rotary padding: it inserts the first layer's prompts
into the embeddings with a forward hook, lets transformers build the mask from a 2-D mask that
already covers the prompts, overwrites the slot before each later layer with a pre-hook, and slices
the prompts off at the end.
"""
import pytest
import torch

from swiftlite.testing import models
from swiftlite import PromptConfig, Swift


def _prompts(model, adapter="default"):
    return [p for n, p in model._adapter_named_parameters(adapter)]


def _reference(factory, prompts, embed, layers, front=True, rotary=False):
    """Deep VPT on a fresh base: embed -> [P_0; X]; layer i input -> [P_i; X_i]; output -> X."""
    base, inputs = factory()
    inputs = dict(inputs)
    n = prompts[0].shape[1]

    def put(h, p, replace):
        p = p.expand(h.shape[0], -1, -1)
        if front:
            return torch.cat((p, h[:, n if replace else 0:]), dim=1)
        return torch.cat((h[:, :h.shape[1] - (n if replace else 0)], p), dim=1)

    handles = []
    if rotary:  # LLaMA: feed embeddings, prompts at position 0 (rotation angle 0)
        ids = inputs.pop("input_ids")
        inputs["inputs_embeds"] = put(embed(base)(ids), prompts[0], replace=False)
        t = ids.shape[1]
        inputs["position_ids"] = torch.cat((torch.zeros(n, dtype=torch.long), torch.arange(t)))[None]
        inputs["use_cache"] = False
    else:
        handles.append(embed(base).register_forward_hook(lambda m, a, out: put(out, prompts[0], replace=False)))
    if "attention_mask" in inputs:
        mask = inputs["attention_mask"]
        pad = torch.ones(mask.shape[0], n, dtype=mask.dtype)
        inputs["attention_mask"] = torch.cat((pad, mask) if front else (mask, pad), dim=1)
    blocks = layers(base)
    for i, block in enumerate(blocks):
        if i:
            handles.append(block.register_forward_pre_hook(
                lambda m, args, kwargs, p=prompts[i]: ((put(args[0], p, replace=True),) + args[1:], kwargs),
                with_kwargs=True))
    strip = (lambda h: h[:, n:]) if front else (lambda h: h[:, :-n])
    handles.append(blocks[-1].register_forward_hook(lambda m, a, out: strip(out)))
    with torch.no_grad():
        out = base(**inputs)
    for h in handles:
        h.remove()
    return out


CASES = {
    "bert": (models.bert, r".*layer\.\d+", lambda m: m.embeddings, lambda m: m.encoder.layer, "last_hidden_state"),
    "vit": (models.vit, r".*layers\.\d+", lambda m: m.vit.embeddings, lambda m: m.vit.layers, "logits"),
    "gpt2": (models.gpt2, r".*h\.\d+", lambda m: m.transformer.drop, lambda m: m.transformer.h, "logits"),
}


@pytest.mark.parametrize("family", sorted(CASES))
@pytest.mark.parametrize("front", [True, False])
def test_deep_vpt_matches_hook_reference(family, front):
    factory, target, embed, layers, key = CASES[family]
    base, inputs = factory()
    model = Swift.prepare_model(base, PromptConfig(dim=32, target_modules=target, prompt_length=3,
                                                   attach_front=front, extract_embedding=True))
    with torch.no_grad():
        y = getattr(model(**inputs), key)
        ref = getattr(_reference(factory, _prompts(model), embed, layers, front=front), key)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)
    with model.disable_adapter(), torch.no_grad():
        torch.testing.assert_close(getattr(model(**inputs), key), getattr(factory()[0](**inputs), key), atol=0, rtol=0)


def test_llama_prompts_are_causal_prefix_at_rotary_angle_zero():
    base, inputs = models.llama()
    model = Swift.prepare_model(base, PromptConfig(dim=32, target_modules=r"model\.layers\.\d+", prompt_length=2,
                                                   extract_embedding=True))
    with torch.no_grad():
        y = model(**inputs, use_cache=False).logits
        ref = _reference(models.llama, _prompts(model), lambda m: m.model.embed_tokens, lambda m: m.model.layers,
                         rotary=True).logits
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)


def test_bert_padding_mask_in_eager_additive_form():
    """The same model under eager attention receives an additive float mask; results agree with sdpa's bool mask."""
    base, inputs = models.bert()
    model = Swift.prepare_model(base, PromptConfig(dim=32, target_modules=r".*layer\.\d+", prompt_length=3,
                                                   extract_embedding=True))
    with torch.no_grad():
        y_sdpa = model(**inputs).last_hidden_state
        model.base_model.set_attn_implementation("eager")
        y_eager = model(**inputs).last_hidden_state
    torch.testing.assert_close(y_sdpa, y_eager, atol=1e-5, rtol=1e-5)


def test_two_active_adapters_equal_their_concatenated_prompts():
    factory, target, embed, layers, key = CASES["bert"]
    base, inputs = factory()
    cfg = lambda n: PromptConfig(dim=32, target_modules=target, prompt_length=n, extract_embedding=True)  # noqa: E731
    model = Swift.prepare_model(base, {"a": cfg(2), "b": cfg(3)})
    joint = [torch.cat((pa, pb), dim=1) for pa, pb in zip(_prompts(model, "a"), _prompts(model, "b"))]
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).last_hidden_state,
                                   _reference(factory, joint, embed, layers).last_hidden_state, atol=1e-5, rtol=1e-5)


def test_without_extract_the_prompts_stay_and_positions_resolve_either_way():
    base, inputs = models.bert()
    by_name = Swift.prepare_model(base, PromptConfig(dim=32, target_modules=r".*layer\.\d+", prompt_length=3,
                                                     embedding_pos="hidden_states", attention_mask_pos=1))
    by_index = Swift.prepare_model(models.bert()[0], PromptConfig(dim=32, target_modules=r".*layer\.\d+", prompt_length=3,
                                                                 embedding_pos=0, attention_mask_pos="attention_mask"))
    by_index.load_state_dict(by_name.state_dict())
    with torch.no_grad():
        y = by_name(**inputs).last_hidden_state
        assert y.shape == (2, 6 + 3, 32)
        torch.testing.assert_close(y, by_index(**inputs).last_hidden_state)
    assert sorted(by_name.state_dict()) == ["encoder.layer.0.prompt_default.prompt_token", "encoder.layer.1.prompt_default.prompt_token"]


def test_dim_list_and_errors():
    base, _ = models.bert()
    with pytest.raises(ValueError, match="dim"):
        Swift.prepare_model(base, PromptConfig(dim=[32], target_modules=r".*layer\.\d+"))
    model = Swift.prepare_model(base, PromptConfig(dim=[32, 32], target_modules=r".*layer\.\d+", prompt_length=2))
    assert model.base_model.encoder.layer[1].prompt_default.prompt_token.shape == (1, 2, 32)
    with pytest.raises(ValueError, match="position 7"):
        Swift.prepare_model(models.bert()[0], PromptConfig(dim=32, target_modules=r".*layer\.\d+", embedding_pos=7))
    for field, value in [("dim", None), ("prompt_length", 0), ("attention_mask_pos", 0.5), ("target_modules", None)]:
        kwargs = {"dim": 32, "target_modules": ["layer"], field: value}
        with pytest.raises(ValueError, match=field):
            PromptConfig(**kwargs)
