"""Res-Attn: the branch against a dense hand computation, its init, masks, and its config errors."""
from __future__ import annotations

import pytest
import torch

from swiftlite import Swift
from swiftlite.testing import kit, models
from swiftlite.tuners import ResAttn, ResAttnConfig, UTuningConfig


def test_branch_equals_dense_multi_head_attention_in_the_rank_r_space():
    torch.manual_seed(0)
    d, d_out, r, h = 12, 10, 8, 2
    branch = ResAttn(d, d_out, r, h)
    torch.nn.init.normal_(branch.o.weight)
    x = torch.randn(3, 5, d)
    q, k, v = (x @ getattr(branch, n).weight.T for n in "qkv")  # (B, T, r)
    outs = []
    for i in range(h):  # head i uses columns i·r/h ... (i+1)·r/h
        sl = slice(i * r // h, (i + 1) * r // h)
        weights = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / (r // h) ** 0.5, dim=-1)
        outs.append(weights @ v[..., sl])
    expected = torch.cat(outs, dim=-1) @ branch.o.weight.T  # concat_h(...) · A_o
    torch.testing.assert_close(branch(x), expected, atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in branch.parameters()) == 3 * d * r + r * d_out


def test_zero_output_at_init_and_a_gradient_for_A_o():
    torch.manual_seed(0)
    branch = ResAttn(16, 16, 8, 4)
    assert torch.count_nonzero(branch.o.weight) == 0
    x = torch.randn(2, 6, 16)
    y = branch(x)
    assert torch.count_nonzero(y) == 0
    (y * torch.randn_like(y)).sum().backward()
    assert branch.o.weight.grad.abs().sum() > 0


def test_causal_branch_beside_llama_attention_never_sees_the_future():
    base, inputs = models.llama()
    model = Swift.prepare_model(base, ResAttnConfig(target_modules=r".*self_attn", r=8, num_heads=2))
    kit.perturb(model, "default", seed=1)
    layer = model.base_model.get_submodule("model.layers.0.self_attn")
    assert layer.branch("default").causal  # detected: LlamaAttention.is_causal
    changed = {k: v.clone() for k, v in inputs.items()}
    changed["input_ids"][:, -1] = (changed["input_ids"][:, -1] + 1) % 64
    y, y_changed = kit.run(model, inputs), kit.run(model, changed)
    torch.testing.assert_close(y[:, :-1], y_changed[:, :-1])
    # and without the causal mask the future leaks in (so the check above can fail)
    layer.branch("default").causal = False
    model.base_model.get_submodule("model.layers.1.self_attn").branch("default").causal = False
    assert not torch.allclose(kit.run(model, inputs)[:, :-1], kit.run(model, changed)[:, :-1])


def test_padding_is_invisible_to_the_branch_beside_bert_attention():
    base, inputs = models.bert()  # sequence 1 has two padded positions
    model = Swift.prepare_model(base, ResAttnConfig(target_modules=r".*attention\.self", r=8, num_heads=2))
    kit.perturb(model, "default", seed=1)
    assert not model.base_model.get_submodule("encoder.layer.0.attention.self").branch("default").causal
    changed = {k: v.clone() for k, v in inputs.items()}
    changed["input_ids"][1, -2:] = (changed["input_ids"][1, -2:] + 5) % 64
    y, y_changed = kit.run(model, inputs), kit.run(model, changed)
    torch.testing.assert_close(y[1, :-2], y_changed[1, :-2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y[0], y_changed[0])


def test_vit_checkpoint_keys_and_utuning_reuses_the_module():
    base, inputs = models.vit()
    model = Swift.prepare_model(base, ResAttnConfig(target_modules=r".*layers\.\d+\.attention", r=8, num_heads=2))
    keys = set(model.state_dict(adapter_name="default"))
    assert keys == {f"vit.layers.{i}.attention.resattn_default.{n}.weight" for i in range(2) for n in "qkvo"}
    other, _ = models.vit()
    u = Swift.prepare_model(other, UTuningConfig(target_modules=r".*layers\.\d+\.attention", tuner="res_attn", r=8,
                                                 num_heads=2))
    branch = u.base_model.get_submodule("vit.layers.0.attention").branch("default")
    assert type(branch) is ResAttn


@pytest.mark.parametrize("kw,field", [
    (dict(r=6, num_heads=4), "num_heads"),
    (dict(r=0), "r"),
    (dict(target_modules=None), "target_modules"),
])
def test_bad_configs_name_the_field(kw, field):
    fields = dict(target_modules=["fc2"], r=8, num_heads=2)
    with pytest.raises(ValueError, match=f"ResAttnConfig.{field}"):
        ResAttnConfig(**{**fields, **kw})


def test_a_wrong_dim_is_refused_before_anything_changes():
    base, _ = models.mlp()
    keys = set(base.state_dict())
    with pytest.raises(ValueError, match=r"ResAttnConfig.dim=12: .*'fc2'.* has 24 features"):
        Swift.prepare_model(base, ResAttnConfig(target_modules=["fc2"], dim=12, r=4, num_heads=2))
    assert set(base.state_dict()) == keys
    cnn, _ = models.cnn()
    with pytest.raises(ValueError, match="ResAttnConfig.dim=4"):  # read from the conv's channels
        Swift.prepare_model(cnn, ResAttnConfig(target_modules=["conv2"], dim=4, r=4, num_heads=2))
