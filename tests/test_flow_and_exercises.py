"""`viz.FlowDiagram` (data-flow figures of the tutorials) and `check_answer` (their exercises)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from swiftlite import check_answer  # noqa: E402
from swiftlite.viz import FlowDiagram  # noqa: E402


def _res_tuning() -> FlowDiagram:
    fd = FlowDiagram("x' = OP(x) + T(x)")
    fd.box("x", "x", at=(0, 0)).box("op", "OP (frozen)", at=(2.5, 1), kind="frozen")
    fd.box("t", "T (tuner)", at=(2.5, -1), kind="tuner").node("sum", "+", at=(5, 0)).box("y", "x'", at=(7, 0))
    for a, b in [("x", "op"), ("x", "t"), ("op", "sum"), ("t", "sum"), ("sum", "y")]:
        fd.arrow(a, b)
    fd.arrow("x", "y", label="skip", style="detached", bend=0.4)
    return fd


def test_a_flow_diagram_draws_every_box_arrow_and_legend_entry():
    import matplotlib.pyplot as plt

    fig = _res_tuning().draw()
    ax = fig.axes[0]
    texts = {t.get_text() for t in ax.texts}
    assert {"x", "OP (frozen)", "T (tuner)", "+", "x'", "skip"} <= texts
    assert len(ax.patches) == 5  # four boxes and the sum node
    assert len([c for c in ax.get_children() if type(c).__name__ == "Annotation"]) == 6
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["frozen (pretrained)", "trainable (tuner)", "detached (no gradient)"]
    plt.close(fig)


def test_overlapping_boxes_are_refused_by_name():
    fd = FlowDiagram().box("a", "a long label here", at=(0, 0)).box("b", "b", at=(0.5, 0))
    assert fd.overlaps() == [("a", "b")]
    with pytest.raises(ValueError, match=r"overlap.*\('a', 'b'\)"):
        fd.draw()


@pytest.mark.parametrize("build, field", [
    (lambda fd: fd.box("a", "a", at=(0, 0), kind="weights"), "kind='weights'"),
    (lambda fd: fd.box("x", "again", at=(3, 3)), "name='x' is used twice"),
    (lambda fd: fd.arrow("x", "nowhere"), "target='nowhere'"),
    (lambda fd: fd.arrow("x", "x", style="wavy"), "style='wavy'"),
    (lambda fd: fd.node("n", "plus", at=(3, 3)), "op='plus'"),
])
def test_bad_flow_input_names_the_field(build, field):
    fd = FlowDiagram().box("x", "x", at=(0, 0))
    with pytest.raises(ValueError, match=field.replace("(", r"\(").replace(")", r"\)")):
        build(fd)


def test_check_answer_prints_the_reference_for_the_placeholder(capsys):
    assert check_answer(..., 42) is False
    assert "The reference: 42" in capsys.readouterr().out


@pytest.mark.parametrize("answer, reference", [
    (3, 3), (0.1 + 0.2, 0.3), ("rank", "rank"), ([1, 2.0], (1.0, 2)), (torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0])),
])
def test_check_answer_accepts_a_right_answer(answer, reference):
    assert check_answer(answer, reference) is True


@pytest.mark.parametrize("answer, reference", [
    (4, 3), (0.31, 0.3), ("Rank", "rank"), ([1, 2], [1, 2, 3]), (torch.zeros(2), torch.zeros(3)), (True, 1.0),
])
def test_check_answer_rejects_a_wrong_answer_saying_both_values(answer, reference):
    with pytest.raises(AssertionError, match="differs from the reference"):
        check_answer(answer, reference)
