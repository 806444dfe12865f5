"""Tests for swiftlite.data: shapes world, downstream tasks, text corpus + tokenizer, instructions, tools."""

import hashlib
import json

import numpy as np
import pytest

from swiftlite import data
from swiftlite.data import shapes as shapes_mod


@pytest.fixture(scope="module")
def styled():
    return data.shapes_dataset(60, image_size=24, seed=3, styles=data.STYLES)


def test_shapes_columns_shapes_and_dtypes(styled):
    row = styled.with_format("numpy")[0]
    assert row["image"].shape == (24, 24, 3)
    for key in ("mask", "edges", "distance", "depth"):
        assert row[key].shape == (24, 24), key
    assert set(np.unique(row["mask"])) <= {0, 1} and set(np.unique(row["edges"])) <= {0, 1}
    assert 0.0 <= row["depth"].min() and row["depth"].max() <= 1.0
    assert styled.features["shape"].names == list(data.SHAPES)
    assert styled.features["style"].names == list(data.STYLES)
    assert len(row["bbox"]) == 4
    # every style occurs in 60 draws
    assert set(styled["style"]) == set(range(len(data.STYLES)))


def test_caption_matches_labels(styled):
    f = styled.features
    for row in styled.select(range(20)):
        shape, colour = f["shape"].int2str(row["shape"]), f["colour"].int2str(row["colour"])
        position = f["position"].int2str(row["position"])
        assert row["caption"].startswith(f"a {colour} {shape} ")
        assert row["caption"].endswith(position)
        assert f["size"].int2str(row["size"]) in row["long_caption"]


def test_mask_edges_distance_are_consistent(styled):
    arrays = styled.with_format("numpy")[:]
    mask, edges, dist = arrays["mask"], arrays["edges"], arrays["distance"]
    assert ((dist < 0) == (mask == 1)).all()  # the mask is the inside of the SDF
    assert (mask.sum(axis=(1, 2)) > 3).all()  # every object is visible
    # edges sit on the boundary: every edge pixel is within a pixel of the object
    assert (np.abs(dist[edges == 1]) * 24 < 0.75 + 1e-6).all()
    # the object is inside its bounding box
    for m, box in zip(mask, arrays["bbox"]):
        ys, xs = np.nonzero(m)
        assert xs.min() >= box[0] - 1 and xs.max() <= box[2] + 1
        assert ys.min() >= box[1] - 1 and ys.max() <= box[3] + 1


def test_plain_object_has_its_colour():
    ds = data.shapes_dataset(30, image_size=32, seed=0, sizes=("large",), backgrounds=("black",))
    arrays = ds.with_format("numpy")[:]
    for image, mask, colour in zip(arrays["image"], arrays["mask"], arrays["colour"]):
        rgb = np.array(data.COLOURS[ds.features["colour"].int2str(int(colour))])
        inside = image[mask == 1].astype(float).mean(axis=0)
        assert np.abs(inside - rgb).max() < 25


def test_seed_determinism_and_difference():
    a = data.shapes_dataset(10, image_size=16, seed=7, styles=("plain", "ink"))
    b = data.shapes_dataset(10, image_size=16, seed=7, styles=("plain", "ink"))
    c = data.shapes_dataset(10, image_size=16, seed=8, styles=("plain", "ink"))
    ia, ib, ic = (np.asarray(d.with_format("numpy")["image"]) for d in (a, b, c))
    assert np.array_equal(ia, ib)
    assert not np.array_equal(ia, ic)
    assert a["caption"] == b["caption"]


@pytest.mark.parametrize("size", [16, 64])
def test_any_size(size):
    ds = data.shapes_dataset(4, image_size=size, maps=False)
    assert np.asarray(ds.with_format("numpy")["image"]).shape == (4, size, size, 3)
    assert "mask" not in ds.column_names


def test_bad_arguments_name_the_fix():
    with pytest.raises(ValueError, match="16..64"):
        data.shapes_dataset(2, image_size=8)
    with pytest.raises(ValueError, match="hexagon"):
        data.shapes_dataset(2, shapes=("hexagon",))


def test_style_pairs_share_content():
    pairs = data.style_pairs(12, image_size=32, seed=1, maps=True)
    arr = pairs.with_format("numpy")[:]
    for src, tgt, mask, style in zip(arr["source"], arr["target"], arr["mask"], arr["style"]):
        assert not np.array_equal(src, tgt)  # stylized differs from plain
        # but it is the same content: the stylized image changes most inside/around the object
        diff = np.abs(src.astype(int) - tgt.astype(int)).sum(-1)
        name = pairs.features["style"].int2str(int(style))
        if name not in ("ink", "pastel"):  # those two also restyle the background
            assert diff[mask == 0].mean() < diff[mask == 1].mean() + 1e-6
    assert all(i in shapes_mod.STYLE_INSTRUCTIONS.values() for i in pairs["instruction"])


def test_to_pixel_values_round_trip():
    img = data.shapes_dataset(3, image_size=16, maps=False).with_format("numpy")["image"]
    x = data.to_pixel_values(img)
    assert x.shape == (3, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(data.to_uint8_images(x), np.asarray(img, dtype=np.uint8))


def test_downstream_tasks_few_shot_and_disjoint():
    for name in ("digits", "position", "shape-in-style"):
        dd = data.downstream_task(name, shots=3, n_test=60, image_size=16)
        labels = np.asarray(dd["train"]["label"])
        n_classes = dd["train"].features["label"].num_classes
        assert np.bincount(labels, minlength=n_classes).tolist() == [3] * n_classes
        assert dd["test"].num_rows == 60
        train_img = {bytes(np.asarray(x, np.uint8)) for x in dd["train"].with_format("numpy")["image"]}
        if name != "digits":  # load_digits itself contains a few duplicate images
            assert not any(bytes(np.asarray(x, np.uint8)) in train_img
                           for x in dd["test"].with_format("numpy")["image"])
    parity = data.downstream_task("digits-parity", n_test=50, image_size=16)
    assert parity["train"].features["label"].names == ["even", "odd"]
    assert parity["train"].num_rows > 1000
    with pytest.raises(ValueError, match="available"):
        data.downstream_task("imagenet")


def test_text_corpus_split_by_module():
    corpus = data.text_corpus("docstrings")
    train_modules, test_modules = set(corpus["train"]["module"]), set(corpus["test"]["module"])
    assert train_modules and test_modules and not train_modules & test_modules
    assert sum(len(t) for t in corpus["train"]["text"]) > 200_000  # enough to pretrain a tiny LM
    assert any("Return" in t for t in corpus["train"]["text"])


def test_stdlib_corpus_is_the_same_in_a_jupyter_kernel():
    """Jupyter kernels start Python with `-X frozen_modules=off`; the corpus (and so every tokenizer
    trained on it) must not depend on that flag, nor on what is already imported."""
    import subprocess
    import sys

    code = ("import hashlib, json; from swiftlite.data.text import stdlib_documents; "
            "print(hashlib.sha256(json.dumps(stdlib_documents()).encode()).hexdigest())")
    digests = {flag: subprocess.run([sys.executable, *flag, "-c", code], capture_output=True, text=True,
                                    check=True).stdout.strip()
               for flag in ((), ("-X", "frozen_modules=off"), ("-X", "frozen_modules=on"))}
    here = hashlib.sha256(json.dumps(data.text.stdlib_documents()).encode()).hexdigest()
    assert set(digests.values()) == {here}, digests


def test_tokenizer_round_trip_and_cache(tmp_path, monkeypatch):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    monkeypatch.setenv("SWIFTLITE_CACHE", str(tmp_path))
    tok = data.stdlib_tokenizer(400, max_chars=60_000)
    assert isinstance(tok, PreTrainedTokenizerFast) and len(tok) == 400
    for text in ("Return the sum of x and y.", "def f(x):\n    return x ** 2  # ünïcode ✓ 日本"):
        ids = tok(text)["input_ids"]
        assert tok.decode(ids) == text
    assert len(tok("the the the")["input_ids"]) < len("the the the")  # merges were learned
    assert list(tmp_path.glob("tokenizers/stdlib-bpe-*/tokenizer.json"))  # cached on disk
    tok.save_pretrained(tmp_path / "saved")
    again = AutoTokenizer.from_pretrained(tmp_path / "saved")
    assert again("Return x")["input_ids"] == tok("Return x")["input_ids"]
    assert again.eos_token == "<|endoftext|>" and again.pad_token == "<|pad|>"
    chat = again.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                     add_generation_prompt=True)
    assert chat.endswith("<|assistant|>\n")


def test_instruction_outputs_are_correct():
    ds = data.instruction_pairs(200, seed=0)
    assert set(ds["task"]) == set(data.INSTRUCTION_TASKS)
    for row in ds:
        if row["task"] == "sort_numbers":
            assert row["output"].split() == [str(v) for v in sorted(map(int, row["input"].split()))]
        elif row["task"] == "add":
            a, b = map(int, row["input"].split())
            assert row["output"] == str(a + b)
        elif row["task"] == "uppercase":
            assert row["output"] == row["input"].upper()
        assert row["messages"][-1]["content"] == row["output"]


def test_tools_are_deterministic_and_safe():
    assert data.run_tool("calculator", {"expression": "2 * (3 + 4) - 1"}) == "13"
    assert data.run_tool("unit_convert", {"value": 1, "from_unit": "km", "to_unit": "m"}) == "1000"
    assert data.run_tool("unit_convert", '{"value": 100, "from_unit": "C", "to_unit": "F"}') == "212"
    assert data.run_tool("lookup", {"entity": "Mars", "field": "moons"}) == "2"
    assert data.run_tool("calculator", {"expression": "__import__('os')"}).startswith("Error")
    assert data.run_tool("unit_convert", {"value": 1, "from_unit": "kg", "to_unit": "m"}).startswith("Error")
    assert data.run_tool("search", {}).startswith("Error: unknown tool")


def test_tool_dialog_gold_actions_replay():
    ds = data.tool_dialogs(150, seed=0)
    n_steps = set()
    for row in ds:
        parsed = data.parse_react(row["text"])
        gold = row["gold_actions"]
        n_steps.add(len(gold))
        assert [t for t, _ in parsed["actions"]] == [g["tool"] for g in gold]
        for (tool, args), g in zip(parsed["actions"], gold):
            assert args == json.loads(g["input"])
            assert data.run_tool(tool, args) == g["observation"]  # observations are real tool outputs
            assert f"Observation: {g['observation']}" in row["text"]
        assert parsed["final_answer"] == row["answer"] == gold[-1]["observation"]
        assert not row["answer"].startswith("Error")
        assert row["messages"][1]["content"] == row["question"]
    assert n_steps >= {1, 2, 3}  # single- and multi-step dialogs
    # a malformed prediction parses without raising
    bad = data.parse_react("Action: calculator\nAction Input: 2 +\nObservation: ?")
    assert bad["actions"] == [("calculator", "2 +")] and bad["final_answer"] is None
