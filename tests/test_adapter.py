"""Adapter (Houlsby et al., 2019): h = x + W_2·act(W_1·x + b_1) + b_2 on a module's output."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from swiftlite.testing import models
from swiftlite import AdapterConfig, Swift
from swiftlite.tuners.adapter import AdapterLayer


def _randomize(model, adapter_name="default", seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model._adapter_named_parameters(adapter_name):
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def _adapter_ref(x, adapter):
    """The paper's equation written out densely."""
    w1, b1 = adapter.linear1.weight, adapter.linear1.bias
    w2, b2 = adapter.linear2.weight, adapter.linear2.bias
    return x + F.gelu(x @ w1.T + b1) @ w2.T + b2


class TupleBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x, scale=1.0):
        return x * 2, self.fc(x) * scale, "keep"


class DictBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x):
        return {"other": x, "h": self.fc(x)}


def test_init_is_identity_and_w2_is_zero():
    base, inputs = models.mlp()
    y0 = base(**inputs)
    model = Swift.prepare_model(base, AdapterConfig(dim=24, target_modules=["fc2"], adapter_length=4))
    adapter = model.base_model.fc2.adapter_default
    assert torch.count_nonzero(adapter.linear2.weight) == 0 and torch.count_nonzero(adapter.linear2.bias) == 0
    assert torch.count_nonzero(adapter.linear1.weight) > 0
    torch.testing.assert_close(model(**inputs), y0, atol=0, rtol=0)
    names = sorted(model.state_dict(adapter_name="default"))
    assert names == ["fc2.adapter_default.linear1.bias", "fc2.adapter_default.linear1.weight",
                     "fc2.adapter_default.linear2.bias", "fc2.adapter_default.linear2.weight"]


def test_equation_on_tensor_output():
    torch.manual_seed(0)
    block = nn.Sequential(nn.Linear(6, 6))
    x = torch.randn(3, 4, 6)
    fc_out = block[0](x)
    model = Swift.prepare_model(block, AdapterConfig(dim=6, target_modules=["0"], adapter_length=5))
    _randomize(model)
    torch.testing.assert_close(model(x), _adapter_ref(fc_out, block[0].adapter_default))


def test_tuple_output_adapts_only_hidden_pos_and_passes_kwargs():
    torch.manual_seed(0)
    root = nn.Module()
    root.block = TupleBlock()
    x = torch.randn(2, 3, 6)
    ref = root.block(x, scale=0.5)
    model = Swift.prepare_model(root, AdapterConfig(dim=6, target_modules=["block"], hidden_pos=1, adapter_length=3))
    _randomize(model)
    out = model.base_model.block(x, scale=0.5)
    assert isinstance(out, tuple) and out[2] == "keep"
    torch.testing.assert_close(out[0], ref[0], atol=0, rtol=0)
    torch.testing.assert_close(out[1], _adapter_ref(ref[1], model.base_model.block.adapter_default))


def test_dict_and_model_output():
    from transformers.modeling_outputs import BaseModelOutput

    torch.manual_seed(0)
    root = nn.Module()
    root.block = DictBlock()
    x = torch.randn(2, 3, 6)
    ref = root.block(x)
    model = Swift.prepare_model(root, AdapterConfig(dim=6, target_modules=["block"], hidden_pos="h", adapter_length=3))
    _randomize(model)
    out = model.base_model.block(x)
    torch.testing.assert_close(out["other"], ref["other"], atol=0, rtol=0)
    torch.testing.assert_close(out["h"], _adapter_ref(ref["h"], model.base_model.block.adapter_default))

    layer = model.base_model.block
    from swiftlite.tuners.adapter import apply_to_hidden

    mo = BaseModelOutput(last_hidden_state=x.clone(), hidden_states=(x,))
    mo = apply_to_hidden(mo, "last_hidden_state", layer.adapter_default)
    torch.testing.assert_close(mo.last_hidden_state, _adapter_ref(x, layer.adapter_default))
    torch.testing.assert_close(mo[0], mo.last_hidden_state)


def test_llama_decoder_layers_keep_hf_kwargs_and_match_forward_hooks():
    """Wrapping whole LlamaDecoderLayers (which take position_embeddings, masks, caches as kwargs)
    gives exactly what forward hooks applying the same adapters on the untouched model give."""
    base, inputs = models.llama()
    reference, _ = models.llama()
    model = Swift.prepare_model(base, AdapterConfig(dim=32, target_modules=r"model\.layers\.\d+", adapter_length=8))
    _randomize(model)
    for i, layer in enumerate(reference.model.layers):
        adapter = model.base_model.model.layers[i].adapter_default
        layer.register_forward_hook(lambda m, a, out, ad=adapter: _adapter_ref(out, ad))
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, reference(**inputs).logits, atol=1e-5, rtol=1e-5)


def test_adapter_is_a_child_named_as_in_ms_swift_and_a_clashing_name_is_refused():
    base, inputs = models.mlp()
    model = Swift.prepare_model(base, {"a": AdapterConfig(dim=24, target_modules=["fc2"], adapter_length=4),
                                       "b": AdapterConfig(dim=24, target_modules=["fc2"], adapter_length=4)})
    layer = model.base_model.fc2
    assert [n for n, _ in layer.named_children()] == ["base_layer", "adapter_a", "adapter_b"]  # setattr(module, f'adapter_{name}')
    model.delete_adapter("a")
    assert [n for n, _ in layer.named_children()] == ["base_layer", "adapter_b"]
    with pytest.raises(ValueError, match="'adapter_names'"):  # the child would shadow TunerLayer.adapter_names
        Swift.prepare_model(model, {"names": AdapterConfig(dim=24, target_modules=["fc2"], adapter_length=4)})
    assert list(model.adapters) == ["b"] and layer.adapter_names == ["b"]


def test_hooking_a_method_equals_adapting_its_submodule():
    """BertLayer.feed_forward_chunk returns BertOutput's output: adapting either is the same computation."""
    via_method = Swift.prepare_model(models.bert()[0], AdapterConfig(
        dim=32, target_modules=r".*layer\.\d+", method_name="feed_forward_chunk", adapter_length=8))
    via_module = Swift.prepare_model(models.bert()[0], AdapterConfig(
        dim=32, target_modules=r".*layer\.\d+\.output", adapter_length=8))
    _, inputs = models.bert()
    _randomize(via_method)
    state = {k.replace(".adapter_default.", ".output.adapter_default."): v for k, v in via_method.state_dict(adapter_name="default").items()}
    via_module.load_state_dict(state)
    with torch.no_grad():
        y = via_method(**inputs).last_hidden_state
        torch.testing.assert_close(y, via_module(**inputs).last_hidden_state)
        # a deep copy hooks its own copy of the adapter
        clone = copy.deepcopy(via_method)
        torch.testing.assert_close(clone(**inputs).last_hidden_state, y)
        clone.base_model.encoder.layer[0].adapter_default.linear2.bias.add_(1.0)
        torch.testing.assert_close(via_method(**inputs).last_hidden_state, y)
    bert_layer = via_method.base_model.encoder.layer[0].base_layer
    assert "feed_forward_chunk" in vars(bert_layer)
    via_method.delete_adapter("default")
    assert "feed_forward_chunk" not in vars(bert_layer)  # the class method is back
    assert not isinstance(via_method.base_model.encoder.layer[0], AdapterLayer)


@pytest.mark.parametrize("field,value", [("dim", None), ("adapter_length", 0), ("act_layer", "gelu2"),
                                         ("hidden_pos", 1.5), ("method_name", "not a name"), ("init_weights", "zero")])
def test_invalid_fields_are_named(field, value):
    kwargs = dict(dim=8, target_modules=["fc"])
    kwargs[field] = value
    with pytest.raises(ValueError, match=field):
        AdapterConfig(**kwargs)


def test_unknown_method_is_rejected_and_model_untouched():
    base, _ = models.mlp()
    with pytest.raises(ValueError, match="method_name"):
        Swift.prepare_model(base, AdapterConfig(dim=24, target_modules=["fc2"], method_name="no_such_method"))
    assert isinstance(base.fc2, nn.Linear)


def _ms_swift_adapter_weights(dim, adapter_length, seed):
    """ms-swift's AdapterModule init written out: two default nn.Linear, then `apply` visits linear1 and
    linear2 in order: xavier_uniform_(weight), normal_(bias, std=1e-6)."""
    torch.manual_seed(seed)
    linear1, linear2 = nn.Linear(dim, adapter_length), nn.Linear(adapter_length, dim)
    for m in (linear1, linear2):
        nn.init.xavier_uniform_(m.weight)
        nn.init.normal_(m.bias, std=1e-6)
    return {"linear1.weight": linear1.weight, "linear1.bias": linear1.bias,
            "linear2.weight": linear2.weight, "linear2.bias": linear2.bias}


def test_xavier_init_reproduces_ms_swift_and_default_stays_identity():
    block = nn.Sequential(nn.Linear(6, 6))
    x = torch.randn(3, 6)
    torch.manual_seed(7)
    model = Swift.prepare_model(block, AdapterConfig(dim=6, target_modules=["0"], adapter_length=5, init_weights="xavier"))
    adapter = block[0].adapter_default
    expected = _ms_swift_adapter_weights(6, 5, seed=7)
    for name, p in adapter.named_parameters():  # the same numbers, drawn in the same order
        torch.testing.assert_close(p, expected[name], rtol=0, atol=0, msg=name)
    assert torch.count_nonzero(adapter.linear2.weight) > 0
    torch.testing.assert_close(model(x), _adapter_ref(block[0].base_layer(x), adapter))
    assert not torch.allclose(model(x), block[0].base_layer(x))  # ms-swift's adapter does not start as identity
    # the option survives a save / load round trip through the config
    assert AdapterConfig.from_dict(model.adapters["default"].to_dict()).init_weights == "xavier"
    torch.manual_seed(7)
    identity = Swift.prepare_model(nn.Sequential(nn.Linear(6, 6)), AdapterConfig(dim=6, target_modules=["0"], adapter_length=5))
    assert torch.count_nonzero(identity.base_model[0].adapter_default.linear2.weight) == 0
