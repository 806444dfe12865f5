"""Loss scale: per-token weights in the SFT loss, SWIFT's recipe for agent training.

Plain SFT weighs every response token alike. In a ReAct transcript most tokens are free text
(thoughts, the final answer), while what decides whether a tool call works is a handful of tokens:
the tool name after ``Action:`` and the JSON after ``Action Input:``. SWIFT (arXiv:2408.05517;
the technique is from "ModelScope-Agent", arXiv:2309.00986) multiplies each labelled token's
loss by a weight ``w_t`` taken from the span the token belongs to::

    L_scaled = (1/|R|) Σ_{t ∈ R} w_t · (− log p_θ(x_t | x_<t)),    R = {t : labels_t != −100}

The weights come from a map ``key -> (w_key, w_content)``: a response is cut at every occurrence
of a key; the key text itself gets ``w_key``, the text after it up to the next key gets
``w_content``, and text before the first key gets 1. The normaliser stays the number of labelled
tokens (as in ms-swift's ``loss_scale`` loss: ``(scale · ce).mean()`` over the labelled tokens),
so doubling a span's weight doubles its share of the gradient. A weight of 0 turns the token's
label into −100 (as ms-swift's template does): it is not scored at all.

The default, :data:`REACT_LOSS_SCALE`, is ms-swift's ``react`` map (``--loss_scale react``, file
``react.json``; the same as its older ``default_loss_scale_config.json``)::

    "Action:"       (2.0, 2.0)    tool name: double weight
    "Action Input:" (2.0, 2.0)    JSON arguments: double weight
    "Thought:"      (1.0, 1.0)
    "Final Answer:" (1.0, 1.0)
    "Observation:"  (2.0, 0.0)    the marker is learned (it is where generation stops and the tool
                                  runs); the tool's output is not the model's to predict: masked

Differences from ms-swift: ms-swift tokenizes each span on its own and concatenates the pieces;
here the whole response is tokenized once (so training sees exactly the tokens that generation
produces) and each token takes the largest weight among the spans its characters fall in (a BPE
token such as ``"\\nAction"`` that straddles a boundary gets the key's weight). The older
config's extra regex entry (``<.*?>`` → 1.0) is left out: it only restated the default weight.
"""

from __future__ import annotations

import re
from typing import Mapping

__all__ = ["REACT_LOSS_SCALE", "split_spans", "token_loss_scale"]

REACT_LOSS_SCALE: dict[str, tuple[float, float]] = {
    "Action:": (2.0, 2.0),
    "Action Input:": (2.0, 2.0),
    "Thought:": (1.0, 1.0),
    "Final Answer:": (1.0, 1.0),
    "Observation:": (2.0, 0.0),
}


def _check_map(loss_scale: Mapping[str, tuple[float, float]]) -> None:
    if not isinstance(loss_scale, Mapping) or not loss_scale:
        raise ValueError(f"loss_scale: expected a non-empty dict key -> (w_key, w_content), got {loss_scale!r}; "
                         "e.g. swiftlite.llm.loss_scale.REACT_LOSS_SCALE.")
    for key, weights in loss_scale.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"loss_scale: every key must be a non-empty string, got {key!r}.")
        if (not isinstance(weights, (tuple, list)) or len(weights) != 2
                or not all(isinstance(w, (int, float)) and w >= 0 for w in weights)):
            raise ValueError(f"loss_scale[{key!r}]: expected two weights >= 0 (w_key, w_content), got {weights!r}.")


def split_spans(text: str, loss_scale: Mapping[str, tuple[float, float]] = REACT_LOSS_SCALE
                ) -> list[tuple[str, float]]:
    """Cut ``text`` into ``(span, weight)`` pieces whose concatenation is ``text``.

    Text before the first key weighs 1; each key weighs ``w_key`` and what follows it, up to the
    next key, ``w_content``. Keys are matched longest first, so of two keys that start at the same
    place the longer one wins.
    """
    _check_map(loss_scale)
    pattern = re.compile("|".join(re.escape(k) for k in sorted(loss_scale, key=len, reverse=True)))
    spans: list[tuple[str, float]] = []
    position, content_weight = 0, 1.0  # before any key: weight 1
    for match in pattern.finditer(text):
        if match.start() > position:
            spans.append((text[position:match.start()], content_weight))
        w_key, content_weight = loss_scale[match.group()]
        spans.append((match.group(), float(w_key)))
        position = match.end()
    if position < len(text):
        spans.append((text[position:], float(content_weight)))
    return spans


def token_loss_scale(tokenizer, text: str, loss_scale: Mapping[str, tuple[float, float]] = REACT_LOSS_SCALE
                     ) -> tuple[list[int], list[float]]:
    """Token ids of ``text`` (no special tokens) and one weight per token.

    A token's weight is the largest weight of the characters it covers (character weights from
    :func:`split_spans`); needs a fast tokenizer (offset mapping).
    """
    char_weight: list[float] = []
    for span, weight in split_spans(text, loss_scale):
        char_weight += [weight] * len(span)
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError as err:  # slow tokenizers have no offsets
        raise ValueError("token_loss_scale: the tokenizer has no offset mapping; load a fast tokenizer "
                         "(AutoTokenizer.from_pretrained(..., use_fast=True)).") from err
    weights = []
    for start, end in enc["offset_mapping"]:
        covered = char_weight[start:end] or [1.0]  # a token with an empty span (rare): weight 1
        weights.append(max(covered))
    return enc["input_ids"], weights
