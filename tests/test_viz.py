"""swiftlite.viz: figures from real History / bench rows, figure folder rule, adapter switcher."""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
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

    rows = [{"name": "full", "p": 100.0}, {"name": "ln", "p": 0.1}]
    ax = viz.bar_compare(rows, "p", xlabel="trainable parameters (% of the model, log scale)", log=True)
    assert ax.get_xscale() == "log" and ax.get_xlabel().startswith("trainable")
    ax = viz.bar_compare([{"name": "a", "loss": 3.0}, {"name": "b", "loss": 2.5}], "loss")
    assert ax.get_xlim()[0] == 0  # the loss axis is not truncated
    plt.close("all")
