"""LoRA against its equations computed densely: h = W0 x + s·B A x, DoRA, merging, LoRA+, combining."""
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from swiftlite import Swift
from swiftlite.core import TunerLayer, tuner_layers
from swiftlite.testing import models
from swiftlite.tuners.lora import LoRAConfig, LoRALinear
from swiftlite.tuners.lora.lora_layers import LoRAConv1D, LoRAConv2d, LoRAEmbedding

# (model factory, targets, {module name: expected layer class})
CASES = {
    "linear": (models.mlp, ["fc1"], "fc1", LoRALinear),
    "embedding": (models.mlp, ["embed"], "embed", LoRAEmbedding),
    "conv2d": (models.cnn, ["conv1"], "conv1", LoRAConv2d),
    "conv1d": (models.gpt2, ["h.0.attn.c_attn"], "transformer.h.0.attn.c_attn", LoRAConv1D),
}


def _out(model, inputs):
    y = model(**inputs)
    return getattr(y, "logits", y)


def _prepare(case, **kw):
    factory, targets, path, cls = CASES[case]
    model, inputs = factory()
    sm = Swift.prepare_model(model, LoRAConfig(target_modules=targets, **kw))
    layer = sm.base_model.get_submodule(path)
    assert type(layer) is cls
    return sm, inputs, layer


def _perturb_magnitude(layer, name="default"):
    with torch.no_grad():
        m = layer.lora_magnitude_vector[name].weight
        m.mul_(1 + 0.3 * torch.rand_like(m))


def _dense_weight(layer, name="default"):
    """W' from the equations, written out per layer type, in the base weight's layout."""
    W0 = layer.base_layer.weight.detach()
    s = layer.scaling[name]
    if isinstance(layer, LoRAEmbedding):
        A, B = layer.lora_embedding_A[name], layer.lora_embedding_B[name]
        dW = (s * B @ A).T  # (num_embeddings, dim)
    else:
        A, B = layer.lora_A[name].weight, layer.lora_B[name].weight
        dW = s * B.flatten(1) @ A.flatten(1)
        dW = dW.T if isinstance(layer, LoRAConv1D) else dW.view(W0.shape)
    W = W0 + dW.detach()
    if name in layer.lora_magnitude_vector:
        m = layer.lora_magnitude_vector[name].weight.detach().reshape(-1)
        out_axis = 1 if isinstance(layer, (LoRAEmbedding, LoRAConv1D)) else 0
        other = [d for d in range(W.dim()) if d != out_axis]
        norm = torch.linalg.vector_norm(W, dim=other, keepdim=True)  # ||W0 + s·BA||_c
        shape = [-1 if d == out_axis else 1 for d in range(W.dim())]
        W = m.view(shape) * W / norm
    return W


def _dense_forward(layer, x, W):
    base = layer.base_layer
    if isinstance(layer, LoRAEmbedding):
        return F.embedding(x, W)
    if isinstance(layer, LoRAConv1D):
        return x @ W + base.bias
    if isinstance(layer, LoRAConv2d):
        return F.conv2d(x, W, base.bias, base.stride, base.padding, base.dilation)
    return F.linear(x, W, base.bias)


def _layer_input(case):
    g = torch.Generator().manual_seed(3)
    return {"linear": torch.randn(4, 12, generator=g), "embedding": torch.randint(0, 16, (3, 5), generator=g),
            "conv2d": torch.randn(2, 3, 8, 8, generator=g), "conv1d": torch.randn(2, 5, 32, generator=g)}[case]


@pytest.mark.parametrize("case", list(CASES))
def test_init_B_is_zero_and_output_is_base(case):
    factory = CASES[case][0]
    model, inputs = factory()
    y_base = _out(model, inputs)
    sm, inputs, layer = _prepare(case)
    B = layer.lora_embedding_B["default"] if isinstance(layer, LoRAEmbedding) else layer.lora_B["default"].weight
    assert torch.count_nonzero(B) == 0
    torch.testing.assert_close(_out(sm, inputs), y_base, rtol=0, atol=0)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("variant", [{}, {"use_rslora": True}, {"use_dora": True}])
def test_forward_equals_dense_equation(case, variant):
    torch.manual_seed(0)
    sm, _, layer = _prepare(case, r=4, lora_alpha=16, init_lora_weights=False, **variant)
    expected_s = 16 / 2 if variant.get("use_rslora") else 16 / 4
    assert layer.scaling["default"] == expected_s
    if variant.get("use_dora"):
        _perturb_magnitude(layer)
    x = _layer_input(case)
    torch.testing.assert_close(layer(x), _dense_forward(layer, x, _dense_weight(layer)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dora", [False, True])
def test_merge_equals_unmerged_and_unmerge_restores(case, dora):
    torch.manual_seed(0)
    sm, inputs, layer = _prepare(case, r=4, init_lora_weights=False, use_dora=dora)
    if dora:
        _perturb_magnitude(layer)
    W0 = layer.base_layer.weight.detach().clone()
    W_expected = _dense_weight(layer)
    y = _out(sm, inputs)
    sm.merge()
    torch.testing.assert_close(layer.base_layer.weight.detach(), W_expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_out(sm, inputs), y, rtol=1e-5, atol=1e-5)
    with pytest.warns(UserWarning, match="already merged"):
        sm.merge()  # idempotent
    torch.testing.assert_close(_out(sm, inputs), y, rtol=1e-5, atol=1e-5)
    sm.unmerge()
    torch.testing.assert_close(layer.base_layer.weight.detach(), W0, rtol=0, atol=0)  # exact
    torch.testing.assert_close(_out(sm, inputs), y, rtol=1e-5, atol=1e-5)


def test_merge_and_unload_gives_plain_model_with_same_output():
    torch.manual_seed(0)
    model, inputs = models.mlp()
    sm = Swift.prepare_model(model, LoRAConfig(target_modules=["embed", "fc1", "fc2", "head"], init_lora_weights=False))
    y = _out(sm, inputs)
    plain = sm.merge_and_unload()
    assert not any(isinstance(m, TunerLayer) for m in plain.modules())
    assert type(plain.fc1) is nn.Linear and type(plain.embed) is nn.Embedding
    torch.testing.assert_close(_out(plain, inputs), y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dora", [False, True])
def test_safe_merge_refuses_nan_and_changes_nothing(dora):
    model, inputs = models.mlp()
    sm = Swift.prepare_model(model, LoRAConfig(target_modules=["fc1", "fc2"], init_lora_weights=False, use_dora=dora))
    with torch.no_grad():
        sm.base_model.fc2.lora_B["default"].weight[0, 0] = float("nan")  # the second layer is broken
    before = {k: v.clone() for k, v in sm.base_model.state_dict().items() if "base_layer" in k}
    with pytest.raises(ValueError, match="NaN"):
        sm.merge(safe_merge=True)
    after = sm.base_model.state_dict()
    for k, v in before.items():
        torch.testing.assert_close(after[k], v, rtol=0, atol=0)  # fc1, merged first, was rolled back
    assert all(not layer.merged_adapters for _, layer in tuner_layers(sm.base_model))


def test_lora_plus_param_groups():
    model, _ = models.mlp()
    config = LoRAConfig(target_modules=["embed", "fc1"], lorap_lr_ratio=16.0, lorap_emb_lr=5e-6, use_dora=True,
                        modules_to_save=["head"])
    sm = Swift.prepare_model(model, config)
    groups = {g["name"]: g for g in sm.create_optimizer_param_groups(lr=1e-3, weight_decay=0.1)}
    names = {id(p): n for n, p in sm.base_model.named_parameters()}

    def members(group):
        return sorted(names[id(p)] for p in groups[group]["params"])

    assert groups["groupA"]["lr"] == 1e-3
    assert members("groupA") == ["fc1.lora_A.default.weight", "head.modules_to_save.default.weight"]
    assert groups["groupB"]["lr"] == pytest.approx(16e-3) and groups["groupB"]["weight_decay"] == 0.1
    assert members("groupB") == ["embed.lora_magnitude_vector.default.weight", "fc1.lora_B.default.weight",
                                 "fc1.lora_magnitude_vector.default.weight"]
    assert groups["groupB_no_decay"]["weight_decay"] == 0.0 and groups["groupB_no_decay"]["lr"] == pytest.approx(16e-3)
    assert members("groupB_no_decay") == ["head.modules_to_save.default.bias"]
    assert groups["embedding"]["lr"] == 5e-6
    assert members("embedding") == ["embed.lora_embedding_A.default", "embed.lora_embedding_B.default"]
    # every trainable parameter is in exactly one group, and torch accepts the groups
    all_ids = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(all_ids) == sorted(id(p) for p in sm.parameters() if p.requires_grad)
    torch.optim.AdamW(list(groups.values()))
    # without LoRA+ there is one plain group
    sm2 = Swift.prepare_model(models.mlp()[0], LoRAConfig(target_modules=["fc1"]))
    assert len(sm2.create_optimizer_param_groups(lr=1e-3)) == 1


@pytest.mark.parametrize("combination_type", ["linear", "svd"])
def test_add_weighted_adapter_matches_dense_expectation(combination_type):
    torch.manual_seed(0)
    model, inputs = models.mlp()
    sm = Swift.prepare_model(model, {
        "a": LoRAConfig(target_modules=["fc1", "embed"], r=4, lora_alpha=8, init_lora_weights=False),
        "b": LoRAConfig(target_modules=["fc1"], r=4, lora_alpha=4, init_lora_weights=False),
    })
    w = [0.7, -0.4]
    sm.add_weighted_adapter(["a", "b"], w, "mix", combination_type=combination_type)
    assert sm.adapters["mix"].r == 4 and sm.adapters["mix"].target_modules == ["embed", "fc1"]
    fc1, embed = sm.base_model.fc1, sm.base_model.embed
    A = {n: fc1.lora_A[n].weight.detach() for n in "ab"}
    B = {n: fc1.lora_B[n].weight.detach() for n in "ab"}
    s = {n: fc1.scaling[n] for n in "ab"}
    if combination_type == "linear":  # PEFT's 'linear': A and B mixed separately, sqrt of |w·s|
        ws = [w[0] * s["a"], w[1] * s["b"]]
        A_mix = sum(torch.sign(torch.tensor(v)) * abs(v) ** 0.5 * A[n] for v, n in zip(ws, "ab"))
        B_mix = sum(abs(v) ** 0.5 * B[n] for v, n in zip(ws, "ab"))
        expected = B_mix @ A_mix
    else:  # 'svd': best rank-4 approximation of Σ w·ΔW (which has rank ≤ 8)
        dense = w[0] * s["a"] * B["a"] @ A["a"] + w[1] * s["b"] * B["b"] @ A["b"]
        U, S, Vh = torch.linalg.svd(dense)
        expected = U[:, :4] @ torch.diag(S[:4]) @ Vh[:4]
    torch.testing.assert_close(fc1.delta_weight("mix"), expected, rtol=1e-4, atol=1e-5)
    # a module only adapter "a" targets mixes only "a"
    torch.testing.assert_close(embed.delta_weight("mix"), w[0] * embed.delta_weight("a"), rtol=1e-4, atol=1e-5)
    # the new adapter is a normal adapter: it activates and computes W0 + ΔW_mix
    sm.set_active_adapters("mix")
    x = _layer_input("linear")
    torch.testing.assert_close(fc1(x), F.linear(x, fc1.base_layer.weight + expected, fc1.base_layer.bias),
                               rtol=1e-4, atol=1e-5)
    if combination_type == "linear":
        sm2 = Swift.prepare_model(models.mlp()[0], {"a": LoRAConfig(target_modules=["fc1"], r=4),
                                                   "b": LoRAConfig(target_modules=["fc1"], r=2)})
        with pytest.raises(ValueError, match="equal ranks"):
            sm2.add_weighted_adapter(["a", "b"], [1.0, 1.0], "mix", combination_type="linear")


def test_svd_exact_when_rank_suffices():
    torch.manual_seed(0)
    model, inputs = models.cnn()
    sm = Swift.prepare_model(model, {n: LoRAConfig(target_modules=["conv1"], r=2, init_lora_weights=False) for n in "ab"})
    sm.add_weighted_adapter(["a", "b"], [1.0, 0.5], "mix", combination_type="svd", svd_rank=4)
    conv = sm.base_model.conv1
    torch.testing.assert_close(conv.delta_weight("mix"), conv.delta_weight("a") + 0.5 * conv.delta_weight("b"),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("combination_type", ["svd", "linear"])
def test_add_weighted_adapter_names_the_adapter_with_non_finite_weights(combination_type):
    """A NaN in one adapter: the error names that adapter and its layer (the SVD alone would only say it failed to
    converge), and nothing is added."""
    sm = Swift.prepare_model(models.mlp()[0], {n: LoRAConfig(target_modules=["fc1"], r=2) for n in ("good", "bad")})
    with torch.no_grad():
        sm.base_model.fc1.lora_B["bad"].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"adapter 'bad' has NaN/inf weights in 'fc1'") as err:
        sm.add_weighted_adapter(["good", "bad"], [1.0, 1.0], "mix", combination_type=combination_type)
    assert "'good'" not in str(err.value)
    assert "mix" not in sm.adapters and "mix" not in sm.base_model.fc1.scaling
    with pytest.raises(ValueError, match=r"weights: the weight of adapter 'good' is inf"):
        sm.add_weighted_adapter(["good"], [float("inf")], "mix", combination_type=combination_type)


@pytest.mark.parametrize("svd_rank", [-1, 0, 1.5, True])
def test_add_weighted_adapter_refuses_a_bad_svd_rank_by_name(svd_rank):
    sm = Swift.prepare_model(models.mlp()[0], {n: LoRAConfig(target_modules=["fc1"], r=2) for n in "ab"})
    with pytest.raises(ValueError, match=rf"^svd_rank={svd_rank!r}: expected a positive int") as err:
        sm.add_weighted_adapter(["a", "b"], [1.0, 1.0], "mix", combination_type="svd", svd_rank=svd_rank)
    assert "LoRAConfig.r" not in str(err.value) and "mix" not in sm.adapters


def test_lora_dtype_bfloat16():
    torch.manual_seed(0)
    model, inputs = models.mlp()
    sm = Swift.prepare_model(model, LoRAConfig(target_modules=["fc1", "embed"], lora_dtype="bfloat16",
                                               init_lora_weights=False, use_dora=True))
    fc1 = sm.base_model.fc1
    assert fc1.lora_A["default"].weight.dtype == torch.bfloat16
    assert sm.base_model.embed.lora_embedding_A["default"].dtype == torch.bfloat16
    assert fc1.base_layer.weight.dtype == torch.float32
    x = _layer_input("linear")
    y = fc1(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, _dense_forward(fc1, x, _dense_weight(fc1)), rtol=2e-2, atol=2e-2)
    _out(sm, inputs).sum().backward()  # gradients flow to bf16 factors
    assert fc1.lora_A["default"].weight.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("field_name, value", list(LoRAConfig._invalid_examples.items()))
def test_invalid_config_names_the_field(field_name, value):
    kwargs = {"target_modules": ["fc1"], field_name: value}
    with pytest.raises(ValueError, match=rf"LoRAConfig\.{field_name}"):
        LoRAConfig(**kwargs)


def test_target_matching_nothing_lists_near_names():
    model, _ = models.mlp()
    with pytest.raises(ValueError, match=r"matched no module.*fc1 \(Linear\)"):
        Swift.prepare_model(model, LoRAConfig(target_modules=["fc_1"]))
    with pytest.raises(ValueError, match=r"unsupported types.*norm \(LayerNorm\)"):
        Swift.prepare_model(model, LoRAConfig(target_modules=["norm"]))


def test_failing_injection_leaves_no_partial_layers():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(4, 4, 3)
            self.b = nn.Conv2d(4, 4, 3, groups=2)  # not supported: injection fails on this second target

        def forward(self, x):
            return self.b(self.a(x))

    net = Net()
    keys = set(net.state_dict())
    with pytest.raises(ValueError, match="groups=2"):
        Swift.prepare_model(net, LoRAConfig(target_modules=["a", "b"]))
    assert type(net.a) is nn.Conv2d and type(net.b) is nn.Conv2d
    assert set(net.state_dict()) == keys


def test_two_adapters_on_one_layer_and_delete():
    torch.manual_seed(0)
    model, inputs = models.mlp()
    y_base = _out(model, inputs)
    sm = Swift.prepare_model(model, {"a": LoRAConfig(target_modules=["fc1"], init_lora_weights=False),
                                     "b": LoRAConfig(target_modules=["fc1"], r=2, init_lora_weights=False)})
    fc1 = sm.base_model.fc1
    x = _layer_input("linear")
    W = fc1.base_layer.weight + fc1.delta_weight("a") + fc1.delta_weight("b")
    torch.testing.assert_close(fc1(x), F.linear(x, W, fc1.base_layer.bias), rtol=1e-5, atol=1e-5)
    sm.delete_adapter("a")
    assert "a" not in fc1.scaling and set(fc1.adapter_names) == {"b"}
    sm.delete_adapter("b")
    assert type(sm.base_model.fc1) is nn.Linear
    torch.testing.assert_close(_out(sm, inputs), y_base, rtol=0, atol=0)


def test_dropout_only_in_training():
    torch.manual_seed(0)
    model, inputs = models.mlp()
    sm = Swift.prepare_model(model, LoRAConfig(target_modules=["fc1"], lora_dropout=0.5, init_lora_weights=False))
    x = _layer_input("linear")
    fc1 = sm.base_model.fc1
    fc1.eval()
    torch.testing.assert_close(fc1(x), F.linear(x, _dense_weight(fc1), fc1.base_layer.bias), rtol=1e-5, atol=1e-5)
    fc1.train()
    assert not torch.allclose(fc1(x), fc1(x))  # random masks on the LoRA branch


def test_importing_lora_does_not_import_transformers():
    code = "import sys, swiftlite.tuners.lora; assert 'transformers' not in sys.modules, 'transformers imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unmerging_an_adapter_merged_under_another():
    """merge a, merge b, unmerge a only: the weight then holds W0 + ΔW_b (up to rounding)."""
    torch.manual_seed(0)
    model, inputs = models.mlp()
    sm = Swift.prepare_model(model, {"a": LoRAConfig(target_modules=["fc1"], init_lora_weights=False),
                                     "b": LoRAConfig(target_modules=["fc1"], init_lora_weights=False)})
    fc1 = sm.base_model.fc1
    W0 = fc1.base_layer.weight.detach().clone()
    sm.merge(["a", "b"])
    sm.unmerge("a")
    assert fc1.merged_adapters == ["b"]
    torch.testing.assert_close(fc1.base_layer.weight.detach(), W0 + fc1.delta_weight("b"), rtol=1e-5, atol=1e-6)
    sm.unmerge()
    torch.testing.assert_close(fc1.base_layer.weight.detach(), W0, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dora", [False, True])
def test_unmerge_in_any_order_is_exact(dora):
    """merge a, merge b, unmerge a: exactly as if only b had been merged (DoRA too); then W0 bit for bit."""
    torch.manual_seed(0)
    model, inputs = models.mlp()
    sm = Swift.prepare_model(model, {n: LoRAConfig(target_modules=["fc1"], init_lora_weights=False, use_dora=dora)
                                     for n in "ab"})
    W = sm.base_model.fc1.base_layer.weight
    W0 = W.detach().clone()
    sm.merge("b")
    only_b = W.detach().clone()
    sm.unmerge()
    assert torch.equal(W, W0)
    sm.merge(["a", "b"])
    sm.unmerge("a")
    assert torch.equal(W, only_b)
    sm.unmerge()
    assert torch.equal(W, W0)


def test_unmerge_after_moving_the_model_keeps_its_dtype():
    torch.manual_seed(0)
    model, inputs = models.mlp()
    sm = Swift.prepare_model(model, LoRAConfig(target_modules=["fc1"], init_lora_weights=False))
    W0 = sm.base_model.fc1.base_layer.weight.detach().clone().double()
    sm.merge()
    sm.base_model.double()  # the saved pre-merge weight is float32: it must not come back
    sm.unmerge()
    W = sm.base_model.fc1.base_layer.weight
    assert W.dtype == torch.float64
    torch.testing.assert_close(W.detach(), W0, rtol=1e-5, atol=1e-6)


def test_modules_to_save_round_trip(tmp_path):
    torch.manual_seed(0)
    model, inputs = models.mlp()
    sm = Swift.prepare_model(model, LoRAConfig(target_modules=["fc1"], modules_to_save=["head"], init_lora_weights=False))
    with torch.no_grad():
        sm.base_model.head.modules_to_save["default"].weight.add_(0.5)  # the trained copy differs from the base head
    y = _out(sm, inputs)
    assert "head.weight" in sm.state_dict(adapter_name="default")  # the copy is saved under the module's own names
    sm.save_pretrained(str(tmp_path))
    loaded = Swift.from_pretrained(models.mlp()[0], str(tmp_path))
    torch.testing.assert_close(_out(loaded, inputs), y, rtol=0, atol=0)
    with loaded.disable_adapter():
        torch.testing.assert_close(_out(loaded, inputs), _out(models.mlp()[0], inputs), rtol=0, atol=0)


@pytest.mark.parametrize("dora", [False, True])
def test_merged_linear_gpt2_qkv_only_enabled_chunks(dora):
    """use_merged_linear on GPT-2's fused c_attn (Conv1D, (d_in, 3·d) weight) with LoRA on q and v only."""
    torch.manual_seed(0)
    model, inputs = models.gpt2()
    sm = Swift.prepare_model(model, LoRAConfig(target_modules=["c_attn"], r=4, use_merged_linear=True,
                                               enable_lora=[True, False, True], init_lora_weights=False, use_dora=dora))
    layer = sm.base_model.transformer.h[0].attn.c_attn
    assert layer.lora_A["default"].weight.shape == (8, 32) and layer.lora_B["default"].weight.shape == (64, 4)
    A, B = layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
    dW = torch.zeros(96, 32)  # (d_out, d_in): q rows from (B_0, A_0), v rows from (B_1, A_1), k rows stay 0
    dW[:32] = B[:32] @ A[:4]
    dW[64:] = B[32:] @ A[4:]
    torch.testing.assert_close(layer.delta_weight("default"), layer.scaling["default"] * dW.T, rtol=1e-5, atol=1e-6)
    if dora:
        _perturb_magnitude(layer)
    x = _layer_input("conv1d")
    W = layer.base_layer.weight.detach() + layer.scaling["default"] * dW.T
    if dora:
        m = layer.lora_magnitude_vector["default"].weight.detach()
        W = m * W / torch.linalg.vector_norm(W, dim=0)
    torch.testing.assert_close(layer(x), x @ W + layer.base_layer.bias, rtol=1e-5, atol=1e-5)
    y = _out(sm, inputs)
    sm.merge()
    torch.testing.assert_close(_out(sm, inputs), y, rtol=1e-5, atol=1e-5)
    sm.unmerge()
    with pytest.raises(ValueError, match="no PEFT format"):
        sm.save_pretrained("/nonexistent-not-written", peft_format=True)


def test_merged_linear_errors():
    with pytest.raises(ValueError, match="LoRAConfig.enable_lora: 2 chunks do not divide out_features=5"):
        net = nn.Sequential(nn.Linear(4, 5))
        Swift.prepare_model(net, LoRAConfig(target_modules=["0"], use_merged_linear=True, enable_lora=[True, False]))
    assert type(net[0]) is nn.Linear
    with pytest.raises(ValueError, match="use_merged_linear applies to Linear"):
        Swift.prepare_model(models.cnn()[0], LoRAConfig(target_modules=["conv1"], use_merged_linear=True, enable_lora=[True]))


@pytest.mark.parametrize("offload", ["cpu", "meta"])
def test_offload_and_reactivate_embedding_and_dora(offload):
    """Embedding LoRA keeps bare nn.Parameters (a ParameterDict); offloading must bring them back too."""
    torch.manual_seed(0)
    model, inputs = models.mlp()
    sm = Swift.prepare_model(model, LoRAConfig(target_modules=["embed", "fc1"], init_lora_weights=False, use_dora=True))
    y = _out(sm, inputs)
    sm.deactivate_adapter("default", offload=offload)
    torch.testing.assert_close(_out(sm, inputs), _out(models.mlp()[0], inputs), rtol=0, atol=0)
    sm.activate_adapter("default")
    torch.testing.assert_close(_out(sm, inputs), y, rtol=0, atol=0)


def test_one_forward_for_every_layer_type():
    """h = W0 x + s·B A x is written once, in LoRALayer.forward; layer types only say how A and B apply."""
    from swiftlite.tuners.lora import LoRALayer
    from swiftlite.tuners.lora.lora_merged import LoRAMergedConv1D, LoRAMergedLinear

    for cls in (LoRALinear, LoRAConv1D, LoRAConv2d, LoRAEmbedding, LoRAMergedLinear, LoRAMergedConv1D):
        assert cls.forward is LoRALayer.forward, cls.__name__


def test_lora_plus_groups_by_owning_module_not_by_name():
    """A base module that happens to be called `lora_B` is a plain Linear: its copy's weight is groupA; a
    LayerNorm copy's 1-D weight gets no weight decay because of its type, not its name."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Module()
            self.block.lora_B = nn.Linear(6, 6)  # a name a substring rule would take for LoRA's B
            self.block.scale = nn.LayerNorm(6)
            self.fc = nn.Linear(6, 6)

        def forward(self, x):
            return self.fc(self.block.scale(self.block.lora_B(x)))

    sm = Swift.prepare_model(Net(), LoRAConfig(target_modules=["fc"], modules_to_save=["lora_B", "scale"],
                                               lorap_lr_ratio=4.0))
    groups = {g["name"]: g for g in sm.create_optimizer_param_groups(lr=1e-3, weight_decay=0.1)}
    names = {id(p): n for n, p in sm.base_model.named_parameters()}
    members = {g: sorted(names[id(p)] for p in groups[g]["params"]) for g in groups}
    assert members["groupA"] == ["block.lora_B.modules_to_save.default.weight", "fc.lora_A.default.weight"]
    assert members["groupB"] == ["fc.lora_B.default.weight"]
    assert members["groupB_no_decay"] == ["block.lora_B.modules_to_save.default.bias",
                                          "block.scale.modules_to_save.default.bias",
                                          "block.scale.modules_to_save.default.weight"]


def test_gaussian_init_as_peft():
    torch.manual_seed(0)
    sm = Swift.prepare_model(nn.Sequential(nn.Linear(256, 256)), LoRAConfig(target_modules=["0"], r=4,
                                                                            init_lora_weights="gaussian"))
    A, B = sm.base_model[0].lora_A["default"].weight, sm.base_model[0].lora_B["default"].weight
    assert torch.count_nonzero(B) == 0
    assert abs(A.std().item() - 1 / 4) < 0.02  # PEFT's "gaussian": A ~ N(0, 1/r²)


def test_lora_forward_makes_fewer_python_calls_than_peft():
    """Per-layer Python overhead, counted exactly (cProfile's call count of one forward, no timing), against PEFT's
    LoRA on the same LLaMA in the same process, as benchmarks/lora_vs_peft.py reports it."""
    import cProfile
    import copy
    import pstats

    peft = pytest.importorskip("peft")
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model, inputs = models.llama()
    ours = Swift.prepare_model(copy.deepcopy(model), LoRAConfig(r=4, target_modules=targets)).eval()
    theirs = peft.get_peft_model(copy.deepcopy(model), peft.LoraConfig(r=4, target_modules=targets)).eval()

    def calls(m) -> int:
        with torch.no_grad():
            m(**inputs)  # warm: first-call caches are not per-forward overhead
            profiler = cProfile.Profile()
            profiler.enable()
            m(**inputs)
            profiler.disable()
        return pstats.Stats(profiler).total_calls

    n_layers = sum(isinstance(m, LoRALinear) for m in ours.modules())
    assert n_layers == 7 * model.config.num_hidden_layers
    ours_calls, peft_calls = calls(ours), calls(theirs)
    assert ours_calls < peft_calls, (f"swiftlite LoRA makes {ours_calls} Python calls per forward, PEFT {peft_calls} "
                                     f"({n_layers} LoRA layers)")
