"""Checking a learner's answer in a tutorial exercise.

An exercise cell leaves a placeholder for the learner (``my_rank = ...``); the hidden answer cell
computes the reference, asserts that the reference itself is right, and then calls
``check_answer(my_rank, reference)``. The answer cell never assigns the learner's names, so what it
checks is what the learner wrote:

* the placeholder ``...`` (not answered yet): print the reference, return ``False``;
* an answer: compare it with the reference (numbers and tensors within ``rel_tol`` / ``abs_tol``,
  everything else with ``==``) and raise ``AssertionError`` saying both values if they differ;
  print "right" and return ``True`` if they agree.
"""
from __future__ import annotations

import math
from numbers import Number
from typing import Any

__all__ = ["check_answer"]


def _agree(answer: Any, reference: Any, rel_tol: float, abs_tol: float) -> bool:
    if hasattr(answer, "shape") and hasattr(reference, "shape"):  # tensors / arrays, compared as float
        if tuple(answer.shape) != tuple(reference.shape):
            return False
        a, r = answer.tolist(), reference.tolist()
        flat_a = a if isinstance(a, list) else [a]
        flat_r = r if isinstance(r, list) else [r]
        return _agree(flat_a, flat_r, rel_tol, abs_tol)
    if isinstance(answer, bool) != isinstance(reference, bool):  # True is not the number 1 here
        return False
    if isinstance(answer, Number) and isinstance(reference, Number):
        return math.isclose(float(answer), float(reference), rel_tol=rel_tol, abs_tol=abs_tol)
    if isinstance(answer, (list, tuple)) and isinstance(reference, (list, tuple)):
        return len(answer) == len(reference) and all(_agree(a, r, rel_tol, abs_tol) for a, r in zip(answer, reference))
    return answer == reference


def check_answer(answer: Any, reference: Any, *, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> bool:
    """Check the learner's `answer` against `reference` (see the module docstring); `...` means not answered."""
    if answer is Ellipsis:
        print(f"Not answered yet (the cell still holds `...`). The reference: {reference!r}")
        return False
    if not _agree(answer, reference, rel_tol, abs_tol):
        raise AssertionError(f"Your answer {answer!r} differs from the reference {reference!r}; "
                             "look again at the hint, change your cell and rerun both")
    print(f"Right: {answer!r}")
    return True
