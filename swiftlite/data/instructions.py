"""Instruction / response pairs whose answers are computed, not written by hand.

Supervised fine-tuning (SFT) data in the Alpaca layout (``instruction``, ``input``, ``output``)
plus a chat form (``messages``). Every task is a small deterministic function of its input, so
a fine-tuned model's answers can be checked exactly (``task`` names which function). Tasks:

    uppercase, reverse_words, sort_numbers, count_words, add, max_number,
    first_letters, describe_shape (shapes-world caption -> its attributes), repeat, last_word
"""

from __future__ import annotations

import numpy as np

from .shapes import COLOURS, POSITIONS, SHAPES

WORDS: tuple[str, ...] = (
    "apple", "river", "stone", "cloud", "green", "light", "table", "music", "paper", "tiger",
    "orbit", "sugar", "dream", "piano", "honey", "lemon", "ocean", "robot", "tulip", "candle",
    "forest", "garden", "window", "silver", "planet", "rocket", "bridge", "coffee", "yellow", "winter",
)
INSTRUCTION_TASKS: tuple[str, ...] = (
    "uppercase", "reverse_words", "sort_numbers", "count_words", "add", "max_number",
    "first_letters", "describe_shape", "repeat", "last_word",
)


def _example(task: str, rng: np.random.Generator) -> tuple[str, str, str]:
    words = [str(w) for w in rng.choice(WORDS, size=int(rng.integers(2, 6)), replace=False)]
    nums = [int(v) for v in rng.integers(0, 100, size=int(rng.integers(3, 7)))]
    phrase = " ".join(words)
    if task == "uppercase":
        return "Convert the text to upper case.", phrase, phrase.upper()
    if task == "reverse_words":
        return "Reverse the order of the words.", phrase, " ".join(reversed(words))
    if task == "sort_numbers":
        return "Sort the numbers from smallest to largest.", " ".join(map(str, nums)), \
            " ".join(map(str, sorted(nums)))
    if task == "count_words":
        return "How many words are in the text?", phrase, str(len(words))
    if task == "add":
        a, b = nums[:2]
        return "Add the two numbers.", f"{a} {b}", str(a + b)
    if task == "max_number":
        return "Which number is the largest?", " ".join(map(str, nums)), str(max(nums))
    if task == "first_letters":
        return "Write the first letter of every word.", phrase, "".join(w[0] for w in words)
    if task == "describe_shape":
        shape, colour = str(rng.choice(SHAPES)), str(rng.choice(list(COLOURS)))
        position = str(rng.choice(list(POSITIONS)))
        where = "in the center" if position == "center" else f"at the {position}"
        return ("Name the shape, colour and position in the caption.", f"a {colour} {shape} {where}",
                f"shape: {shape}; colour: {colour}; position: {position}")
    if task == "repeat":
        k = int(rng.integers(2, 4))
        return f"Repeat the word {k} times.", words[0], " ".join([words[0]] * k)
    if task == "last_word":
        return "What is the last word?", phrase, words[-1]
    raise ValueError(f"unknown instruction task {task!r}; available: {INSTRUCTION_TASKS}")


def instruction_pairs(n: int = 1000, *, seed: int = 0, tasks: tuple[str, ...] = INSTRUCTION_TASKS):
    """``n`` instruction examples as a ``datasets.Dataset``.

    Columns: ``task``, ``instruction``, ``input``, ``output``, ``prompt`` (instruction and input
    joined by a newline) and ``messages`` ([user, assistant] chat turns).
    """
    import datasets

    for t in tasks:
        if t not in INSTRUCTION_TASKS:
            raise ValueError(f"unknown instruction task {t!r}; available: {INSTRUCTION_TASKS}")
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("task", "instruction", "input", "output", "prompt", "messages")}
    for _ in range(n):
        task = tasks[rng.integers(len(tasks))]
        instruction, inp, out = _example(task, rng)
        prompt = f"{instruction}\n{inp}"
        rows["task"].append(task)
        rows["instruction"].append(instruction)
        rows["input"].append(inp)
        rows["output"].append(out)
        rows["prompt"].append(prompt)
        rows["messages"].append([{"role": "user", "content": prompt}, {"role": "assistant", "content": out}])
    return datasets.Dataset.from_dict(rows)
