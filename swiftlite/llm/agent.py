"""Agent evaluation: a tuned LM writes ReAct steps, the deterministic tools answer, we score.

The model writes ``Thought: ...\\nAction: <tool>\\nAction Input: <JSON>\\nObservation:``; generation
stops at the observation marker, :func:`swiftlite.data.tools.run_tool` executes the call, its
output is appended after the marker, and the model continues until ``Final Answer: ...`` (the
loop of ReAct, Yao et al., arXiv:2210.03629, and of SWIFT's agent deployment). Three scores,
as in the agent tables of the SWIFT paper (arXiv:2408.05517; ToolBench metrics):

* **Act.EM** — per gold step, exact match of the action: same tool name and the same arguments
  (the parsed JSON objects are equal, so spacing and key order do not matter). Each step is
  scored *with the gold history* (the prompt holds the gold thoughts, actions and observations
  of the earlier steps), so one early mistake does not fail every later step.
* **hallucination rate** — share of those gold steps whose predicted call names a tool that
  does not exist or has malformed arguments (not a JSON object, or not exactly the tool's
  parameter names). A call to a real tool with well-formed but wrong values is *wrong*, not a
  hallucination; a step with no call at all is *no call*. Each step falls in exactly one class::

      correct | wrong (real tool, well-formed, not equal) | hallucinated_tool | malformed_args | no_call

* **final-answer accuracy** — the model runs free (its own actions, real tool outputs, at most
  ``max_steps`` calls); the ``Final Answer`` must equal the gold answer (numbers compared after
  :func:`~swiftlite.data.tools.format_number`).

Generation is greedy (``do_sample=False``) with 🤗 ``generate(stop_strings=["Observation:"])``,
batched with left padding.
"""

from __future__ import annotations

import inspect
import json
from typing import Any, Sequence

import torch

from swiftlite.data import tools as _tools
from swiftlite.data.tools import TOOLS, format_number, parse_react, run_tool

__all__ = ["OBSERVATION", "agent_pairs", "tool_parameters", "classify_call", "score_step", "answers_match",
           "generate", "run_agent", "evaluate_agent", "format_trajectory"]

OBSERVATION = "Observation:"  # where the model stops and the tool speaks


def agent_pairs(dialogs):
    """SFT pairs from :func:`swiftlite.data.tools.tool_dialogs`: ``prompt`` = the question,
    ``output`` = the assistant's transcript (thoughts, actions, observations, final answer).
    The tool list of the ``system`` column is left out: the tiny model learns the tools from the
    data (the system prompt alone would be ~280 tokens)."""
    return dialogs.map(lambda r: {"prompt": r["question"], "output": r["messages"][-1]["content"]})


def tool_parameters() -> dict[str, list[str]]:
    """Each tool's parameter names, read from the functions' signatures."""
    return {name: list(inspect.signature(getattr(_tools, name)).parameters) for name in TOOLS}


def classify_call(action: tuple[str, Any] | None, gold_tool: str, gold_input: dict | str) -> str:
    """One of correct / wrong / hallucinated_tool / malformed_args / no_call (module docstring)."""
    if action is None:
        return "no_call"
    tool, args = action
    params = tool_parameters()
    if tool not in params:
        return "hallucinated_tool"
    if not isinstance(args, dict) or sorted(args) != sorted(params[tool]):
        return "malformed_args"
    gold = json.loads(gold_input) if isinstance(gold_input, str) else gold_input
    return "correct" if tool == gold_tool and args == gold else "wrong"


def score_step(generated: str, gold_tool: str, gold_input: dict | str) -> str:
    """Class of one generated step (text up to the observation marker) against the gold action;
    the first ``Action`` / ``Action Input`` pair of the text is the prediction."""
    actions = parse_react(generated + "\n")["actions"]
    return classify_call(actions[0] if actions else None, gold_tool, gold_input)


def answers_match(predicted: str | None, gold: str) -> bool:
    """Exact match after stripping; numbers compare by :func:`format_number` (``"5.0"`` == ``"5"``)."""
    if predicted is None:
        return False
    try:
        return format_number(float(predicted)) == format_number(float(gold))
    except ValueError:
        return predicted.strip() == gold.strip()


def _prompt(tokenizer, question: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)


@torch.no_grad()
def generate(model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int = 96, batch_size: int = 32,
             stop: Sequence[str] = (OBSERVATION,), use_cache: bool = True) -> list[str]:
    """Greedy continuations of ``prompts`` (text after the prompt), each cut after the first stop string.

    ``use_cache=False`` recomputes the whole sequence at every token: slower, but needed by tuners
    that change the sequence inside the model (Prompt tuning inserts tokens at every forward)."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    was_training = model.training
    model.eval()
    outputs: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts[start:start + batch_size]]
            T = max(len(ids) for ids in chunk)
            input_ids = torch.full((len(chunk), T), pad, dtype=torch.long)  # (B, T), left-padded
            attention_mask = torch.zeros((len(chunk), T), dtype=torch.long)
            for i, ids in enumerate(chunk):
                input_ids[i, T - len(ids):] = torch.tensor(ids)
                attention_mask[i, T - len(ids):] = 1
            out = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                 max_new_tokens=max_new_tokens, do_sample=False, stop_strings=list(stop) or None,
                                 tokenizer=tokenizer, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id,
                                 use_cache=use_cache)
            for row in out[:, T:]:  # (B, new)
                text = tokenizer.decode(row, skip_special_tokens=True)
                cuts = [text.index(s) + len(s) for s in stop if s in text]
                outputs.append(text[:min(cuts)] if cuts else text)
    finally:
        model.train(was_training)
    return outputs


def run_agent(model, tokenizer, questions: Sequence[str], *, max_steps: int = 4, max_new_tokens: int = 96,
              batch_size: int = 32) -> list[dict]:
    """Let the model solve each question with the real tools.

    Returns one dict per question: ``response`` (everything after the prompt, observations
    included), ``calls`` (list of ``{"tool", "input", "observation"}`` as executed) and
    ``final_answer`` (None if it never wrote one).
    """
    prompts = [_prompt(tokenizer, q) for q in questions]
    responses = [""] * len(questions)
    calls: list[list[dict]] = [[] for _ in questions]
    running = list(range(len(questions)))
    for _ in range(max_steps + 1):
        if not running:
            break
        texts = generate(model, tokenizer, [prompts[i] + responses[i] for i in running],
                         max_new_tokens=max_new_tokens, batch_size=batch_size)
        still = []
        for i, text in zip(running, texts):
            responses[i] += text
            actions = parse_react(text + "\n")["actions"]
            if text.endswith(OBSERVATION) and actions and len(calls[i]) < max_steps:
                tool, args = actions[-1]
                observation = run_tool(tool, args)  # the real, deterministic tool
                calls[i].append({"tool": tool, "input": args, "observation": observation})
                responses[i] += f" {observation}\n"
                still.append(i)
        running = still
    return [{"question": q, "response": r, "calls": c, "final_answer": parse_react(r)["final_answer"]}
            for q, r, c in zip(questions, responses, calls)]


def _gold_prefixes(transcript: str) -> list[str]:
    """The transcript up to (and including) each Observation line: prefix k is the gold history of step k."""
    prefixes, lines = [""], transcript.split("\n")
    for k, line in enumerate(lines):
        if line.startswith(OBSERVATION):
            prefixes.append("\n".join(lines[:k + 1]) + "\n")
    return prefixes


def evaluate_agent(model, tokenizer, dialogs, *, max_steps: int = 4, max_new_tokens: int = 96,
                   batch_size: int = 32) -> dict[str, Any]:
    """Act.EM, hallucination rate and final-answer accuracy on ``dialogs`` (``tool_dialogs`` rows).

    Returns ``{"act_em", "hallucination_rate", "final_answer_accuracy", "steps", "counts"
    (per class), "per_step" (question, step, gold, predicted text, class), "trajectories"
    (from :func:`run_agent`)}``.
    """
    step_prompts, gold = [], []
    for row in dialogs:
        prefixes = _gold_prefixes(row["messages"][-1]["content"])
        for k, action in enumerate(row["gold_actions"]):
            step_prompts.append(_prompt(tokenizer, row["question"]) + prefixes[k])
            gold.append((row["question"], k, action))
    predictions = generate(model, tokenizer, step_prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    counts = dict.fromkeys(("correct", "wrong", "hallucinated_tool", "malformed_args", "no_call"), 0)
    per_step = []
    for (question, k, action), text in zip(gold, predictions):
        kind = score_step(text, action["tool"], action["input"])
        counts[kind] += 1
        per_step.append({"question": question, "step": k, "gold_tool": action["tool"],
                         "gold_input": action["input"], "predicted": text, "class": kind})
    n = max(1, len(per_step))
    trajectories = run_agent(model, tokenizer, dialogs["question"], max_steps=max_steps,
                             max_new_tokens=max_new_tokens, batch_size=batch_size)
    correct_answers = [answers_match(t["final_answer"], a) for t, a in zip(trajectories, dialogs["answer"])]
    return {"act_em": counts["correct"] / n,
            "hallucination_rate": (counts["hallucinated_tool"] + counts["malformed_args"]) / n,
            "final_answer_accuracy": sum(correct_answers) / max(1, len(correct_answers)),
            "steps": len(per_step), "counts": counts, "per_step": per_step, "trajectories": trajectories}


def format_trajectory(trajectory: dict) -> str:
    """A run of :func:`run_agent` as text: the transcript, then one line per executed tool call."""
    lines = [f"Question: {trajectory['question']}", trajectory["response"].rstrip(), ""]
    for k, call in enumerate(trajectory["calls"], 1):
        args = json.dumps(call["input"]) if isinstance(call["input"], dict) else repr(call["input"])
        lines.append(f"tool call {k}: {call['tool']}({args}) -> {call['observation']}")
    lines.append(f"final answer: {trajectory['final_answer']}")
    return "\n".join(lines)
