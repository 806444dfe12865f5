"""Loss scale (swiftlite.llm.loss_scale): spans, token weights, masking, and the weighted SFT loss."""

from __future__ import annotations

import pytest
import torch

from swiftlite.data.tools import tool_dialogs
from swiftlite.llm import IGNORE_INDEX, SFTCollator, build_sft_dataset, encode_pair, sft_loss
from swiftlite.llm import show_loss_scale
from swiftlite.llm.loss_scale import REACT_LOSS_SCALE, split_spans, token_loss_scale

TRANSCRIPT = ('Thought: I should compute.\nAction: calculator\nAction Input: {"expression": "2 + 3"}\n'
              'Observation: 5\nThought: I now know the final answer.\nFinal Answer: 5')


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    import swiftlite.zoo as zoo

    return AutoTokenizer.from_pretrained(zoo.path("llama-tiny"))


def tiny_llama(vocab_size: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                        max_position_embeddings=512))


def test_react_map_is_ms_swift_react_json():
    # ms-swift swift/plugin/loss_scale/config/react.json ([w_key, w_content])
    assert REACT_LOSS_SCALE == {"Action:": (2.0, 2.0), "Action Input:": (2.0, 2.0), "Thought:": (1.0, 1.0),
                                "Final Answer:": (1.0, 1.0), "Observation:": (2.0, 0.0)}


def test_split_spans_by_hand():
    spans = split_spans(TRANSCRIPT)
    assert "".join(s for s, _ in spans) == TRANSCRIPT  # nothing lost or duplicated
    assert spans == [
        ("Thought:", 1.0), (" I should compute.\n", 1.0),
        ("Action:", 2.0), (" calculator\n", 2.0),
        ("Action Input:", 2.0), (' {"expression": "2 + 3"}\n', 2.0),
        ("Observation:", 2.0), (" 5\n", 0.0),
        ("Thought:", 1.0), (" I now know the final answer.\n", 1.0),
        ("Final Answer:", 1.0), (" 5", 1.0),
    ]
    # text before the first key weighs 1; a custom map
    assert split_spans("hello KEY: x", {"KEY:": (3.0, 0.5)}) == [("hello ", 1.0), ("KEY:", 3.0), (" x", 0.5)]


@pytest.mark.parametrize("bad", [{}, {"Action:": (2.0,)}, {"Action:": (-1.0, 1.0)}, {"": (1.0, 1.0)}])
def test_bad_maps_are_refused(bad):
    with pytest.raises(ValueError, match="loss_scale"):
        split_spans(TRANSCRIPT, bad)


def test_token_weights_follow_the_spans(tokenizer):
    ids, weights = token_loss_scale(tokenizer, TRANSCRIPT)
    assert ids == tokenizer(TRANSCRIPT, add_special_tokens=False)["input_ids"]  # same tokens as generation sees
    text_by_weight = {w: "".join(tokenizer.decode([t]) for t, ww in zip(ids, weights) if ww == w)
                      for w in set(weights)}
    assert set(weights) == {0.0, 1.0, 2.0}
    assert "calculator" in text_by_weight[2.0] and "expression" in text_by_weight[2.0]
    assert text_by_weight[0.0].strip() == "5"  # the observation's content only
    assert "I should compute" in text_by_weight[1.0] and "now know" in text_by_weight[1.0]


def test_encoding_masks_weight_zero_and_prompt(tokenizer):
    enc = encode_pair(tokenizer, "What is 2 + 3?", TRANSCRIPT, loss_scale=REACT_LOSS_SCALE)
    plain = encode_pair(tokenizer, "What is 2 + 3?", TRANSCRIPT)
    assert enc["input_ids"] == plain["input_ids"]
    ids, labels, scale = enc["input_ids"], enc["labels"], enc["loss_scale"]
    assert len(ids) == len(labels) == len(scale)
    m = sum(y == IGNORE_INDEX for y in plain["labels"])  # prompt length
    assert scale[:m] == [0.0] * m and scale[-1] == 1.0 and labels[-1] == tokenizer.eos_token_id
    for t, y, w in zip(ids[m:], labels[m:], scale[m:]):
        assert (y == IGNORE_INDEX) == (w == 0.0)  # weight 0 <=> masked
        assert y in (t, IGNORE_INDEX)
    assert any(w == 0.0 for w in scale[m:])
    cut = encode_pair(tokenizer, "What is 2 + 3?", TRANSCRIPT, loss_scale=REACT_LOSS_SCALE, max_length=m + 5)
    assert all(len(v) == m + 5 for v in cut.values())


def test_weighted_loss_equals_its_formula(tokenizer):
    dialogs = tool_dialogs(6, seed=0)
    pairs = dialogs.rename_columns({"question": "prompt"}).map(lambda r: {"output": r["messages"][2]["content"]})
    ds = build_sft_dataset(pairs, tokenizer, max_length=None, loss_scale=REACT_LOSS_SCALE)
    assert "loss_scale" in ds.column_names
    batch = SFTCollator(pad_token_id=tokenizer.pad_token_id)([ds[i] for i in range(len(ds))])
    assert batch["loss_scale"].shape == batch["input_ids"].shape
    assert (batch["loss_scale"][batch["attention_mask"] == 0] == 0).all()
    model = tiny_llama(len(tokenizer))
    # reference: per-token cross entropy by hand
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets, w = batch["labels"][:, 1:], batch["loss_scale"][:, 1:]
    keep = targets != IGNORE_INDEX
    logp = torch.log_softmax(logits.float(), -1).gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    expected = -(w[keep] * logp[keep]).sum() / keep.sum()
    torch.testing.assert_close(sft_loss(model, batch), expected)
    # weights all 1 give back the plain SFT loss; the scaled loss differs from it
    plain = dict(batch, loss_scale=torch.ones_like(batch["loss_scale"]))
    torch.testing.assert_close(sft_loss(model, plain), -(logp[keep]).sum() / keep.sum())
    assert not torch.isclose(sft_loss(model, batch), sft_loss(model, plain))


def test_show_loss_scale_prints_weights_and_masks(tokenizer, capsys):
    enc = encode_pair(tokenizer, "What is 2 + 3?", TRANSCRIPT, loss_scale=REACT_LOSS_SCALE)
    out = show_loss_scale(tokenizer, enc)
    assert out == capsys.readouterr().out.rstrip("\n")
    rows = [(tag.strip(), text) for tag, text in (line.split(" | ", 1) for line in out.splitlines())]
    assert rows[0][0] == "masked" and "user" in rows[0][1]  # the prompt
    assert any(tag == "w=2" and "calculator" in text for tag, text in rows)
    assert any(tag == "masked" and "5" in text for tag, text in rows[1:])  # the observation
    with pytest.raises(ValueError, match="same length"):
        show_loss_scale(tokenizer, {"input_ids": [1, 2], "labels": [1], "loss_scale": [1.0, 1.0]})
