"""``llama-tiny``: a ``transformers.LlamaForCausalLM`` + byte-level BPE tokenizer, pretrained on
Python's standard library (docstrings and source, :func:`swiftlite.data.text_corpus` ``"mixed"``).

Objective: next-token cross-entropy on blocks of ``block_size`` tokens (documents joined by
``<|endoftext|>``). Quality figures on held-out modules (never seen in training):

    perplexity          = exp( mean_t  -log p_θ(x_t | x_<t) )
    unigram_perplexity  = exp( mean_t  -log p_uni(x_t) ),  p_uni = add-one-smoothed train frequencies

The claim is ``perplexity`` well below ``unigram_perplexity`` (the best context-free model).
``load("llama-tiny")`` returns ``(model, tokenizer)``; the tokenizer (with a chat template) is
saved in the same directory, so ``AutoTokenizer.from_pretrained(dir)`` works.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..data.text import stdlib_tokenizer, text_corpus
from .recipe import Recipe, register

FULL: dict[str, Any] = dict(corpus="mixed", max_chars=None, vocab_size=2048, block_size=128,
                            hidden_size=128, intermediate_size=352, num_hidden_layers=4,
                            num_attention_heads=4, num_key_value_heads=4, steps=1200, batch_size=16,
                            lr=3e-3, weight_decay=0.01, warmup_steps=60, eval_blocks=200, seed=0)
QUICK: dict[str, Any] = dict(corpus="docstrings", max_chars=120_000, vocab_size=384, block_size=64,
                             hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=2, steps=60, batch_size=16,
                             lr=3e-3, weight_decay=0.0, warmup_steps=5, eval_blocks=40, seed=0)


def token_blocks(texts: list[str], tokenizer, block_size: int) -> list[list[int]]:
    """Concatenate tokenized ``texts`` separated by eos and cut into blocks of ``block_size``."""
    stream: list[int] = []
    for text in texts:
        stream.extend(tokenizer(text)["input_ids"])
        stream.append(tokenizer.eos_token_id)
    n = len(stream) // block_size
    return [stream[i * block_size:(i + 1) * block_size] for i in range(n)]


def perplexities(model, train_blocks, test_blocks, vocab_size: int) -> dict[str, float]:
    """Held-out perplexity of ``model`` and of the add-one unigram model, on the same targets."""
    import torch

    counts = torch.ones(vocab_size)  # add-one smoothing
    counts += torch.bincount(torch.tensor(train_blocks).flatten(), minlength=vocab_size)[:vocab_size]
    log_p_uni = (counts / counts.sum()).log()
    model.eval()
    nll, uni, n = 0.0, 0.0, 0
    with torch.no_grad():
        for i in range(0, len(test_blocks), 16):
            ids = torch.tensor(test_blocks[i:i + 16])  # (B, T)
            logits = model(input_ids=ids).logits[:, :-1]  # (B, T-1, V) predicts ids[:, 1:]
            targets = ids[:, 1:]
            nll += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                                     reduction="sum").item()
            uni -= log_p_uni[targets].sum().item()
            n += targets.numel()
    return {"perplexity": math.exp(nll / n), "unigram_perplexity": math.exp(uni / n),
            "heldout_tokens": float(n)}


def build(out_dir: Path, p: dict[str, Any], progress: bool, part_dirs: dict[str, Path]) -> dict[str, float]:
    import datasets
    import numpy as np
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from .. import train as training  # torch: loaded when a build runs, so `swiftlite zoo list` stays light

    tokenizer = stdlib_tokenizer(p["vocab_size"], kind=p["corpus"], max_chars=p["max_chars"])
    corpus = text_corpus(p["corpus"], max_chars=p["max_chars"])
    train_blocks = token_blocks(corpus["train"]["text"], tokenizer, p["block_size"])
    test_blocks = token_blocks(corpus["test"]["text"], tokenizer, p["block_size"])
    test_blocks = [test_blocks[i] for i in np.random.default_rng(p["seed"]).permutation(len(test_blocks))
                   [:p["eval_blocks"]]]

    torch.manual_seed(p["seed"])
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=p["hidden_size"],
                         intermediate_size=p["intermediate_size"], num_hidden_layers=p["num_hidden_layers"],
                         num_attention_heads=p["num_attention_heads"],
                         num_key_value_heads=p["num_key_value_heads"], max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config)
    train_set = datasets.Dataset.from_dict({"input_ids": train_blocks}).with_format("torch")

    def loss_fn(model, batch):
        # next-token cross-entropy; transformers shifts labels internally
        return model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss

    history = training.train(model, train_set, loss_fn, steps=p["steps"], batch_size=p["batch_size"],
                             lr=p["lr"], weight_decay=p["weight_decay"], warmup_steps=p["warmup_steps"],
                             seed=p["seed"], progress=progress)
    figures = perplexities(model, train_blocks, test_blocks, len(tokenizer))
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id, max_new_tokens=64)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    figures.update(final_train_loss=float(np.mean(history.loss[-20:])), train_tokens=float(
        len(train_blocks) * p["block_size"]), n_parameters=float(sum(t.numel() for t in model.parameters())))
    return figures


def load(directory: Path):
    from transformers import AutoTokenizer, LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(directory).eval(), AutoTokenizer.from_pretrained(directory)


RECIPE = register(Recipe(
    name="llama-tiny", version=1, full=FULL, quick=QUICK, build=build, load=load,
    description="LlamaForCausalLM + byte-level BPE tokenizer pretrained on Python's standard library",
    targets={"perplexity": "well below unigram_perplexity"},
))
