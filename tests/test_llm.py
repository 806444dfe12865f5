"""Tests for swiftlite.llm: SFT label mask, collation, loss, and the tuner benchmark helper."""

from __future__ import annotations

import math

import pytest
import torch

from swiftlite import LoRAConfig, Swift
from swiftlite.data import instruction_pairs
from swiftlite.llm import (IGNORE_INDEX, SFTCollator, build_sft_dataset, compare_tuners, encode_pair, evaluate_loss,
                           sft_loss)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    import swiftlite.zoo as zoo

    return AutoTokenizer.from_pretrained(zoo.path("llama-tiny"))  # the shipped build (or the quick one)


def tiny_llama(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=1, bos_token_id=0, eos_token_id=0)
    return LlamaForCausalLM(config)


def test_label_mask_covers_exactly_the_prompt(tokenizer):
    pairs = instruction_pairs(8, seed=3)
    for row in pairs:
        enc = encode_pair(tokenizer, row["prompt"], row["output"])
        ids, labels = enc["input_ids"], enc["labels"]
        prompt_text = tokenizer.apply_chat_template(row["messages"][:1], tokenize=False, add_generation_prompt=True)
        m = len(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
        assert len(ids) == len(labels)
        assert all(y == IGNORE_INDEX for y in labels[:m])  # prompt: masked
        assert labels[m:] == ids[m:]  # response + eos: scored
        assert ids[-1] == tokenizer.eos_token_id and labels[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(ids[:m]) == prompt_text
        assert tokenizer.decode(ids[m:-1]) == row["output"]
        # the whole example is the chat template of the two turns (minus the template's final newline)
        assert tokenizer.decode(ids) == tokenizer.apply_chat_template(row["messages"], tokenize=False).rstrip("\n")


def test_truncation_and_dataset_columns(tokenizer):
    pairs = instruction_pairs(16, seed=0)
    full = build_sft_dataset(pairs, tokenizer)
    # a limit that cuts some responses but leaves every one a few tokens (the tokenizer decides where)
    prompt_lengths = [labels.index(next(y for y in labels if y != IGNORE_INDEX)) for labels in full["labels"]]
    max_length = max(prompt_lengths) + 4
    assert max(full["length"]) > max_length  # truncation really happens
    ds = build_sft_dataset(pairs, tokenizer, max_length=max_length)
    assert set(ds.column_names) == {"input_ids", "labels", "attention_mask", "length"}
    assert max(ds["length"]) <= max_length
    assert all(any(y != IGNORE_INDEX for y in labels) for labels in ds["labels"])
    with pytest.raises(ValueError, match="max_length"):
        build_sft_dataset(pairs, tokenizer, max_length=3)  # the chat header alone is longer than 3 tokens
    with pytest.raises(KeyError, match="response_column"):
        build_sft_dataset(pairs, tokenizer, response_column="answer")


def test_collator_pads_and_sft_loss_matches_transformers(tokenizer):
    ds = build_sft_dataset(instruction_pairs(6, seed=1), tokenizer)
    batch = SFTCollator(pad_token_id=tokenizer.pad_token_id)([ds[i] for i in range(6)])
    lengths = torch.tensor(ds["length"][:6])
    T = int(lengths.max())
    assert batch["input_ids"].shape == (6, T)
    pad = torch.arange(T)[None, :] >= lengths[:, None]  # (B, T) True at padding
    assert lengths.min() < T  # the batch really is ragged
    assert (batch["attention_mask"] == (~pad).long()).all()
    assert (batch["labels"][pad] == IGNORE_INDEX).all()
    assert (batch["input_ids"][pad] == tokenizer.pad_token_id).all()

    model = tiny_llama(len(tokenizer)).eval()
    with torch.no_grad():
        ours = sft_loss(model, batch)
        reference = model(**batch).loss  # transformers' causal-LM loss: shift, ignore -100, token mean
        # dense reference: mean NLL over response tokens only
        logp = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.log_softmax(-1)
        targets = batch["labels"][:, 1:]
        keep = targets != IGNORE_INDEX
        dense = -logp[:, :-1].gather(-1, targets.clamp(min=0)[..., None])[..., 0][keep].mean()
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(ours, dense)
    # padding does not change an example's loss: the padded batch scores as the examples one by one
    per_example = [evaluate_loss(model, ds.select([i]), batch_size=1) for i in range(6)]
    counts = [sum(y != IGNORE_INDEX for y in ds[i]["labels"][1:]) for i in range(6)]
    pooled = sum(l * c for l, c in zip(per_example, counts)) / sum(counts)
    assert math.isclose(evaluate_loss(model, ds, batch_size=4), pooled, rel_tol=1e-5)
    assert math.isclose(pooled, ours.item(), rel_tol=1e-5)


def test_compare_tuners_two_configs(tokenizer):
    torch.set_num_threads(1)
    train_ds = build_sft_dataset(instruction_pairs(32, seed=0), tokenizer)
    eval_ds = build_sft_dataset(instruction_pairs(8, seed=1), tokenizer)
    factory = lambda: tiny_llama(len(tokenizer))  # noqa: E731
    configs = {"full": None, "LoRA": LoRAConfig(r=4, target_modules=["q_proj", "v_proj"])}
    rows = compare_tuners(factory, configs, train_ds, eval_ds, steps=3, lr={"full": 1e-3, "LoRA": 1e-2},
                          batch_size=8, seed=0, measure_steps=2, measure_warmup=1, measure_rounds=3, progress=False,
                          collate_fn=SFTCollator(pad_token_id=tokenizer.pad_token_id))
    assert [r["name"] for r in rows] == ["full", "LoRA"]
    for row in rows:
        for key in ("trainable_params", "total_params", "trainable_percent", "step_time_s", "throughput",
                    "peak_memory_bytes", "eval_loss_init", "eval_loss", "train_loss", "train_step_s"):
            assert row[key] > 0 and math.isfinite(row[key]), (row["name"], key, row[key])
        assert row["eval_loss"] != row["eval_loss_init"]  # training moved the model
        assert len(row["step_time_rounds"]) == 3
        assert row["step_time_s"] == sorted(row["step_time_rounds"])[1]  # median of the rounds
        assert math.isclose(row["throughput"], 8 / row["step_time_s"])
    full, lora = rows
    assert full["lr"] == 1e-3 and lora["lr"] == 1e-2
    # trainable counts are the models' own
    base = factory()
    assert full["trainable_params"] == full["total_params"] == sum(p.numel() for p in base.parameters())
    swift_model = Swift.prepare_model(factory(), configs["LoRA"])
    assert lora["trainable_params"] == sum(p.numel() for p in swift_model.parameters() if p.requires_grad)
    assert lora["total_params"] == sum(p.numel() for p in swift_model.parameters())
    assert lora["trainable_params"] == 2 * 2 * 4 * (32 + 32)  # 2 layers x (q, v) x r (d_in + d_out)
    # fewer trainable weights -> fewer grads and AdamW moments -> lower measured training memory
    assert lora["peak_memory_bytes"] < full["peak_memory_bytes"]
    with pytest.raises(KeyError, match="LoRA"):
        compare_tuners(factory, configs, train_ds, eval_ds, steps=1, lr={"full": 1e-3}, batch_size=8)


def test_compare_tuners_lisa_row(tokenizer):
    from swiftlite.llm.lisa import LISAConfig

    torch.set_num_threads(1)
    train_ds = build_sft_dataset(instruction_pairs(32, seed=0), tokenizer)
    eval_ds = build_sft_dataset(instruction_pairs(8, seed=1), tokenizer)
    factory = lambda: tiny_llama(len(tokenizer))  # noqa: E731
    import peft

    peft_lora = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"])
    configs = {"full": None, "LISA": LISAConfig(lisa_activated_layers=1, lisa_step_interval=2),
               "PEFT LoRA": lambda model: peft.get_peft_model(model, peft_lora)}  # a function prepares its own
    full, lisa, reference = compare_tuners(factory, configs, train_ds, eval_ds, steps=4, lr=1e-3, batch_size=8, seed=0,
                                measure_steps=1, measure_warmup=0, progress=False,
                                collate_fn=SFTCollator(pad_token_id=tokenizer.pad_token_id),
                                eval_fn=lambda model, name: {"n_trainable_after": sum(
                                    p.numel() for p in model.parameters() if p.requires_grad), "seen": name})
    one_layer = sum(p.numel() for p in factory().model.layers[0].parameters())
    assert lisa["total_params"] == full["total_params"]  # no weights added: it tunes the base
    assert lisa["trainable_params"] == full["total_params"] - one_layer  # one of the 2 layers frozen
    assert lisa["peak_memory_bytes"] < full["peak_memory_bytes"]
    assert lisa["eval_loss"] != lisa["eval_loss_init"]
    assert full["seen"] == "full" and lisa["seen"] == "LISA"  # eval_fn's metrics join each row
    assert reference["trainable_params"] == 2 * 2 * 4 * (32 + 32)  # PEFT's LoRA on q, v of 2 layers
    assert reference["eval_loss"] != reference["eval_loss_init"]
    assert lisa["n_trainable_after"] == lisa["trainable_params"]  # still one layer frozen after training


def test_exact_match_on_memorised_pairs(tokenizer):
    from swiftlite.llm.sft import exact_match
    from swiftlite.train import train

    torch.set_num_threads(1)
    pairs = instruction_pairs(4, seed=5)
    ds = build_sft_dataset(pairs, tokenizer, max_length=None)
    model = tiny_llama(len(tokenizer))
    assert exact_match(model, tokenizer, pairs) == 0.0  # random weights
    train(model, ds, sft_loss, steps=80, batch_size=4, lr=1e-2, progress=False, lr_schedule="constant",
          collate_fn=SFTCollator(pad_token_id=tokenizer.pad_token_id))
    assert exact_match(model, tokenizer, pairs, max_new_tokens=64) == 1.0  # memorised
    assert exact_match(model, tokenizer, pairs, max_new_tokens=64, use_cache=False) == 1.0
    wrong = pairs.map(lambda r: {"output": r["output"] + " x"})
    assert exact_match(model, tokenizer, wrong, max_new_tokens=64) == 0.0  # exact, not a prefix match
