"""Tool-use dialogs in a ReAct format over a few deterministic tools.

ReAct (Yao et al., "ReAct: Synergizing Reasoning and Acting in Language Models",
arXiv:2210.03629) interleaves free-text reasoning with tool calls:

    Question: How many metres are in 3 miles, plus 250?
    Thought: I need to convert miles to metres first.
    Action: unit_convert
    Action Input: {"value": 3, "from_unit": "mile", "to_unit": "m"}
    Observation: 4828.032
    Thought: Now I add 250.
    Action: calculator
    Action Input: {"expression": "4828.032 + 250"}
    Observation: 5078.032
    Thought: I now know the final answer.
    Final Answer: 5078.032

Every tool here is a pure function (:func:`run_tool`), so each dialog's gold actions can be
replayed and checked, and an agent's predicted ``Action`` / ``Action Input`` can be scored by
exact match (:func:`parse_react`). Tools: ``calculator`` (+ − × ÷ ** and parentheses on numbers),
``unit_convert`` (length, mass, time, temperature) and ``lookup`` (a small fixed table of planets
and shapes).
"""

from __future__ import annotations

import ast
import json
import operator
import re
from typing import Any

import numpy as np

# ---------------------------------------------------------------------------------------------
# the tools
# ---------------------------------------------------------------------------------------------
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow, ast.Mod: operator.mod}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}

# factor to the base unit of each dimension (m, kg, s)
UNITS: dict[str, tuple[str, float]] = {
    "mm": ("length", 0.001), "cm": ("length", 0.01), "m": ("length", 1.0), "km": ("length", 1000.0),
    "inch": ("length", 0.0254), "foot": ("length", 0.3048), "mile": ("length", 1609.344),
    "g": ("mass", 0.001), "kg": ("mass", 1.0), "lb": ("mass", 0.45359237), "oz": ("mass", 0.028349523125),
    "s": ("time", 1.0), "min": ("time", 60.0), "h": ("time", 3600.0), "day": ("time", 86400.0),
    "C": ("temperature", 1.0), "F": ("temperature", 1.0), "K": ("temperature", 1.0),
}
TABLE: dict[str, dict[str, float]] = {
    "mercury": {"moons": 0, "diameter_km": 4879, "day_hours": 4222.6},
    "venus": {"moons": 0, "diameter_km": 12104, "day_hours": 2802.0},
    "earth": {"moons": 1, "diameter_km": 12756, "day_hours": 24.0},
    "mars": {"moons": 2, "diameter_km": 6792, "day_hours": 24.7},
    "jupiter": {"moons": 95, "diameter_km": 142984, "day_hours": 9.9},
    "saturn": {"moons": 146, "diameter_km": 120536, "day_hours": 10.7},
    "triangle": {"sides": 3, "corners": 3},
    "square": {"sides": 4, "corners": 4},
    "pentagon": {"sides": 5, "corners": 5},
    "hexagon": {"sides": 6, "corners": 6},
}
QUESTIONS: dict[str, str] = {
    "moons": "How many moons does {e} have?", "diameter_km": "What is the diameter of {e} in km?",
    "day_hours": "How many hours long is a day on {e}?", "sides": "How many sides does a {e} have?",
    "corners": "How many corners does a {e} have?",
}
TOOLS: dict[str, str] = {
    "calculator": 'Evaluate an arithmetic expression. Input: {"expression": "3 * (4 + 5)"}',
    "unit_convert": 'Convert a quantity. Input: {"value": 3, "from_unit": "km", "to_unit": "mile"}; '
                    f"units: {', '.join(UNITS)}",
    "lookup": 'Look up a fact in a small table. Input: {"entity": "mars", "field": "moons"}',
}


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        right = _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ValueError("exponent too large (limit 64)")
        return _BINARY[type(node.op)](_eval(node.left), right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    raise ValueError(f"unsupported expression element {type(node).__name__}")


def format_number(x: float) -> str:
    """Canonical text of a tool result: integers without '.0', others rounded to 6 decimals."""
    x = round(float(x), 6)
    return str(int(x)) if x == int(x) else repr(x)


def calculator(expression: str) -> str:
    """Safe arithmetic (no names, no calls): ``calculator("2 * (3 + 4)") == "14"``."""
    return format_number(_eval(ast.parse(expression, mode="eval")))


def unit_convert(value: float, from_unit: str, to_unit: str) -> str:
    """``unit_convert(1, "km", "m") == "1000"``; temperatures convert between C, F and K."""
    for u in (from_unit, to_unit):
        if u not in UNITS:
            raise ValueError(f"unknown unit {u!r}; known units: {list(UNITS)}")
    dim_from, dim_to = UNITS[from_unit][0], UNITS[to_unit][0]
    if dim_from != dim_to:
        raise ValueError(f"cannot convert {from_unit} ({dim_from}) to {to_unit} ({dim_to})")
    if dim_from == "temperature":
        kelvin = {"C": lambda v: v + 273.15, "F": lambda v: (v - 32) * 5 / 9 + 273.15, "K": lambda v: v}
        back = {"C": lambda k: k - 273.15, "F": lambda k: (k - 273.15) * 9 / 5 + 32, "K": lambda k: k}
        return format_number(back[to_unit](kelvin[from_unit](float(value))))
    return format_number(float(value) * UNITS[from_unit][1] / UNITS[to_unit][1])


def lookup(entity: str, field: str) -> str:
    """``lookup("mars", "moons") == "2"`` from the fixed :data:`TABLE`."""
    row = TABLE.get(entity.lower())
    if row is None:
        raise ValueError(f"unknown entity {entity!r}; known: {list(TABLE)}")
    if field not in row:
        raise ValueError(f"{entity!r} has no field {field!r}; fields: {list(row)}")
    return format_number(row[field])


def run_tool(name: str, arguments: dict[str, Any] | str) -> str:
    """Execute tool ``name`` on ``arguments`` (a dict or its JSON text); errors become ``"Error: ..."``."""
    functions = {"calculator": calculator, "unit_convert": unit_convert, "lookup": lookup}
    if name not in functions:
        return f"Error: unknown tool {name!r}; available tools: {list(functions)}"
    try:
        args = json.loads(arguments) if isinstance(arguments, str) else dict(arguments)
        return functions[name](**args)
    except Exception as e:  # the observation tells the agent what went wrong
        return f"Error: {e}"


# ---------------------------------------------------------------------------------------------
# dialogs
# ---------------------------------------------------------------------------------------------
def _step(thought: str, tool: str, args: dict) -> dict:
    return {"thought": thought, "tool": tool, "input": args, "observation": run_tool(tool, args)}


def _make_dialog(rng: np.random.Generator) -> tuple[str, list[dict]]:
    kind = rng.integers(5)
    if kind == 0:  # single arithmetic
        a, b, c = (int(v) for v in rng.integers(2, 100, size=3))
        op1, op2 = rng.choice(["+", "-", "*"], size=2)
        expr = f"{a} {op1} {b} {op2} {c}"
        return f"What is {expr}?", [_step("I should compute this with the calculator.", "calculator",
                                          {"expression": expr})]
    if kind == 1:  # single conversion
        dim = rng.choice(["length", "mass", "time", "temperature"])
        units = [u for u, (d, _) in UNITS.items() if d == dim]
        src, dst = rng.choice(units, size=2, replace=False)
        value = int(rng.integers(1, 200))
        return (f"How many {dst} is {value} {src}?",
                [_step(f"I need to convert {src} to {dst}.", "unit_convert",
                       {"value": value, "from_unit": str(src), "to_unit": str(dst)})])
    if kind == 2:  # single lookup
        entity = rng.choice(list(TABLE))
        field = rng.choice(list(TABLE[entity]))
        return (QUESTIONS[str(field)].format(e=entity),
                [_step(f"I should look up {entity} in the table.", "lookup",
                       {"entity": str(entity), "field": str(field)})])
    if kind == 3:  # lookup then arithmetic
        planets = [p for p in TABLE if "moons" in TABLE[p]]
        p1, p2 = rng.choice(planets, size=2, replace=False)
        s1 = _step(f"First I look up the moons of {p1}.", "lookup", {"entity": str(p1), "field": "moons"})
        s2 = _step(f"Next the moons of {p2}.", "lookup", {"entity": str(p2), "field": "moons"})
        s3 = _step("Now I add the two counts.", "calculator",
                   {"expression": f"{s1['observation']} + {s2['observation']}"})
        return f"How many moons do {p1} and {p2} have together?", [s1, s2, s3]
    # conversion then arithmetic
    value, extra = int(rng.integers(1, 20)), int(rng.integers(10, 500))
    s1 = _step("I need to convert miles to metres first.", "unit_convert",
               {"value": value, "from_unit": "mile", "to_unit": "m"})
    s2 = _step(f"Now I add {extra}.", "calculator", {"expression": f"{s1['observation']} + {extra}"})
    return f"How many metres are in {value} miles, plus {extra}?", [s1, s2]


def render_react(question: str, steps: list[dict], answer: str | None = None) -> str:
    """The transcript text of a dialog (see the module docstring for the format)."""
    lines = [f"Question: {question}"]
    for s in steps:
        lines += [f"Thought: {s['thought']}", f"Action: {s['tool']}",
                  f"Action Input: {json.dumps(s['input'])}", f"Observation: {s['observation']}"]
    if answer is not None:
        lines += ["Thought: I now know the final answer.", f"Final Answer: {answer}"]
    return "\n".join(lines)


def system_prompt() -> str:
    """Instructions listing the tools and the ReAct format (the dialog's system message)."""
    tools = "\n".join(f"- {name}: {desc}" for name, desc in TOOLS.items())
    return ("Answer the question using the tools below. Use the format\n"
            "Thought: ...\nAction: <tool name>\nAction Input: <JSON>\nObservation: <tool output>\n"
            "... (repeat as needed)\nThought: I now know the final answer.\nFinal Answer: ...\n\n"
            f"Tools:\n{tools}")


def tool_dialogs(n: int = 500, *, seed: int = 0):
    """``n`` ReAct dialogs as a ``datasets.Dataset``.

    Columns: ``system`` (tool list + format), ``question``, ``text`` (the full transcript),
    ``messages`` (chat form: system, user = question, assistant = transcript after the question),
    ``gold_actions`` (list of {"tool", "input" (JSON text), "observation"}), ``answer``.
    Observations are real outputs of :func:`run_tool`; ``answer`` is the last observation.
    """
    import datasets

    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("system", "question", "text", "messages", "gold_actions",
                                             "answer")}
    system = system_prompt()
    for _ in range(n):
        question, steps = _make_dialog(rng)
        answer = steps[-1]["observation"]
        text = render_react(question, steps, answer)
        rows["system"].append(system)
        rows["question"].append(question)
        rows["text"].append(text)
        rows["messages"].append([{"role": "system", "content": system},
                                 {"role": "user", "content": question},
                                 {"role": "assistant", "content": text.split("\n", 1)[1]}])
        rows["gold_actions"].append([{"tool": s["tool"], "input": json.dumps(s["input"]),
                                      "observation": s["observation"]} for s in steps])
        rows["answer"].append(answer)
    return datasets.Dataset.from_dict(rows)


_ACTION = re.compile(r"^Action:\s*(.+?)\s*$\n^Action Input:\s*(.+?)\s*$", re.MULTILINE)
_FINAL = re.compile(r"^Final Answer:\s*(.+?)\s*$", re.MULTILINE)


def parse_react(text: str) -> dict:
    """Extract ``{"actions": [(tool, input_dict_or_text), ...], "final_answer": str | None}``.

    ``Action Input`` is parsed as JSON when possible, else kept as the raw string, so a
    malformed prediction still scores as a (wrong) action instead of raising.
    """
    actions = []
    for tool, raw in _ACTION.findall(text):
        try:
            args: Any = json.loads(raw)
        except json.JSONDecodeError:
            args = raw
        actions.append((tool, args))
    final = _FINAL.findall(text)
    return {"actions": actions, "final_answer": final[-1] if final else None}
