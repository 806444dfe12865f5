"""The `swiftlite` command: every user error is one line on stderr and a non-zero exit status."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import swiftlite
from swiftlite.cli import USER_ERROR, main


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err!r}"
    assert lines[0].startswith("swiftlite: error: ")
    assert "Traceback" not in err
    return lines[0]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"swiftlite {swiftlite.__version__}"


def test_unknown_zoo_backbone(capsys):
    code, out, err = _run(capsys, "zoo", "build", "no-such-backbone")
    assert code == USER_ERROR and out == ""
    line = _one_error_line(err)
    assert "no-such-backbone" in line and "llama-tiny" in line  # says what exists


def test_show_missing_directory(capsys, tmp_path):
    code, _, err = _run(capsys, "show", str(tmp_path / "missing"))
    assert code == USER_ERROR
    assert "no such directory" in _one_error_line(err)


def test_show_relative_missing_directory(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(capsys, "show", "missing/model")
    assert code == USER_ERROR
    assert "no such directory" in _one_error_line(err)


def test_show_adapter_directory(capsys, tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"swift_type": "LORA", "r": 4}))
    code, _, err = _run(capsys, "show", str(tmp_path))
    assert code == USER_ERROR
    line = _one_error_line(err)
    assert "adapter checkpoint" in line and "config.json" in line


def test_show_a_file(capsys, tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\0")
    code, _, err = _run(capsys, "show", str(path))
    assert code == USER_ERROR
    assert "not a directory" in _one_error_line(err)


def test_show_folder_without_config(capsys, tmp_path):
    code, _, err = _run(capsys, "show", str(tmp_path))
    assert code == USER_ERROR
    assert "no config.json" in _one_error_line(err)


@pytest.mark.parametrize("argv", [["bogus"], ["show"], ["show", "a", "b"]])
def test_bad_arguments_are_one_line(capsys, argv):
    code, _, err = _run(capsys, *argv)
    assert code == USER_ERROR
    _one_error_line(err)


def test_show_a_saved_model(capsys, tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=24, max_position_embeddings=16)).save_pretrained(tmp_path)
    code, out, _ = _run(capsys, "show", str(tmp_path))
    assert code == 0
    assert out.startswith("BertModel") and "BertLayer" in out


def test_console_entry_point_exit_status(tmp_path):
    """The installed command (python -m swiftlite.cli is the same main) exits non-zero with one line."""
    proc = subprocess.run([sys.executable, "-m", "swiftlite.cli", "show", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == USER_ERROR
    assert "no such directory" in _one_error_line(proc.stderr)


def test_show_adapter_directory_in_ms_swift_layout(capsys, tmp_path):
    (tmp_path / "default").mkdir()
    (tmp_path / "default" / "adapter_config.json").write_text(json.dumps({"swift_type": "LORA", "r": 4}))
    code, _, err = _run(capsys, "show", str(tmp_path))
    assert code == USER_ERROR
    assert "adapter checkpoint" in _one_error_line(err)
