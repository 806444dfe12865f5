"""LISA (swiftlite.llm.lisa): the layer schedule, frozen layers untouched, optimizer state across switches."""

from __future__ import annotations

import pytest
import torch

from swiftlite.llm.lisa import LISA, LISAConfig, decoder_layers
from swiftlite.train import train


def tiny_llama(layers: int = 4):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                        num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
                                        max_position_embeddings=64))


def batches(i: int) -> dict:
    g = torch.Generator().manual_seed(i)
    ids = torch.randint(0, 64, (4, 12), generator=g)
    return {"input_ids": ids, "labels": ids}


def snapshot(layer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in layer.parameters()]


def test_schedule_and_trainable_sets():
    model = tiny_llama(6)
    lisa = LISA(model, LISAConfig(lisa_activated_layers=2, lisa_step_interval=3, seed=1))
    layers = decoder_layers(model)
    seen = []

    def record(step, m, opt):
        lisa(step, m, opt)
        trainable = [i for i, layer in enumerate(layers) if all(p.requires_grad for p in layer.parameters())]
        frozen = [i for i, layer in enumerate(layers) if not any(p.requires_grad for p in layer.parameters())]
        assert len(trainable) + len(frozen) == 6  # a layer is wholly on or off
        assert trainable == lisa.active and len(trainable) == 2
        assert model.model.embed_tokens.weight.requires_grad and model.model.norm.weight.requires_grad
        seen.append(tuple(trainable))

    train(model, batches, None, steps=10, lr=1e-2, optimizer=lisa.make_optimizer(1e-2), on_step_begin=record,
          progress=False)
    assert [s for s, _ in lisa.history] == [0, 3, 6, 9]  # a draw every K = 3 steps
    for start in (0, 3, 6):
        assert len(set(seen[start:start + 3])) == 1  # constant within a period
    assert len({tuple(a) for _, a in lisa.history}) > 1  # and it really changes
    # the draws are reproducible from the seed
    again = LISA(tiny_llama(6), LISAConfig(lisa_activated_layers=2, lisa_step_interval=3, seed=1))
    for step in (3, 6, 9):
        again.switch(step, None)
    assert again.history == lisa.history


def test_frozen_layers_do_not_move_and_state_is_dropped():
    """weight decay and Adam momentum would move a frozen layer if its state kept being stepped."""
    model = tiny_llama(4)
    lisa = LISA(model, LISAConfig(lisa_activated_layers=1, lisa_step_interval=4, seed=0))
    layers = decoder_layers(model)
    opt = lisa.make_optimizer(lr=1e-2, weight_decay=0.5)
    checks = []
    state = {}

    def hook(step, m, optimizer):
        if step > 0 and step % 4 == 0:  # end of a period: compare with its start
            checks.append((list(lisa.active), [snapshot(layer) for layer in layers], state["start"]))
        lisa(step, m, optimizer)
        if step % 4 == 0:
            state["start"] = [snapshot(layer) for layer in layers]
            inner = getattr(optimizer, "optimizer", optimizer)
            for i, layer in enumerate(layers):  # moments exist only for the active layer
                has_state = [p in inner.state and len(inner.state[p]) > 0 for p in layer.parameters()]
                if i not in lisa.active:
                    assert not any(has_state), (step, i)
                elif step > 0 and i in lisa.history[-2][1]:
                    assert all(has_state)  # kept on: its moments carry on
                else:
                    assert not any(has_state)  # newly drawn: fresh moments (created at its first step)

    train(model, batches, None, steps=12, lr=1e-2, optimizer=opt, on_step_begin=hook, progress=False,
          max_grad_norm=None, lr_schedule="constant")
    assert len(checks) == 2
    for active, end, start in checks:
        for i in range(4):
            moved = any(not torch.equal(a, b) for a, b in zip(end[i], start[i]))
            assert moved == (i in active), (i, active)  # only the active layer changed in its period
    # a redrawn layer restarted its step count
    inner = opt
    for p in layers[lisa.active[0]].parameters():
        assert 1 <= int(inner.state[p]["step"]) <= 4


def test_bad_configs():
    with pytest.raises(ValueError, match="lisa_activated_layers"):
        LISAConfig(lisa_activated_layers=0)
    with pytest.raises(ValueError, match="lisa_step_interval"):
        LISAConfig(lisa_step_interval=1.5)
    with pytest.raises(ValueError, match="lisa_activated_layers: 5 > the model's 4"):
        LISA(tiny_llama(4), LISAConfig(lisa_activated_layers=5))
    with pytest.raises(ValueError, match="no decoder layers"):
        LISA(torch.nn.Linear(2, 2))


def test_lisa_on_a_llama_pro_model_sees_the_new_blocks():
    """LLaMA-Pro lists its new blocks in model.model.layers (as ms-swift): LISA draws among all 4 blocks,
    and a drawn block trains alone (a new block is not switched with the original block holding it)."""
    from swiftlite import Swift
    from swiftlite.tuners import LLaMAProConfig

    model = Swift.prepare_model(tiny_llama(2), LLaMAProConfig(num_new_blocks=2))
    layers = decoder_layers(model)
    assert len(layers) == 4 == model.config.num_hidden_layers
    lisa = LISA(model, LISAConfig(lisa_activated_layers=1, lisa_step_interval=1, seed=0))
    assert len(lisa.layer_params) == 4
    new_block, holder = layers[1], layers[0]
    drawn = set()
    for step in range(1, 12):
        (index,) = lisa.switch(step, None)
        drawn.add(index)
        for i, params in enumerate(lisa.layer_params):
            assert all(p.requires_grad == (i == index) for p in params)
        assert all(p.requires_grad == (index == 1) for p in new_block.parameters())
        assert all(p.requires_grad == (index == 0) for p in holder.base_layer.parameters())
    assert {1, 3} <= drawn  # the new blocks are drawn too
