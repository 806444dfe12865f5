"""Supervised fine-tuning (SFT) of a causal LM on instruction / response pairs, and a tuner benchmark.

An example is the chat-formatted prompt followed by the response. The model is trained on the
response only: prompt positions get the label -100 (PyTorch's ``ignore_index``), so with
next-token prediction over the concatenation ``x = [p_1..p_m, r_1..r_n, eos]``::

    labels_t = -100       for t <= m          (prompt: no loss)
    labels_t = x_t        for t >  m          (response and the closing eos)
    L_SFT    = - (1/|R|) Σ_{t ∈ R} log p_θ(x_t | x_<t),    R = {t : labels_t != -100}

(the standard SFT label mask of ms-swift, TRL's ``DataCollatorForCompletionOnlyLM`` and Alpaca).
The prompt and the response are tokenized separately and concatenated, so the boundary between
them is exact whatever the tokenizer merges.

:func:`compare_tuners` reproduces the shape of the SWIFT paper's tuner benchmark (arXiv:2408.05517,
Table "tuners on Qwen-7B-chat"): for each tuner config a fresh model, measured train-step cost
(:func:`swiftlite.bench.measure`: trainable %, peak memory, step time, throughput), then
:func:`swiftlite.train.train` for the same number of steps and the held-out SFT loss.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .. import bench
from ..api import Swift
from ..train import train
from .agent import generate
from .lisa import LISA, LISAConfig
from .loss_scale import token_loss_scale

__all__ = ["IGNORE_INDEX", "encode_pair", "show_loss_scale", "build_sft_dataset", "SFTCollator", "sft_loss", "evaluate_loss",
           "compare_tuners"]

IGNORE_INDEX = -100  # labels with this value add nothing to the loss (torch cross_entropy's ignore_index)


# ----------------------------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------------------------


def _prompt_text(tokenizer, prompt: str, template: str) -> str:
    if template == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("build_sft_dataset(template='chat'): the tokenizer has no chat_template; "
                             "use template='plain' or set tokenizer.chat_template.")
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    if template == "plain":
        return f"{prompt}\n"
    raise ValueError(f"build_sft_dataset(template={template!r}): expected 'chat' or 'plain'.")


def encode_pair(tokenizer, prompt: str, response: str, *, template: str = "chat",
                max_length: int | None = None, loss_scale: Mapping[str, tuple[float, float]] | None = None
                ) -> dict[str, list]:
    """Token ids and SFT labels of one (prompt, response) pair.

    Returns ``{"input_ids", "labels"}`` of equal length: ``input_ids = prompt_ids + response_ids +
    [eos]`` and ``labels`` equal to ``input_ids`` with every prompt position set to -100.
    ``template="chat"`` renders the prompt with the tokenizer's chat template (user turn plus the
    assistant generation header), ``"plain"`` as ``prompt + "\\n"``. ``max_length`` truncates
    from the right (the response's tail is lost first).

    ``loss_scale`` (a span map such as :data:`swiftlite.llm.loss_scale.REACT_LOSS_SCALE`) adds a
    ``"loss_scale"`` list: one weight per token (prompt 0, the closing eos 1, response tokens from
    the map); response tokens of weight 0 get the label -100. See :mod:`swiftlite.llm.loss_scale`.
    """
    if tokenizer.eos_token_id is None:
        raise ValueError("encode_pair: the tokenizer has no eos_token_id; the response must end with one.")
    prompt_ids = tokenizer(_prompt_text(tokenizer, prompt, template), add_special_tokens=False)["input_ids"]
    if loss_scale is None:
        response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
        weights = [1.0] * len(response_ids)
    else:
        response_ids, weights = token_loss_scale(tokenizer, response, loss_scale)
    response_ids, weights = response_ids + [tokenizer.eos_token_id], weights + [1.0]
    input_ids = prompt_ids + response_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + [  # the SFT label mask (weight 0: not scored either)
        t if w > 0 else IGNORE_INDEX for t, w in zip(response_ids, weights)]
    out: dict[str, list] = {"input_ids": input_ids, "labels": labels}
    if loss_scale is not None:
        out["loss_scale"] = [0.0] * len(prompt_ids) + weights
    if max_length is not None:
        out = {k: v[:max_length] for k, v in out.items()}
    return out


def show_loss_scale(tokenizer, example: Mapping, *, width: int = 100, file=None) -> str:
    """Print (and return) an encoded example token by token with its weight and mask.

    ``example`` holds ``input_ids``, ``labels`` and optionally ``loss_scale`` (as built by
    ``build_sft_dataset(..., loss_scale=...)``). Consecutive tokens with the same weight and mask
    are grouped on one line: ``masked`` (label −100: the prompt, padding, or weight 0) or
    ``w=2.0`` followed by the tokens' text.
    """
    ids, labels = list(example["input_ids"]), list(example["labels"])
    scale = list(example.get("loss_scale") or [1.0] * len(ids))
    if not len(ids) == len(labels) == len(scale):
        raise ValueError(f"show_loss_scale: input_ids ({len(ids)}), labels ({len(labels)}) and loss_scale "
                         f"({len(scale)}) must have the same length.")
    groups: list[tuple[str, list[int]]] = []
    for token, label, w in zip(ids, labels, scale):
        tag = "masked" if int(label) == IGNORE_INDEX else f"w={float(w):g}"
        if groups and groups[-1][0] == tag:
            groups[-1][1].append(int(token))
        else:
            groups.append((tag, [int(token)]))
    lines = []
    for tag, tokens in groups:
        text = repr(tokenizer.decode(tokens))
        lines.append(f"{tag:>7} | {text if len(text) <= width else text[:width - 3] + '...'}")
    out = "\n".join(lines)
    print(out, file=file)
    return out


def build_sft_dataset(pairs, tokenizer, *, template: str = "chat", max_length: int | None = 128,
                      prompt_column: str = "prompt", response_column: str = "output",
                      loss_scale: Mapping[str, tuple[float, float]] | None = None):
    """Tokenize instruction pairs (e.g. :func:`swiftlite.data.instruction_pairs`) for SFT.

    Returns a ``datasets.Dataset`` with ``input_ids``, ``labels`` (prompt masked to -100, see the
    module docstring), ``attention_mask`` and ``length``, plus ``loss_scale`` (per-token weights,
    :mod:`swiftlite.llm.loss_scale`) when a ``loss_scale`` map is given. Examples whose response is truncated
    away entirely (no label left) are dropped, since they would add 0/0 to the loss; if that
    leaves nothing, a ValueError asks for a larger ``max_length``.
    """
    import datasets

    for column in (prompt_column, response_column):
        if column not in pairs.column_names:
            raise KeyError(f"build_sft_dataset: no column {column!r}; columns are {pairs.column_names}. "
                           "Pass prompt_column= / response_column=.")
    rows: dict[str, list] = {"input_ids": [], "labels": [], "attention_mask": [], "length": []}
    if loss_scale is not None:
        rows["loss_scale"] = []
    for prompt, response in zip(pairs[prompt_column], pairs[response_column]):
        enc = encode_pair(tokenizer, prompt, response, template=template, max_length=max_length,
                          loss_scale=loss_scale)
        if all(label == IGNORE_INDEX for label in enc["labels"]):
            continue
        for key in enc:
            rows[key].append(enc[key])
        rows["attention_mask"].append([1] * len(enc["input_ids"]))
        rows["length"].append(len(enc["input_ids"]))
    if not rows["input_ids"]:
        raise ValueError(f"build_sft_dataset(max_length={max_length}): every example lost its whole response "
                         "to truncation; raise max_length.")
    return datasets.Dataset.from_dict(rows)


# ----------------------------------------------------------------------------------------------
# Batches and loss
# ----------------------------------------------------------------------------------------------


@dataclass
class SFTCollator:
    """Right-pads a list of SFT examples into a batch of tensors.

    ``input_ids`` are padded with ``pad_token_id``, ``attention_mask`` with 0 and ``labels`` with
    -100, so padding is neither attended to nor scored; a ``loss_scale`` column (per-token
    weights) is padded with 0 and kept. Examples may hold lists or tensors (a 🤗 dataset in torch
    format). Other extra columns (``length``, text) are dropped.
    """

    pad_token_id: int = 0  # any id works: padded positions are masked out of attention and loss
    pad_to_multiple_of: int | None = None  # e.g. 8 for tensor cores; None: pad to the longest example

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("SFTCollator: got an empty list of examples.")
        seqs = [torch.as_tensor(e["input_ids"], dtype=torch.long) for e in examples]
        labels = [torch.as_tensor(e["labels"], dtype=torch.long) for e in examples]
        T = max(len(s) for s in seqs)
        if self.pad_to_multiple_of:
            T = math.ceil(T / self.pad_to_multiple_of) * self.pad_to_multiple_of
        B = len(seqs)
        input_ids = torch.full((B, T), self.pad_token_id, dtype=torch.long)  # (B, T)
        attention_mask = torch.zeros((B, T), dtype=torch.long)  # (B, T)
        label_ids = torch.full((B, T), IGNORE_INDEX, dtype=torch.long)  # (B, T)
        for i, (s, y) in enumerate(zip(seqs, labels)):
            if len(s) != len(y):
                raise ValueError(f"SFTCollator: example {i} has {len(s)} input_ids but {len(y)} labels.")
            input_ids[i, :len(s)] = s
            attention_mask[i, :len(s)] = 1
            label_ids[i, :len(y)] = y
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": label_ids}
        if "loss_scale" in examples[0]:
            scale = torch.zeros((B, T), dtype=torch.float32)  # (B, T)
            for i, (s, e) in enumerate(zip(seqs, examples)):
                w = torch.as_tensor(e["loss_scale"], dtype=torch.float32)
                if len(w) != len(s):
                    raise ValueError(f"SFTCollator: example {i} has {len(s)} input_ids but {len(w)} "
                                     "loss_scale weights.")
                scale[i, :len(w)] = w
            batch["loss_scale"] = scale
        return batch


def _token_nll(model: nn.Module, batch: Mapping[str, torch.Tensor],
               weighted: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token NLL over labelled positions (times ``loss_scale`` if ``weighted``), and their count."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits  # (B, T, V)
    logits = logits[:, :-1]  # (B, T-1, V): position t predicts token t+1
    targets = batch["labels"][:, 1:].to(logits.device)  # (B, T-1)
    nll = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                                      ignore_index=IGNORE_INDEX, reduction="none")  # (B*(T-1),), 0 where ignored
    if weighted and batch.get("loss_scale") is not None:
        w_t = batch["loss_scale"][:, 1:].to(nll.device).reshape(-1)  # (B*(T-1),) weight of the predicted token
        nll = w_t * nll
    return nll.sum(), (targets != IGNORE_INDEX).sum()


def sft_loss(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """L_SFT = -(1/|R|) Σ_{t∈R} log p_θ(x_t | x_<t) over the response positions R of the batch.

    The same value as ``model(**batch).loss`` of a 🤗 causal LM (shift by one, ignore -100, mean
    over labelled tokens), computed here so that tuners which change the sequence length inside
    the model still get scored on the caller's tokens. Usable as ``train(..., loss_fn=sft_loss)``.
    If the batch has a ``loss_scale`` (per-token weights w_t, see :mod:`swiftlite.llm.loss_scale`)
    each term is multiplied by w_t: -(1/|R|) Σ_{t∈R} w_t log p_θ(x_t | x_<t).
    """
    nll, count = _token_nll(model, batch, weighted=True)
    if count.item() == 0:
        raise ValueError("sft_loss: the batch has no labelled token (every label is -100).")
    return nll / count


def evaluate_loss(model: nn.Module, dataset, *, batch_size: int = 32, collate_fn: Callable | None = None) -> float:
    """Held-out SFT loss: NLL per response token, summed over ``dataset`` then divided (not a mean
    of batch means), in eval mode under ``torch.no_grad``; the train/eval mode is restored.
    Unweighted: a ``loss_scale`` column is ignored (tokens of weight 0 stay unscored, as their
    label is -100), so runs trained with and without loss scale compare on one scale."""
    collate_fn = collate_fn or SFTCollator()
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            for start in range(0, len(dataset), batch_size):
                batch = collate_fn([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
                nll, n = _token_nll(model, {k: v.to(device) for k, v in batch.items()})
                total, count = total + nll.item(), count + int(n)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate_loss: the dataset has no labelled token.")
    return total / count


def exact_match(model: nn.Module, tokenizer, pairs, *, template: str = "chat", max_new_tokens: int = 32,
                batch_size: int = 32, prompt_column: str = "prompt", response_column: str = "output",
                use_cache: bool = True) -> float:
    """Held-out instruction accuracy: the share of ``pairs`` whose greedy response (up to eos or
    ``max_new_tokens``), stripped, equals the gold response exactly.

    Generation is 🤗 ``generate`` (batched, left-padded, ``do_sample=False``), in eval mode; the
    prompt is rendered as in :func:`encode_pair`. ``use_cache=False``: see
    :func:`swiftlite.llm.agent.generate` (Prompt tuning needs it).
    """
    prompts = [_prompt_text(tokenizer, p, template) for p in pairs[prompt_column]]
    outputs = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, stop=(),
                       use_cache=use_cache)
    hits = [out.strip() == gold.strip() for out, gold in zip(outputs, pairs[response_column])]
    return sum(hits) / max(1, len(hits))


# ----------------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------------


def _prepare(model: nn.Module, config) -> nn.Module:
    """None: full fine-tuning (every parameter trains); a function: ``config(model)`` (e.g. PEFT's
    ``get_peft_model``, for a reference row); else ``Swift.prepare_model(model, config)``."""
    if config is None:
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if callable(config) and not isinstance(config, Mapping) and not hasattr(config, "swift_type"):
        return config(model)
    return Swift.prepare_model(model, config)


def compare_tuners(
    model_factory: Callable[[], nn.Module],
    configs: Mapping[str, Any],
    train_ds,
    eval_ds,
    *,
    steps: int,
    lr: float | Mapping[str, float],
    batch_size: int,
    seed: int = 0,
    collate_fn: Callable | None = None,
    measure_steps: int = 5,
    measure_warmup: int = 2,
    measure_rounds: int = 1,
    eval_batch_size: int = 32,
    lr_schedule: str = "cosine",
    warmup_steps: int = 0,
    progress: bool = True,
    eval_fn: Callable[[nn.Module, str], Mapping[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """Fine-tune a fresh ``model_factory()`` with each config and return one row per config.

    ``configs`` maps a display name to a tuner config, a ``{adapter_name: config}`` dict (several
    tuners at once, e.g. LoRA + NEFTune), None for full fine-tuning, a function ``model -> model``
    that prepares the model itself (e.g. ``lambda m: peft.get_peft_model(m, peft.LoraConfig(...))``
    for a reference row), or a
    :class:`swiftlite.llm.lisa.LISAConfig` (full fine-tuning of γ layers at a time: measured with
    its first draw trainable, trained with the :class:`~swiftlite.llm.lisa.LISA` callback). ``lr`` is one learning
    rate or ``{name: lr}`` (a name missing from the dict is an error). Every run uses the same
    ``seed``, data order, ``steps`` and ``lr_schedule``.

    Cost: every config's model is built and prepared first; then :func:`swiftlite.bench.measure`
    times ``measure_steps`` train steps on the first ``batch_size`` training examples (AdamW;
    weights are restored afterwards) for config 1, 2, ..., n, and this round is repeated
    ``measure_rounds`` times. Interleaving the rounds spreads slow phases of a shared machine
    over all configs instead of charging them to whichever config ran then; the reported step
    time is the median of the rounds' medians (``step_time_rounds`` lists them;
    ``step_time_iqr_s`` is the first round's).
    Quality: for each config in turn the held-out loss is taken, :func:`swiftlite.train.train`
    runs ``steps`` steps with :func:`sft_loss`, and the held-out loss is taken again.

    Row = the ``measure`` row (name, trainable_params, total_params, trainable_percent,
    step_time_s, step_time_iqr_s, throughput, peak_memory_bytes, memory_method, device) plus
    step_time_rounds, lr, eval_loss_init, eval_loss, train_loss (mean of the last
    ``max(1, steps // 10)`` steps), train_seconds and train_step_s (wall time of the whole
    ``train`` call / steps, data loading included). ``eval_fn(model, name) -> {metric: value}``
    (e.g. :func:`exact_match`) is called on each trained model and its metrics join the row.
    """
    from tqdm.auto import tqdm


    if not configs:
        raise ValueError("compare_tuners(configs={}): give at least one {name: config or None}.")
    if isinstance(lr, Mapping):
        missing = [name for name in configs if name not in lr]
        if missing:
            raise KeyError(f"compare_tuners(lr=...): no learning rate for {missing}; add them to the dict.")
    collate_fn = collate_fn or SFTCollator()
    bench_batch = collate_fn([train_ds[i] for i in range(min(batch_size, len(train_ds)))])
    if measure_rounds < 1:
        raise ValueError(f"compare_tuners(measure_rounds={measure_rounds}): expected >= 1.")

    models: dict[str, nn.Module] = {}
    lisas: dict[str, LISA] = {}
    for name, config in configs.items():
        torch.manual_seed(seed)  # tuner weights are initialised from the same RNG state in every run
        if isinstance(config, LISAConfig):  # a training technique: the base model, γ layers trainable
            models[name] = model_factory()
            lisas[name] = LISA(models[name], config)
        else:
            models[name] = _prepare(model_factory(), config)

    rows: dict[str, dict[str, Any]] = {}
    rounds: dict[str, list[float]] = {name: [] for name in configs}
    bar = tqdm(total=measure_rounds * len(configs) + len(configs), desc="tuners", disable=not progress)
    for _ in range(measure_rounds):
        for name, model in models.items():
            bar.set_postfix_str(f"measure {name}")
            row = bench.measure(model, lambda: bench_batch, sft_loss, name=name, steps=measure_steps,
                                warmup=measure_warmup)
            rounds[name].append(row["step_time_s"])
            rows.setdefault(name, row)
            bar.update(1)

    for name in configs:
        bar.set_postfix_str(f"train {name}")
        model, row = models.pop(name), rows[name]  # pop: each model is freed after its run
        step_time = float(np.median(rounds[name]))
        row.update(step_time_s=step_time, step_time_rounds=rounds[name],
                   throughput=_batch_rows(bench_batch) / step_time)
        run_lr = float(lr[name]) if isinstance(lr, Mapping) else float(lr)
        eval_loss_init = evaluate_loss(model, eval_ds, batch_size=eval_batch_size, collate_fn=collate_fn)
        start = time.perf_counter()
        lisa = lisas.pop(name, None)
        history = train(model, train_ds, sft_loss, steps=steps, batch_size=batch_size, lr=run_lr,
                        collate_fn=collate_fn, seed=seed, progress=False, lr_schedule=lr_schedule,
                        warmup_steps=warmup_steps, optimizer=lisa.make_optimizer(run_lr) if lisa else None,
                        on_step_begin=lisa)
        seconds = time.perf_counter() - start
        tail = history.loss[-max(1, steps // 10):]
        row.update(lr=run_lr, eval_loss_init=eval_loss_init,
                   eval_loss=evaluate_loss(model, eval_ds, batch_size=eval_batch_size, collate_fn=collate_fn),
                   train_loss=sum(tail) / len(tail), train_seconds=seconds, train_step_s=seconds / steps)
        if eval_fn is not None:
            row.update(eval_fn(model, name))
        bar.update(1)
        del model
    bar.close()
    return [rows[name] for name in configs]


def _batch_rows(batch: Mapping[str, torch.Tensor]) -> int:
    return int(batch["input_ids"].shape[0])
