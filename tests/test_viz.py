"""swiftlite.viz: figures from real History / bench rows, figure folder rule, adapter switcher."""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from swiftlite import LoRAConfig, Swift, viz  # noqa: E402
from swiftlite.testing import models  # noqa: E402
from swiftlite.train import History  # noqa: E402


def test_plot_history_draws_raw_and_smoothed_curves():
    runs = {"a": History(loss=[3.0, 2.0, 1.5, 1.0]), "b": History(loss=[2.0, 1.0])}
    ax = viz.plot_history(runs)
    assert len(ax.lines) == 4
    assert list(ax.lines[0].get_ydata()) == [3.0, 2.0, 1.5, 1.0]
    smoothed = list(ax.lines[1].get_ydata())
    assert smoothed[0] == pytest.approx(3.0) and smoothed[1] == pytest.approx((0.9 * 0.1 * 3 + 0.1 * 2) / (1 - 0.81))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    ax = viz.plot_history(History(loss=[1.0, 0.5]))
    assert len(ax.lines) == 2
    with pytest.raises(ValueError, match="labels"):
        viz.plot_history([History(loss=[1.0])], labels=["x", "y"])
    plt.close("all")


def test_bar_compare_uses_the_metric_and_mib():
    rows = [{"name": "full", "peak_memory_bytes": 4 * 2**20, "x_ratio": 1.0},
            {"name": "lora", "peak_memory_bytes": 2 * 2**20, "x_ratio": 0.5}]
    ax = viz.bar_compare(rows, "peak_memory_bytes")
    assert [b.get_width() for b in ax.patches] == [4.0, 2.0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["full", "lora"]
    assert "MiB" in ax.get_xlabel()
    ax = viz.bar_compare(rows, "x_ratio")
    assert any(list(line.get_xdata()) == [1.0, 1.0] for line in ax.lines)
    with pytest.raises(KeyError, match="step_time_s"):
        viz.bar_compare(rows, "step_time_s")
    plt.close("all")


def test_figures_dir_rule(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "swiftlite").mkdir(parents=True)
    (repo / "tutorials").mkdir()
    (repo / "pyproject.toml").write_text("")
    monkeypatch.chdir(repo / "tutorials")
    monkeypatch.delenv("SWIFTLITE_FIGURES", raising=False)
    monkeypatch.delenv("SWIFTLITE_QUICK", raising=False)
    assert viz.figures_dir() == (repo / "figures").resolve()
    monkeypatch.setenv("SWIFTLITE_QUICK", "1")
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    path = viz.save_figure(fig, "demo")
    assert path == (repo / "figures" / "quick" / "demo.png").resolve()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (repo / "figures" / "quick" / ".gitignore").read_text() == "*\n"
    monkeypatch.setenv("SWIFTLITE_FIGURES", str(tmp_path / "elsewhere"))
    assert viz.save_figure(fig, "demo.png") == tmp_path / "elsewhere" / "demo.png"
    with pytest.raises(ValueError, match="plain file name"):
        viz.save_figure(fig, "../x")
    plt.close("all")


def test_adapter_switch_widget_switches_and_disables():
    model, inputs = models.mlp()
    model = Swift.prepare_model(model, {"a": LoRAConfig(target_modules=["fc1"], init_lora_weights=False),
                                        "b": LoRAConfig(target_modules=["fc1"], init_lora_weights=False)})
    with torch.no_grad(), model.disable_adapter():
        base = model(**inputs)
    seen = []

    def render(m, x):
        with torch.no_grad():
            seen.append((list(m.active_adapters), m(**x)))
        return "ok"

    box = viz.adapter_switch_widget(model, inputs, render)
    assert seen[-1][0] == ["a"] and box.renders == 1
    box.dropdown.value = "b"
    assert seen[-1][0] == ["b"] and not torch.allclose(seen[-1][1], seen[0][1])
    box.dropdown.value = viz.BASE_MODEL_OPTION
    assert torch.allclose(seen[-1][1], base)
    assert model.active_adapters == ["b"]  # disable_adapter restored the previous choice
    assert box.renders == 3
    with pytest.raises(ValueError, match="unknown adapters"):
        viz.adapter_switch_widget(model, inputs, render, options=["zzz"])


def test_plot_evals_heatmap_grouped_bars_and_bar_axes():
    runs = {"a": History(loss=[1.0], evals=[(5, {"acc": 0.5}), (10, {"acc": 0.9})]),
            "b": History(loss=[1.0], evals=[(10, {"acc": 0.7})])}
    ax = viz.plot_evals(runs, "acc", start=0.1, ylabel="accuracy")
    assert list(ax.lines[0].get_xdata()) == [0, 5, 10] and list(ax.lines[0].get_ydata()) == [0.1, 0.5, 0.9]
    assert ax.get_ylabel() == "accuracy" and [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    with pytest.raises(ValueError, match="no 'loss'"):
        viz.plot_evals(runs, "loss")

    ax = viz.heatmap([[0.1, 0.9], [0.8, 0.2], [0.5, 0.5]], ["base", "up", "down"], ["x", "y"], vmin=0, vmax=1)
    assert [t.get_text() for t in ax.texts] == ["10.0%", "90.0%", "80.0%", "20.0%", "50.0%", "50.0%"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["base", "up", "down"]
    with pytest.raises(ValueError, match="shape"):
        viz.heatmap([[1.0]], ["a", "b"], ["x"])

    ax = viz.grouped_bars(["full", "lora"], {"paper": [1.0, 0.4], "ours": [1.0, 0.8]}, xlabel="memory / full FT",
                          reference=1.0, reference_label="full FT")
    bars = [p for p in ax.patches]
    assert [b.get_width() for b in bars] == [1.0, 0.4, 1.0, 0.8]
    assert len({b.get_facecolor() for b in bars}) == 2  # one colour per group
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["full FT", "ours", "paper"]
    assert ax.get_xlim()[0] == 0 and ax.get_xlabel() == "memory / full FT"
    ax = viz.grouped_bars(["a", "b"], {"mean": [0.5, 0.9]}, errors={"mean": [0.1, 0.3]})
    [(_, caplines, (bar_lines,))] = [c.lines for c in ax.containers if hasattr(c, "lines") and c.lines[2]]
    assert np.allclose([seg[:, 0] for seg in bar_lines.get_segments()], [[0.4, 0.6], [0.6, 1.2]])  # ± std around the mean
    assert ax.get_xlim()[1] >= 1.2  # the error bar is inside the axes
    with pytest.raises(ValueError, match="errors"):
        viz.grouped_bars(["a", "b"], {"mean": [0.5, 0.9]}, errors={"other": [0.1, 0.1]})

    rows = [{"name": "full", "p": 100.0}, {"name": "ln", "p": 0.1}]
    ax = viz.bar_compare(rows, "p", xlabel="trainable parameters (% of the model, log scale)", log=True)
    assert ax.get_xscale() == "log" and ax.get_xlabel().startswith("trainable")
    ax = viz.bar_compare([{"name": "a", "loss": 3.0}, {"name": "b", "loss": 2.5}], "loss")
    assert ax.get_xlim()[0] == 0  # the loss axis is not truncated
    plt.close("all")


# ---- tuner_diagram ------------------------------------------------------------------------------------
def _snapshot(model):
    """Everything tuner_diagram must leave alone: modules, parameters, flags, hooks."""
    return ([(n, type(m).__name__, len(m._forward_hooks), len(m._forward_pre_hooks)) for n, m in model.named_modules()],
            {n: (p.detach().clone(), p.requires_grad) for n, p in model.named_parameters()}, model.training)


def _same(a, b):
    assert a[0] == b[0] and a[2] == b[2] and a[1].keys() == b[1].keys()
    assert all(torch.equal(a[1][k][0], b[1][k][0]) and a[1][k][1] == b[1][k][1] for k in a[1])


def _drawn_paths(fig, styles):
    return {p for row in fig.diagram_rows if row["style"] in styles for p in row["paths"]}


def test_tuner_diagram_marks_the_lora_layers_of_a_swift_model():
    base, _ = models.llama()
    model = Swift.prepare_model(base, LoRAConfig(target_modules=["q_proj", "v_proj"]))
    before = _snapshot(model)
    fig = viz.tuner_diagram(model)
    _same(before, _snapshot(model))
    expected = {f"model.layers.{i}.self_attn.{m}" for i in range(2) for m in ("q_proj", "v_proj")}
    assert {s.path for s in fig.sites} == expected
    assert all(s.tuner == "LoRA" and s.adapter == "default" and s.role == "wraps" and s.state == "active" for s in fig.sites)
    assert _drawn_paths(fig, {"tuner"}) == expected  # the two folded layers: each box stands for both
    # inside each tuner layer: the wrapped op (frozen) and the tuner's weights (trainable)
    assert {p for p in _drawn_paths(fig, {"trainable"})} == {f"{e}.lora_{ab}.default" for e in expected for ab in "AB"}
    assert any(r["text"].startswith("base_layer (Linear)") and "frozen" in r["text"] and "wrapped op" in r["text"]
               for r in fig.diagram_rows)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "LoRA[default]: wraps" in texts and "in 32 -> out 32" in texts and "in 32 -> out 16" in texts
    assert any("layers.0-1 (LlamaDecoderLayer)  x2" in t for t in texts)  # folded like show()
    assert fig.axes[0].get_legend() is not None and "trainable" in fig.axes[0].get_title(loc="left")
    model.set_active_adapters([])
    assert {s.state for s in viz.tuner_diagram(model).sites} == {"inactive"}
    plt.close("all")


def test_tuner_diagram_with_a_config_changes_nothing_and_marks_the_matches():
    for family, config in [("vit", LoRAConfig(target_modules=["q_proj", "fc1"])),
                           ("unet", LoRAConfig(target_modules=r".*attn1\.to_q", r=2)),
                           ("bert", LoRAConfig(target_modules=["query"])),
                           ("mlp", LoRAConfig(target_modules=["fc1"]))]:
        model, _ = models.MODELS[family]()
        before = _snapshot(model)
        fig = viz.tuner_diagram(model, config, max_rows=500)  # every level open
        _same(before, _snapshot(model))
        matched = set(config.matched_modules(model))
        assert {s.path for s in fig.sites} == matched, family
        assert all(s.adapter is None and s.role == "would attach" for s in fig.sites)
        assert _drawn_paths(fig, {"match"}) == matched, family
        assert "nothing applied yet" in fig.axes[0].get_title(loc="left")
    with pytest.raises(TypeError, match="SwiftConfig"):
        viz.tuner_diagram(model, {"target_modules": ["fc1"]})
    from swiftlite import NEFTuneConfig

    both = viz.tuner_diagram(model, {"default": LoRAConfig(target_modules=["fc1"]), "noise": NEFTuneConfig()})
    assert {(s.path, s.tuner) for s in both.sites} == {("fc1", "LoRA"), ("embed", "NEFTune")}
    plt.close("all")


def test_tuner_diagram_shows_resturning_hooks_and_its_side_network():
    from swiftlite import ResTuningConfig

    def config():
        return ResTuningConfig(dims=32, root_modules=r"model\.embed_tokens", root_modules_hook="output",
                               stem_modules=r"model\.layers\.\d+", target_modules="model.norm")

    base, _ = models.llama()
    roles = {s.path: s.role for s in viz.tuner_diagram(base, config()).sites}
    assert roles == {"model.embed_tokens": "root (output)", "model.layers.0": "stem 1 (output)",
                     "model.layers.1": "stem 2 (output)", "model.norm": "target (input replaced)"}
    model = Swift.prepare_model(base, config())
    before = _snapshot(model)
    fig = viz.tuner_diagram(model)
    _same(before, _snapshot(model))
    sites = {s.path: s.role for s in fig.sites}
    assert sites == {**roles, "restuning_default": "added"}
    assert _drawn_paths(fig, {"hooked"}) == set(roles)  # hooked modules stay themselves, drawn dashed
    assert _drawn_paths(fig, {"tuner"}) == {"restuning_default"}
    arrows = [c for c in fig.axes[0].texts if type(c).__name__ == "Annotation" and c.arrow_patch is not None
              and c.arrow_patch.get_arrowstyle().__class__.__name__ == "CurveFilledB"]
    assert len(arrows) == 4  # root and 2 stems feed the bypass, the bypass feeds the target
    plt.close("all")


def test_tuner_diagram_stays_readable_on_a_large_tuner():
    from swiftlite import BitFitConfig

    model, _ = models.unet()
    model = Swift.prepare_model(model, BitFitConfig(target_modules=None))
    fig = viz.tuner_diagram(model, max_rows=40)
    assert len(fig.diagram_rows) <= 40
    inside = sum(int(r["site"].split(": ")[1].split()[0]) for r in fig.diagram_rows if "inside" in r["site"])
    shown = sum(1 for r in fig.diagram_rows if r["site"].endswith("wraps"))
    assert inside + shown >= len({s.path for s in fig.sites}) / 2  # closed blocks still count their tuner layers
    plt.close("all")


def test_tuner_diagram_draws_every_registered_tuner():
    import swiftlite.tuners  # noqa: F401
    from swiftlite.core import TUNERS
    from swiftlite.core.layer import TunerLayer
    from tests.test_conformance import CASES

    public = sorted(t for t in TUNERS if not t.startswith("_"))  # other tests register private `_TEST_*` tuners
    missing = sorted(set(public) - set(CASES))
    assert not missing, f"no conformance case (tests/test_conformance.py CASES) to draw for {missing}"
    for swift_type in public:
        family, make = next(iter(CASES[swift_type].items()))
        model, _ = models.MODELS[family]()
        before = _snapshot(model)
        fig = viz.tuner_diagram(model, make())
        _same(before, _snapshot(model))
        assert {s.path for s in fig.sites} == set(make().matched_modules(model)), swift_type
        swift = Swift.prepare_model(model, make())
        fig = viz.tuner_diagram(swift)
        layers = {n for n, m in model.named_modules() if isinstance(m, TunerLayer)}
        drawn = {p for r in fig.diagram_rows for p in r["paths"]}
        assert layers <= {s.path for s in fig.sites} and layers <= drawn, swift_type
        assert all(r["site"] for r in fig.diagram_rows if r["style"] == "tuner"), swift_type
        plt.close("all")


def test_knob_widget_renders_on_every_change():
    import ipywidgets as widgets

    seen = []

    def render(value):
        seen.append(value)
        fig, ax = plt.subplots()
        ax.plot([0, value])
        return f"r = {value}: {value * 10} params", fig

    box = viz.knob_widget(widgets.IntSlider(value=2, min=1, max=8), render)
    assert seen == [2] and box.renders == 1 and box.last == 2 and box.children == (box.control, box.output)
    box.control.value = 5
    assert seen == [2, 5] and box.renders == 2 and box.last == 5
    assert not plt.get_fignums()  # each figure was shown once and closed
    with pytest.raises(TypeError, match="ipywidgets control"):
        viz.knob_widget(widgets.Output(), render)
    with pytest.raises(TypeError, match="function"):
        viz.knob_widget(widgets.IntSlider(), "r")


def _labels_fit(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for label, box in fig.diagram_artists:
        text, frame = label.get_window_extent(renderer), box.get_window_extent(renderer)
        assert text.x0 >= frame.x0 and text.x1 <= frame.x1 + 1, f"label {label.get_text()!r} overflows its box"
    return True


def test_tuner_diagram_labels_fit_their_boxes_alone_and_in_a_given_axes():
    from swiftlite import ResTuningConfig

    base, _ = models.vit()
    lora = Swift.prepare_model(base, LoRAConfig(target_modules=["q_proj", "v_proj"]))
    assert _labels_fit(viz.tuner_diagram(lora))
    other, _ = models.vit()
    bypass = Swift.prepare_model(other, ResTuningConfig(dims=32, root_modules=r"vit\.embeddings", root_modules_hook="output",
                                                        stem_modules=r"vit\.layers\.\d+", target_modules="vit.layernorm"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    assert viz.tuner_diagram(lora, ax=axes[0]) is fig
    axes[0].set_title("mine")
    viz.tuner_diagram(bypass, ax=axes[1])
    assert axes[0].get_title() == "mine" and {s.tuner for s in axes[0].sites} == {"LoRA"}
    assert {s.tuner for s in axes[1].sites} == {"ResTuning"}
    assert any("ResTuning[default]: root (output)" in t.get_text() for t in axes[1].texts)  # the role inside the box
    assert _labels_fit(fig)
    plt.close("all")


def test_tuner_diagram_names_a_shared_weight():
    model, _ = models.gpt2()  # lm_head.weight is transformer.wte.weight
    fig = viz.tuner_diagram(model, LoRAConfig(target_modules=["c_attn"]))
    (head,) = [r["text"] for r in fig.diagram_rows if r["text"].startswith("lm_head")]
    assert head == "lm_head (Linear)  (weight shared with transformer.wte)"
    plt.close("all")


def test_diagram_layout_is_data_and_the_drawing_follows_it():
    """tuner_diagram = draw_diagram(diagram_layout(...)): the layout (boxes, positions, tuned modules)
    needs no matplotlib, and the figure draws exactly its rows."""
    import subprocess
    import sys

    code = ("import sys, swiftlite.viz.layout as L; from swiftlite.testing import models; from swiftlite import Swift, "
            "LoRAConfig; m, _ = models.llama(); lay = L.diagram_layout(Swift.prepare_model(m, LoRAConfig("
            "target_modules=['q_proj']))); assert lay.rows and 'matplotlib' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "MPLBACKEND": "Agg"})
    base, _ = models.llama()
    model = Swift.prepare_model(base, LoRAConfig(target_modules=["q_proj", "v_proj"]))
    layout = viz.diagram_layout(model)
    tuned = {p for r in layout.rows if r["style"] == "tuner" for p in r["paths"]}
    assert tuned == {n for n, _ in model.base_model.named_modules() if n.endswith(("q_proj", "v_proj"))}
    assert all(r["x0"] < r["x1"] <= layout.box_right and r["y"] < r["bottom"] <= layout.height for r in layout.rows)
    fig = viz.draw_diagram(layout)
    assert [r["text"] for r in fig.diagram_rows] == [r["text"] for r in layout.rows]
    assert fig.diagram_rows == viz.tuner_diagram(model).diagram_rows
    plt.close("all")


def test_a_closed_box_counts_every_folded_block_below_it():
    """A collapsed module's parameter count includes all the identical blocks folded into one line
    (the vision tower of llava-tiny was shown with one of its stacked layers only)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from swiftlite.viz.layout import diagram_layout

    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48,
                                         num_hidden_layers=3, num_attention_heads=4))
    layout = diagram_layout(model, config=LoRAConfig(target_modules=["lm_head"]))
    backbone = next(r for r in layout.rows if r["paths"] == ["model"])
    assert not backbone["opened"]
    expected = sum(p.numel() for p in model.model.parameters())
    assert f"{expected:,} params" in backbone["text"]


def test_save_figure_warns_on_colliding_text_and_not_on_a_clean_figure(tmp_path, monkeypatch):
    """`text_overlaps` / `save_figure`'s FigureTextOverlap: crowded tick labels, two annotations on one
    spot and a data label under the legend collide; a clean figure, 45° tick labels that only share
    bounding boxes, and a heatmap's value labels do not."""
    import warnings

    monkeypatch.setenv("SWIFTLITE_FIGURES", str(tmp_path))
    crowded, ax = plt.subplots(figsize=(4, 3))
    ax.bar(range(12), range(12))
    ax.set_xticks(range(12), [f"a long label {i}" for i in range(12)])
    assert ("axes 0 x-tick 'a long label 0'", "axes 0 x-tick 'a long label 1'") in viz.text_overlaps(crowded)
    marks, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1], label="a curve")
    ax.annotate("point A", (0.5, 0.5))
    ax.annotate("point B", (0.52, 0.5))
    ax.text(0.02, 0.93, "data label", transform=ax.transAxes)
    ax.legend(loc="upper left")
    assert sorted(viz.text_overlaps(marks)) == [("axes 0 text 'data label'", "axes 0 legend"),
                                                ("axes 0 text 'point A'", "axes 0 text 'point B'")]
    with pytest.warns(viz.FigureTextOverlap, match="'point A'.* over .*'point B'"):
        path = viz.save_figure(marks, "colliding")
    assert path.is_file()  # saved anyway

    clean, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
    left.plot([0, 1], [0, 1], label="line")
    left.set(title="clean", xlabel="x", ylabel="y")
    left.legend(loc="lower right")
    right.bar(range(8), range(8))
    right.set_xticks(range(8), [f"label {i}" for i in range(8)], rotation=45, ha="right")
    right.set_title("rotated ticks")
    values = np.arange(25).reshape(5, 5) / 25
    grid, hax = plt.subplots(figsize=(4, 4))
    hax.imshow(values)
    for (i, j), v in np.ndenumerate(values):
        hax.text(j, i, f"{v:.2f}", ha="center", va="center")
    grid.colorbar(hax.images[0])
    for fig in (clean, grid):
        assert viz.text_overlaps(fig) == []
        with warnings.catch_warnings():
            warnings.simplefilter("error", viz.FigureTextOverlap)
            viz.save_figure(fig, "clean")
    plt.close("all")
