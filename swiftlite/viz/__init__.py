"""Small figures and widgets for the tutorials.

    from swiftlite import viz
    viz.plot_history(history); viz.save_figure(fig, "00_tour_loss")
    viz.tuner_diagram(model)                       # where the tuners attach, drawn from the real model

* :mod:`swiftlite.viz.curves` — loss curves (smoothed) and evaluation metrics over steps.
* :mod:`swiftlite.viz.charts` — heatmaps, grouped bars, bars of one metric over bench rows.
* :mod:`swiftlite.viz.figures` — the folder figures go to (`figures/`, `figures/quick/` in quick mode) and saving there (warning on overlapping text).
* :mod:`swiftlite.viz.widgets` — an adapter switcher, a one-knob widget, a ReAct agent chat.
* :mod:`swiftlite.viz.layout` — where tuners attach as pure data: sites and the schematic's boxes.
* :mod:`swiftlite.viz.diagram` — `tuner_diagram`: that layout drawn with matplotlib.
* :mod:`swiftlite.viz.flow` — `FlowDiagram`: a method's data flow (boxes, ⊕ nodes, detached arrows).

Names load lazily from the table below: `import swiftlite.viz` imports neither matplotlib,
ipywidgets nor torch.
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    # curves
    "plot_history": "curves", "plot_evals": "curves",
    # charts
    "heatmap": "charts", "grouped_bars": "charts", "bar_compare": "charts",
    # figures
    "figures_dir": "figures", "save_figure": "figures", "text_overlaps": "figures",
    "FigureTextOverlap": "figures",
    # widgets
    "adapter_switch_widget": "widgets", "knob_widget": "widgets", "agent_chat_widget": "widgets",
    "BASE_MODEL_OPTION": "widgets",
    # layout (data) and diagram (drawing)
    "attachment_sites": "layout", "Site": "layout", "diagram_layout": "layout", "DiagramLayout": "layout",
    "tuner_diagram": "diagram", "draw_diagram": "diagram",
    # data flow
    "FlowDiagram": "flow",
}
_SUBMODULES = ("curves", "charts", "figures", "widgets", "layout", "diagram", "flow")

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES)
