"""Notebook widgets that re-compute when a knob moves: an adapter switcher, a one-knob widget and a
ReAct agent chat.

ipywidgets and IPython are imported inside the functions, so ``import swiftlite.viz`` stays free.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from ..llm.agent import format_trajectory, run_agent

__all__ = ["adapter_switch_widget", "knob_widget", "agent_chat_widget", "BASE_MODEL_OPTION"]

BASE_MODEL_OPTION = "(base model: disable_adapter)"


def _with_adapter(model, choice: str, fn: Callable[[], Any]) -> Any:
    """``fn()`` with adapter ``choice`` of a SwiftModel active (it stays active afterwards), or, for
    :data:`BASE_MODEL_OPTION`, inside ``model.disable_adapter()`` (a model without adapters runs as it is)."""
    if choice != BASE_MODEL_OPTION:
        model.set_active_adapters(choice)
        return fn()
    if not getattr(model, "adapters", None):
        return fn()
    with model.disable_adapter():
        return fn()


def _check_adapters(caller: str, model, names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in getattr(model, "adapters", {})]
    if unknown:
        raise ValueError(f"{caller}: unknown adapters {unknown}; the model has {list(getattr(model, 'adapters', {}))}")


def adapter_switch_widget(model, inputs: Any, render_fn: Callable[[Any, Any], Any], options: Sequence[str] | None = None):
    """A dropdown that switches which adapter of a SwiftModel is active and re-renders.

    Choosing an adapter calls `model.set_active_adapters(name)` (so the choice stays in effect
    after the widget is gone); the last option runs `render_fn` inside `model.disable_adapter()`.
    `render_fn(model, inputs)` may return a matplotlib figure, a string or anything IPython can
    display. Returns an `ipywidgets.VBox([dropdown, output])`; its `.dropdown` attribute is the
    dropdown and `.renders` counts renders.
    """
    import ipywidgets as widgets

    names = list(options if options is not None else getattr(model, "adapters", {}))
    if not names:
        raise ValueError("adapter_switch_widget: the model has no adapters; add one with Swift.prepare_model first")
    _check_adapters("adapter_switch_widget(options=...)", model, names)
    dropdown = widgets.Dropdown(options=names + [BASE_MODEL_OPTION], value=names[0], description="adapter")
    output = widgets.Output()
    box = widgets.VBox([dropdown, output])
    box.dropdown, box.renders = dropdown, 0

    def render(choice: str) -> None:
        _show_in(output, _with_adapter(model, choice, lambda: render_fn(model, inputs)))
        box.renders += 1

    dropdown.observe(lambda change: render(change["new"]), names="value")
    render(dropdown.value)
    return box


def knob_widget(control, render: Callable[[Any], Any]):
    """One knob and what it changes: `control` (an ipywidgets control with a `value`: a slider, a
    dropdown, toggle buttons) above an Output that shows `render(control.value)`, re-rendered
    whenever the knob moves.

    `render(value)` returns a string (printed: give it a line that changes with the value, so a
    reader and the browser test see the change), a matplotlib figure (shown once, then closed),
    anything IPython can display, or a tuple of these (shown in order). Returns an
    `ipywidgets.VBox([control, output])` with `.control`, `.output`, `.renders` (how many renders)
    and `.last` (the last value rendered).
    """
    import ipywidgets as widgets

    if not isinstance(control, widgets.ValueWidget):
        raise TypeError(f"knob_widget(control=...): expected an ipywidgets control with a value (IntSlider, "
                        f"FloatSlider, Dropdown, ToggleButtons, ...), got {type(control).__name__}")
    if not callable(render):
        raise TypeError(f"knob_widget(render=...): expected a function of the control's value, got {type(render).__name__}")
    output = widgets.Output()
    box = widgets.VBox([control, output])
    box.control, box.output, box.renders, box.last = control, output, 0, None

    def show(value: Any) -> None:
        _show_in(output, render(value))
        box.renders += 1
        box.last = value

    control.observe(lambda change: show(change["new"]), names="value")
    show(control.value)
    return box


def agent_chat_widget(model, tokenizer, questions: Sequence[str], *, adapters: Sequence[str] | None = None,
                      max_steps: int = 4, max_new_tokens: int = 96):
    """Type or choose a request and see the model's ReAct trajectory with the real tool results.

    A ``Combobox`` holds the request (pick one of ``questions`` or type your own), ``ToggleButtons``
    choose which adapter of a SwiftModel is active (``adapters``, default all of them, plus
    :data:`BASE_MODEL_OPTION`: every adapter off); every change re-runs
    :func:`swiftlite.llm.agent.run_agent` and prints :func:`~swiftlite.llm.agent.format_trajectory`
    into an ``Output``. Returns an ``ipywidgets.VBox`` with ``.request``, ``.adapter``, ``.output``,
    ``.renders`` and ``.last`` (the last text shown).
    """
    import ipywidgets as widgets

    names = list(adapters if adapters is not None else getattr(model, "adapters", {}))
    _check_adapters("agent_chat_widget(adapters=...)", model, names)
    if not questions:
        raise ValueError("agent_chat_widget(questions=...): give at least one example request.")
    request = widgets.Combobox(value=questions[0], options=list(questions), ensure_option=False,
                               description="request", layout=widgets.Layout(width="90%"))
    adapter = widgets.ToggleButtons(options=names + [BASE_MODEL_OPTION], value=(names or [BASE_MODEL_OPTION])[0],
                                    description="adapter")
    output = widgets.Output()
    box = widgets.VBox([request, adapter, output])
    box.request, box.adapter, box.output, box.renders, box.last = request, adapter, output, 0, None

    def show(*_):
        question = request.value.strip()
        if not question:
            return
        (trajectory,) = _with_adapter(model, adapter.value, lambda: run_agent(
            model, tokenizer, [question], max_steps=max_steps, max_new_tokens=max_new_tokens))
        text = f"[{adapter.value}]\n" + format_trajectory(trajectory)
        _show_in(output, text)
        box.renders += 1
        box.last = text

    request.observe(show, names="value")
    adapter.observe(show, names="value")
    show()
    return box


def _show_in(output: Any, result: Any) -> None:
    """Replace what a widget's `output` shows with `result`: a figure, a str, any displayable, or a
    tuple of those (shown one after the other)."""
    from IPython.display import display

    output.clear_output(wait=True)
    with output:
        for item in result if isinstance(result, tuple) else (result,):
            if hasattr(item, "savefig"):  # a matplotlib figure: shown once, not twice
                import matplotlib.pyplot as plt

                display(item)
                plt.close(item)
            elif isinstance(item, str):
                print(item)
            elif item is not None:
                display(item)
