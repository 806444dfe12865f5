"""Mixed-adapter batches (`adapter_names=`): each sample equals a run with its adapter alone."""
import pytest
import torch

from swiftlite import Swift
from swiftlite.testing import models
from swiftlite.tuners import AdapterConfig, LoRAConfig

NAMES = ["a", "__base__", "b", "a", "c"]


def _llama_with_adapters():
    base, _ = models.llama()
    torch.manual_seed(0)
    configs = {  # different ranks, targets and scalings; random B so each adapter changes the output
        "a": LoRAConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
        "b": LoRAConfig(r=2, lora_alpha=16, target_modules=["q_proj", "o_proj", "down_proj"], init_lora_weights=False),
        "c": LoRAConfig(r=8, lora_alpha=4, target_modules=["embed_tokens", "up_proj"], init_lora_weights=False),
    }
    return Swift.prepare_model(base, configs).eval()


def _alone(model, name, **inputs):
    """The output with only `name` active (or none), the way a user would get it without mixing."""
    if name == "__base__":
        with model.disable_adapter():
            return model(**inputs).logits
    model.set_active_adapters([name])
    try:
        return model(**inputs).logits
    finally:
        model.set_active_adapters(["a", "b", "c"])


def test_mixed_batch_equals_each_sample_with_its_adapter_alone():
    model = _llama_with_adapters()
    ids = torch.randint(0, 64, (len(NAMES), 7), generator=torch.Generator().manual_seed(3))
    mixed = model(input_ids=ids, adapter_names=NAMES).logits
    for i, name in enumerate(NAMES):
        expected = _alone(model, name, input_ids=ids[i:i + 1])
        torch.testing.assert_close(mixed[i:i + 1], expected, rtol=1e-5, atol=1e-5)
    # the adapters really differ, so the test could fail
    assert not torch.allclose(_alone(model, "a", input_ids=ids[:1]), _alone(model, "b", input_ids=ids[:1]), atol=1e-3)


def test_mixed_batch_generate_greedy_and_beams():
    model = _llama_with_adapters()
    ids = torch.randint(1, 64, (3, 5), generator=torch.Generator().manual_seed(4))
    names = ["b", "__base__", "a"]
    for extra in ({}, {"num_beams": 2}):
        kw = dict(max_new_tokens=4, do_sample=False, pad_token_id=0, **extra)
        mixed = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), adapter_names=names, **kw)
        for i, name in enumerate(names):
            one = ids[i:i + 1]
            if name == "__base__":
                with model.disable_adapter():
                    alone = model.generate(input_ids=one, attention_mask=torch.ones_like(one), **kw)
            else:
                model.set_active_adapters([name])
                alone = model.generate(input_ids=one, attention_mask=torch.ones_like(one), **kw)
                model.set_active_adapters(["a", "b", "c"])
            assert torch.equal(mixed[i:i + 1], alone), (extra, name)


def test_mixed_batch_refusals_name_the_problem():
    model = _llama_with_adapters()
    ids = torch.randint(0, 64, (2, 4))
    with pytest.raises(ValueError, match=r"unknown adapter\(s\) \['typo'\]"):
        model(input_ids=ids, adapter_names=["a", "typo"])
    with pytest.raises(ValueError, match="2 names for a batch of 3"):
        model(input_ids=torch.randint(0, 64, (3, 4)), adapter_names=["a", "b"])
    with pytest.raises(TypeError, match="one adapter name per sample"):
        model(input_ids=ids, adapter_names="a")
    model.train()
    with pytest.raises(ValueError, match="model.eval"):
        model(input_ids=ids, adapter_names=["a", "b"])
    model.eval()
    model.merge("a")
    with pytest.raises(ValueError, match=r"merged into the weights"):
        model(input_ids=ids, adapter_names=["a", "b"])
    model.unmerge("a")
    model.add_adapter("d", LoRAConfig(r=2, target_modules=["k_proj"], use_dora=True))
    with pytest.raises(ValueError, match="DoRA"):
        model(input_ids=ids, adapter_names=["d", "b"])
    # an ordinary forward afterwards still works, and the kwarg never reached the HF model
    assert model(input_ids=ids).logits.shape == (2, 4, 64)


def test_mixed_batch_refuses_non_lora_adapters():
    base, _ = models.llama()
    model = Swift.prepare_model(base, {
        "lora": LoRAConfig(r=2, target_modules=["q_proj"]),
        "adapter": AdapterConfig(dim=32, target_modules=["mlp"], hidden_pos=0, adapter_length=4)}).eval()
    ids = torch.randint(0, 64, (2, 4))
    with pytest.raises(ValueError, match="'adapter' is a AdapterConfig adapter"):
        model(input_ids=ids, adapter_names=["adapter", "lora"])
    with pytest.raises(ValueError, match=r"non-LoRA adapter\(s\) \['adapter'\] are active"):
        model(input_ids=ids, adapter_names=["lora", "__base__"])
    model.deactivate_adapter("adapter")
    assert model(input_ids=ids, adapter_names=["lora", "__base__"]).logits.shape == (2, 4, 64)


def test_adapter_names_never_reach_the_transformers_model():
    model = _llama_with_adapters()
    seen = []
    model.base_model.register_forward_pre_hook(lambda m, args, kwargs: seen.append(set(kwargs)), with_kwargs=True)
    ids = torch.randint(1, 64, (2, 4))
    model(input_ids=ids, adapter_names=["a", "b"])
    model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), adapter_names=["a", "b"], max_new_tokens=2,
                   do_sample=False, pad_token_id=0)
    assert len(seen) >= 3 and not any("adapter_names" in keys for keys in seen)
