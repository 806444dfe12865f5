"""LLaMA-Pro: identity blocks, equality with transformers' own deeper LLaMA, KV cache / generate, kit."""
import os

import pytest
import torch
import torch.nn as nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from swiftlite import Swift
from swiftlite.testing import check_tuner, models
from swiftlite.tuners.llamapro import LLaMAProConfig, LLaMAProLayer


def _perturb_new_blocks(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".llamapro_block." in name:
                p.add_(0.2 * torch.randn(p.shape, generator=g))


def test_conformance(tmp_path):
    report = check_tuner(lambda: LLaMAProConfig(model_type="llama", num_new_blocks=2), models.llama, tmp_path=str(tmp_path))
    assert {"identity", "perturbed", "save_load", "train", "two_adapters", "delete"} <= set(report.passed)


def test_new_blocks_are_identity_copies():
    base, inputs = models.llama()
    source = [layer.state_dict() for layer in base.model.layers]
    model = Swift.prepare_model(base, LLaMAProConfig(num_new_blocks=2))
    for i, layer in enumerate(model.base_model.model.layers):
        assert isinstance(layer, LLaMAProLayer)  # 2 groups of 1 block: a copy after each
        new = layer.llamapro_block["default"][0]
        for key, value in new.state_dict().items():
            if key.endswith(("o_proj.weight", "down_proj.weight")):
                assert torch.count_nonzero(value) == 0  # W_o = W_down = 0
            else:
                assert torch.equal(value, source[i][key])
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".llamapro_block.default." in n for n in trainable)


def test_equals_transformers_deeper_llama():
    """The expanded model must compute exactly what a 4-layer LlamaForCausalLM with these blocks computes."""
    from transformers import LlamaForCausalLM

    base, inputs = models.llama()
    cfg = base.config
    model = Swift.prepare_model(base, LLaMAProConfig(num_new_blocks=2))
    _perturb_new_blocks(model)
    layers = model.base_model.model.layers
    order = [layers[0].base_layer, layers[0].llamapro_block["default"][0], layers[1].base_layer, layers[1].llamapro_block["default"][0]]
    deep_cfg = type(cfg).from_dict({**cfg.to_dict(), "num_hidden_layers": 4})
    deep = LlamaForCausalLM(deep_cfg).eval()
    state = {k: v for k, v in base.state_dict().items() if ".layers." not in k}
    state.update({f"model.layers.{i}.{k}": v for i, block in enumerate(order) for k, v in block.state_dict().items()})
    deep.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, deep(**inputs).logits)
        ids = inputs["input_ids"][:1]
        expected = deep.generate(ids, max_new_tokens=6, do_sample=False)
        assert torch.equal(model.generate(ids, max_new_tokens=6, do_sample=False), expected)


def test_kv_cache_matches_full_forward_and_config_is_restored():
    base, inputs = models.llama()
    model = Swift.prepare_model(base, LLaMAProConfig(num_new_blocks=2))
    _perturb_new_blocks(model, seed=1)
    assert base.config.num_hidden_layers == 4
    idx = [layer.llamapro_block["default"][0].self_attn.layer_idx for layer in base.model.layers]
    assert idx == [2, 3]  # new cache slots after the original layers 0, 1
    ids = inputs["input_ids"][:1]
    with torch.no_grad():
        full = model(input_ids=ids).logits[:, -1]
        prefix = model(input_ids=ids[:, :-1], use_cache=True)
        step = model(input_ids=ids[:, -1:], past_key_values=prefix.past_key_values, use_cache=True).logits[:, -1]
        torch.testing.assert_close(step, full, atol=1e-5, rtol=1e-5)
        cached = model.generate(ids, max_new_tokens=6, do_sample=False, use_cache=True)
        uncached = model.generate(ids, max_new_tokens=6, do_sample=False, use_cache=False)
        assert torch.equal(cached, uncached)
        # deactivated: the base model, generate still works with the larger cache
        model.deactivate_adapter("default")
        plain = models.llama()[0].generate(ids, max_new_tokens=6, do_sample=False)
        assert torch.equal(model.generate(ids, max_new_tokens=6, do_sample=False), plain)
    model.delete_adapter("default")
    assert base.config.num_hidden_layers == 2
    assert not any(isinstance(m, LLaMAProLayer) for m in base.modules())


def test_groups_place_copies_after_each_group():
    base, _ = models.llama()
    model = Swift.prepare_model(base, LLaMAProConfig(num_new_blocks=2, num_groups=1))
    first, last = model.base_model.model.layers
    assert not isinstance(first, LLaMAProLayer) and len(last.llamapro_block["default"]) == 2
    assert [b.self_attn.layer_idx for b in last.llamapro_block["default"]] == [2, 3]
    with pytest.raises(ValueError, match="num_groups"):
        Swift.prepare_model(models.llama()[0], LLaMAProConfig(num_new_blocks=3))  # 2 blocks, 3 groups


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.up, self.down = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, h):
        return h + self.down(torch.relu(self.up(h)))


class Stack(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(Block(6) for _ in range(4))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def test_custom_block_stack():
    torch.manual_seed(0)
    stack = Stack()
    x = torch.randn(3, 6)
    y0 = stack(x).detach()
    model = Swift.prepare_model(stack, LLaMAProConfig(num_new_blocks=2, zero_modules=["down"]))
    torch.testing.assert_close(model(x), y0)  # identity at init (down weight and bias zeroed)
    _perturb_new_blocks(model)
    b = stack.blocks
    h = b[0](x)
    h = b[1].llamapro_block["default"][0](b[1].base_layer(h))
    h = b[3].llamapro_block["default"][0](b[3].base_layer(b[2](h)))
    torch.testing.assert_close(model(x), h)
    with pytest.raises(ValueError, match="zero_modules"):
        Swift.prepare_model(Stack(), LLaMAProConfig(num_new_blocks=1, zero_modules=["o_proj"]))
