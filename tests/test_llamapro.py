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


KIT_CASES = {
    "llama": lambda: LLaMAProConfig(model_type="llama", num_new_blocks=2),
    # pre-LN stacks work too once the output projections are named; post-LN BERT cannot be an identity block
    "gpt2": lambda: LLaMAProConfig(num_new_blocks=2, zero_modules=["attn.c_proj", "mlp.c_proj"]),
    "vit": lambda: LLaMAProConfig(num_new_blocks=2, zero_modules=["attention.o_proj", "mlp.fc2"]),
}


@pytest.mark.parametrize("model_name", list(KIT_CASES))
def test_conformance(model_name, tmp_path):
    report = check_tuner(KIT_CASES[model_name], models.MODELS[model_name], tmp_path=str(tmp_path))
    assert {"identity", "perturbed", "save_load", "train", "two_adapters", "delete"} <= set(report.passed)


def test_sliding_window_layer_types_and_cache():
    """Qwen2 with per-layer attention types: new blocks take their source's type and cache slot."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, use_sliding_window=True, sliding_window=4, max_window_layers=1)
    base = Qwen2ForCausalLM(cfg).eval()
    assert cfg.layer_types == ["full_attention", "sliding_attention"]
    ids = torch.randint(0, 64, (1, 6))
    with torch.no_grad():
        expected = base.generate(ids, max_new_tokens=8, do_sample=False)
        model = Swift.prepare_model(base, LLaMAProConfig(model_type="qwen2", num_new_blocks=2))
        # in list order, as Qwen2's loop reads them: each new block after its source, with its type
        assert cfg.layer_types == ["full_attention", "full_attention", "sliding_attention", "sliding_attention"]
        assert torch.equal(model.generate(ids, max_new_tokens=8, do_sample=False), expected)  # identity blocks
        _perturb_new_blocks(model)
        cached = model.generate(ids, max_new_tokens=8, do_sample=False, use_cache=True)
        assert torch.equal(cached, model.generate(ids, max_new_tokens=8, do_sample=False, use_cache=False))
    model.delete_adapter("default")
    assert cfg.layer_types == ["full_attention", "sliding_attention"] and cfg.num_hidden_layers == 2


def test_new_blocks_are_identity_copies():
    base, inputs = models.llama()
    source = [layer.state_dict() for layer in base.model.layers]
    model = Swift.prepare_model(base, LLaMAProConfig(num_new_blocks=2))
    layers = model.base_model.model.layers  # ms-swift's lengthened list: [L0, N0, L1, N1]
    for i, layer in enumerate([layers[0], layers[2]]):
        assert isinstance(layer, LLaMAProLayer)  # 2 groups of 1 block: a copy after each
        new = layer.llamapro_block["default"][0]
        assert layers[2 * i + 1] is new
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
    order = [layers[0].base_layer, layers[1], layers[2].base_layer, layers[3]]
    assert layers[1] is layers[0].llamapro_block["default"][0] and layers[3] is layers[2].llamapro_block["default"][0]
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
    assert [block.self_attn.layer_idx for block in base.model.layers] == [0, 1, 2, 3]  # cache slot = position
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
        assert len(base.model.layers) == base.config.num_hidden_layers == 2
        assert [block.self_attn.layer_idx for block in base.model.layers] == [0, 1]
        plain = models.llama()[0].generate(ids, max_new_tokens=6, do_sample=False)
        assert torch.equal(model.generate(ids, max_new_tokens=6, do_sample=False), plain)
        model.activate_adapter("default")
        assert len(base.model.layers) == base.config.num_hidden_layers == 4
        assert torch.equal(model.generate(ids, max_new_tokens=6, do_sample=False), cached)
    model.delete_adapter("default")
    assert base.config.num_hidden_layers == 2
    assert not any(isinstance(m, LLaMAProLayer) for m in base.modules())
    assert type(base.model.layers) is nn.ModuleList and len(base.model.layers) == 2


def test_groups_place_copies_after_each_group():
    base, _ = models.llama()
    model = Swift.prepare_model(base, LLaMAProConfig(num_new_blocks=2, num_groups=1))
    first, last, *new = model.base_model.model.layers
    assert not isinstance(first, LLaMAProLayer) and new == list(last.llamapro_block["default"]) and len(new) == 2
    assert [b.self_attn.layer_idx for b in new] == [2, 3]
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
    b = stack.blocks  # [B0, B1, N1, B2, B3, N3]
    assert len(b) == 6 and b[2] is b[1].llamapro_block["default"][0] and b[5] is b[4].llamapro_block["default"][0]
    h = b[0](x)
    h = b[2](b[1].base_layer(h))
    h = b[5](b[4].base_layer(b[3](h)))
    torch.testing.assert_close(model(x), h)
    with pytest.raises(ValueError, match="zero_modules"):
        Swift.prepare_model(Stack(), LLaMAProConfig(num_new_blocks=1, zero_modules=["o_proj"]))


@pytest.mark.parametrize("groups,new_indices", [(2, [1, 3]), (1, [2, 3])])
def test_checkpoint_keys_are_ms_swifts_lengthened_block_list(tmp_path, groups, new_indices):
    """ms-swift saves a new block under its index in the lengthened list ([L0, N0, L1, N1] -> 1, 3);
    swiftlite writes the same keys, reads them back, and still reads its older nested keys."""
    from safetensors.torch import load_file, save_file

    base, inputs = models.llama()
    model = Swift.prepare_model(base, LLaMAProConfig(num_new_blocks=2, num_groups=groups))
    _perturb_new_blocks(model, seed=3)
    layers = model.base_model.model.layers
    new_blocks = [b for layer in layers if isinstance(layer, LLaMAProLayer) for b in layer.llamapro_block["default"]]
    expected = {f"model.layers.{j}.{k}": v for j, block in zip(new_indices, new_blocks) for k, v in block.state_dict().items()}
    model.save_pretrained(str(tmp_path))
    saved = load_file(str(tmp_path / "default" / "adapter_model.safetensors"))
    assert sorted(saved) == sorted(expected)
    assert all(torch.equal(saved[k], expected[k]) for k in saved)
    with torch.no_grad():
        y = model(**inputs).logits
        loaded = Swift.from_pretrained(models.llama()[0], str(tmp_path), adapter_name={"default": "other"})
        torch.testing.assert_close(loaded(**inputs).logits, y, atol=0, rtol=0)
        save_file({k: v.contiguous() for k, v in model.state_dict(adapter_name="default").items()},
                  str(tmp_path / "default" / "adapter_model.safetensors"))  # swiftlite's older nested keys
        older = Swift.from_pretrained(models.llama()[0], str(tmp_path))
        torch.testing.assert_close(older(**inputs).logits, y, atol=0, rtol=0)


def test_block_list_is_ms_swifts_lengthened_list_and_comes_back():
    """`model.model.model.layers` lists every block as ms-swift's expanded model does (len ==
    config.num_hidden_layers); deactivating hides the new blocks, deleting gives the original list back."""
    base, inputs = models.llama()
    originals = list(base.model.layers)
    expected = base(**inputs).logits.detach()
    model = Swift.prepare_model(base, LLaMAProConfig(num_new_blocks=2))
    layers = model.model.model.layers
    assert len(layers) == model.config.num_hidden_layers == 4
    assert [type(b).__name__ for b in layers] == ["LLaMAProLayer", "LlamaDecoderLayer"] * 2
    assert not any(name.startswith("model.layers.2") for name, _ in base.named_modules())  # keys stay nested
    model.deactivate_adapter("default")
    assert len(layers) == model.config.num_hidden_layers == 2
    assert [b.base_layer for b in layers] == originals
    model.delete_adapter("default")
    assert type(base.model.layers) is nn.ModuleList and list(base.model.layers) == originals
    torch.testing.assert_close(base(**inputs).logits, expected)
