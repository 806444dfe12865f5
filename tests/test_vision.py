"""swiftlite.vision: the transfer harness on the zoo's quick ViT (SWIFTLITE_QUICK=1, 16 px, 2 layers)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from swiftlite import tuners as T  # noqa: E402
from swiftlite import vision  # noqa: E402


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setenv("SWIFTLITE_QUICK", "1")
    torch.set_num_threads(1)


def _lora():
    return T.LoRAConfig(r=2, target_modules=["q_proj", "v_proj"])


def test_load_backbone_reinitialises_only_a_mismatched_head():
    from transformers import ViTForImageClassification

    import swiftlite.zoo as zoo

    original = ViTForImageClassification.from_pretrained(zoo.path("vit-tiny"))
    torch.manual_seed(0)
    model = vision.load_backbone("vit-tiny", ["a", "b", "c"])
    assert model.config.num_labels == 3 and model.config.id2label == {0: "a", 1: "b", 2: "c"}
    assert model.classifier.weight.shape == (3, original.config.hidden_size)
    ref = original.state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith("classifier."):
            assert torch.equal(value, ref[key]), key  # the backbone is the pretrained one
    n = original.config.num_labels
    same = vision.load_backbone("vit-tiny", [f"c{i}" for i in range(n)])
    assert torch.equal(same.classifier.weight, original.classifier.weight)  # same size: pretrained head kept


def test_prepare_trains_what_the_config_says():
    model = vision.prepare(vision.load_backbone("vit-tiny", ["a", "b"]), vision.LINEAR_PROBE)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".classifier." in f".{n}" for n in trainable)

    model = vision.prepare(vision.load_backbone("vit-tiny", ["a", "b"]), _lora())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable) and any("classifier" in n for n in trainable)
    assert not any("q_proj.base_layer" in n or "fc1" in n for n in trainable)

    model = vision.prepare(vision.load_backbone("vit-tiny", ["a", "b"]), None)
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="linear probe"):
        vision.prepare(vision.load_backbone("vit-tiny", ["a", "b"]), "linear")
    with pytest.raises(ValueError, match="head='head'"):
        vision.prepare(vision.load_backbone("vit-tiny", ["a", "b"]), vision.LINEAR_PROBE, head="head")


def test_transfer_row_counts_and_learning():
    row = vision.transfer("vit-tiny", vision.LINEAR_PROBE, "size", steps=25, seed=0, lr=3e-2, n_test=60,
                          eval_every=10)
    hidden = vision.load_backbone("vit-tiny").config.hidden_size
    assert row["trainable_params"] == 3 * hidden + 3  # the new 3-way head, nothing else
    assert row["name"] == "linear probe" and row["task"] == "size" and row["steps"] == 25
    assert 0.0 <= row["accuracy"] <= 1.0 and len(row["loss"]) == 25
    assert [s for s, _ in row["curve"]] == [10, 20, 25] and row["curve"][-1][1] == row["accuracy"]
    assert row["peak_memory_bytes"] > 0 and row["step_time_s"] > 0
    assert sum(row["loss"][-5:]) / 5 < sum(row["loss"][:5]) / 5  # the head learns something


def test_transfer_is_seeded_and_bypass_uses_less_memory_than_full():
    bypass = T.ResTuningConfig(dims=32, root_modules=r"vit\.embeddings", root_modules_hook="output",
                               stem_modules=r"vit\.layers\.\d+", target_modules="vit.layernorm")
    a = vision.transfer("vit-tiny", bypass, "colour", steps=4, seed=1, n_test=30)
    b = vision.transfer("vit-tiny", bypass, "colour", steps=4, seed=1, n_test=30)
    assert a["loss"] == b["loss"] and a["accuracy"] == b["accuracy"]
    full = vision.transfer("vit-tiny", None, "colour", steps=2, seed=1, n_test=30)
    assert full["trainable_params"] == full["total_params"]
    assert a["peak_memory_bytes"] < full["peak_memory_bytes"]


def test_transfer_with_a_model_leaves_it_untouched_and_checks_its_head():
    model = vision.load_backbone("vit-tiny", ["x", "y", "z"])  # 'size' has 3 labels
    before = {k: v.clone() for k, v in model.state_dict().items()}
    row = vision.transfer(model, None, "size", steps=2, seed=0, n_test=30)
    assert row["trainable_params"] == sum(p.numel() for p in model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="predicts 3 labels"):
        vision.transfer(model, None, "colour", steps=1)
    with pytest.raises(ValueError, match="steps"):
        vision.transfer("vit-tiny", None, "colour", steps=0)


def _fake_rows():
    rows = []
    for name, base in [("A", 0.5), ("B", 0.8)]:
        for task, offset in [("t1", 0.0), ("t2", 0.1)]:
            for seed, noise in [(0, 0.0), (1, 0.1)]:
                rows.append({"name": name, "task": task, "seed": seed, "accuracy": base + offset + noise,
                             "trainable_params": 10 if task == "t1" else 12, "trainable_percent": 1.0,
                             "peak_memory_bytes": 2**20 * (1 if name == "A" else 3), "step_time_s": 0.01,
                             "loss": [1.0, 0.5, 0.25]})
    return rows


def test_summarize_means_over_tasks_then_seeds():
    summary = vision.summarize(_fake_rows())
    a = summary[0]
    assert a["name"] == "A" and a["tasks"] == ["t1", "t2"] and a["n_seeds"] == 2
    # per-seed task means: seed 0 -> (0.5 + 0.6)/2 = 0.55, seed 1 -> 0.65; mean 0.6, sample std 0.0707
    assert a["accuracy_mean"] == pytest.approx(0.6)
    assert a["accuracy_std"] == pytest.approx(0.1 / 2**0.5)
    assert a["per_task"]["t2"][0] == pytest.approx(0.65)
    assert a["trainable_params"] == 11
    table = vision.ResultsTable(summary)
    html, md = table._repr_html_(), table.to_markdown()
    assert "<table>" in html and "60.0 ± 7.1" in html and "90.0 ± 7.1" in md
    assert md.count("\n") == 3 and "3.00 MiB" in md
    with pytest.raises(ValueError):
        vision.ResultsTable([])


def test_run_suite_and_plots():
    rows = vision.run_suite({"probe": vision.LINEAR_PROBE, "LoRA": _lora()}, ["size", "colour"], [0], steps=2,
                            lr={"probe": 1e-2, "LoRA": 1e-2}, n_test=30, progress=False)
    assert [(r["name"], r["task"]) for r in rows] == [("probe", "size"), ("probe", "colour"), ("LoRA", "size"),
                                                      ("LoRA", "colour")]
    with pytest.raises(KeyError, match="LoRA"):
        vision.run_suite({"LoRA": _lora()}, ["size"], [0], steps=1, lr={"probe": 1e-2})
    assert rows[1]["measured_in"] == ("size", 0) and rows[1]["peak_memory_bytes"] == rows[0]["peak_memory_bytes"]
    with pytest.raises(ValueError, match="measure"):
        vision.run_suite({"LoRA": _lora()}, ["size"], [0], steps=1, measure="some")
    summary = vision.summarize(rows)
    ax = vision.memory_accuracy_scatter(summary)
    assert sorted(t.get_text() for t in ax.texts) == ["LoRA", "probe"]
    assert ax.get_xscale() == "log"
    assert vision.task_heatmap(summary).get_xticklabels()[1].get_text() == "colour"
    assert len(vision.learning_curves(rows).lines) == 2
    ranked = vision.ranked_methods(summary, reference="probe", chance=0.2)
    by_acc = sorted(summary, key=lambda r: r["accuracy_mean"])
    assert [t.get_text() for t in ranked.get_yticklabels()] == [r["name"] for r in by_acc]  # one row each, sorted
    assert len(ranked.lines) >= 2 and len(ranked.get_legend().get_texts()) == 2  # probe and chance lines
    assert sum("MiB" in t.get_text() for t in ranked.texts) == len(summary)  # the memory column, one per row
    with pytest.raises(ValueError, match="reference"):
        vision.ranked_methods(summary, reference="no such method")
    plt.close("all")


def test_flow_builders_read_the_real_model_and_draw():
    model = vision.load_backbone("vit-tiny", ["a", "b"])
    d, layers = model.config.hidden_size, model.config.num_hidden_layers
    tokens = (model.config.image_size // model.config.patch_size) ** 2 + 1
    res = vision.res_tuning_flow(model, adapter_length=8, num_tokens=4)
    assert f"(B, {tokens}, {d})" in res.boxes["x"].text and f"{d} → 8 → {d}" in res.boxes["t"].text
    assert res.boxes["sum"].is_node and {a.label for a in res.arrows} >= {"OP(x)", "T(x)", "× λ"}
    bypass = vision.bypass_flow(model, adapter_length=16)
    assert sum(b.name.startswith("lat") for b in bypass.boxes.values()) == layers  # one lateral tuner per block
    assert sum(a.style == "detached" for a in bypass.arrows) == layers + 1  # x_0 and every s_i are detached
    attn = vision.res_attn_flow(model, r=4, num_heads=2)
    assert "A_o = 0" in attn.boxes["ao"].text and f"{d} → 4" in attn.boxes["qkv"].text
    for fd in (res, bypass, attn):
        assert not fd.overlaps()
        plt.close(fd.draw())


def test_tuner_explorer_reruns_when_a_knob_turns():
    def make(tuner, size):
        return T.LoRAConfig(r=size, target_modules=["q_proj", "v_proj"]) if tuner == "LoRA" else vision.LINEAR_PROBE

    box = vision.tuner_explorer(make, ["LoRA", "linear probe"], [2, 4], task="size", steps=2, n_test=30)
    first = box.line
    assert first.startswith("LoRA size=2:") and "trainable params" in first
    box.size.value = 4
    assert box.line.startswith("LoRA size=4:") and box.line != first
    box.tuner.value = "linear probe"
    assert len(box.results) == 3
    plt.close("all")


def test_parameter_counts_and_budget_matching():
    base = vision.load_backbone("vit-tiny", ["a", "b"])
    d, n_layers = base.config.hidden_size, base.config.num_hidden_layers
    head = sum(p.numel() for p in base.classifier.parameters())
    assert vision.tuner_parameter_count(vision.LINEAR_PROBE, base) == 0
    assert vision.tuner_parameter_count(None, base) == sum(p.numel() for p in base.parameters()) - head
    assert vision.tuner_parameter_count(_lora(), base) == n_layers * 2 * 2 * d * 2  # r=2 on q and v: r·(d + d) each
    size, count = vision.match_budget(lambda r: T.LoRAConfig(r=r, target_modules=["q_proj", "v_proj"]), [1, 2, 3, 4],
                                      n_layers * 2 * 2 * d * 3 + 1, base)
    assert (size, count) == (3, n_layers * 2 * 2 * d * 3)


def test_bypass_memory_and_multi_task_timing_on_the_quick_vit():
    rows = vision.bypass_memory_comparison("vit-tiny", batch_size=4, steps=1, warmup=0, include_full=False)
    res, bypass, not_detached = rows
    assert [r["name"] for r in rows] == [vision.RES_TUNING, vision.BYPASS, vision.NOT_DETACHED]
    assert res["trainable_params"] == bypass["trainable_params"]  # the same budget, different placement
    assert bypass["peak_memory_bytes"] < res["peak_memory_bytes"]
    assert not_detached["peak_memory_bytes"] == bypass["peak_memory_bytes"]  # no graph upstream of the probes
    assert res["peak_memory_ratio_to_res_tuning"] == 1.0
    timing = vision.multi_task_timing("vit-tiny", k=3, batch_size=2, rounds=1, warmup=0)
    assert timing["max_logit_difference"] < 1e-5 and timing["k"] == 3
    assert timing["time_ratio"] > 0 and timing["shared_forward_s"] > 0
