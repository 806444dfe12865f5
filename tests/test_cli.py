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


@pytest.mark.parametrize("argv, named", [
    (["zoo", "build", "vit-tiny", "--quik"], "--quick"),       # a mistyped flag is named, with the nearest one
    (["zoo", "biuld"], "build"),
    (["zoo", "build", "vit-tiny", "--quick", "--ship"], "--ship"),
    (["zoo", "path"], "name"),
])
def test_zoo_errors_are_one_line(capsys, argv, named):
    code, out, err = _run(capsys, *argv)
    assert code == USER_ERROR and out == ""
    assert named in _one_error_line(err)


def test_mistyped_flag_names_it_and_the_nearest(capsys):
    code, _, err = _run(capsys, "zoo", "build", "vit-tiny", "--quik")
    assert code == USER_ERROR
    assert "unrecognized arguments: --quik (did you mean --quick?)" in _one_error_line(err)


def test_zoo_build_help_states_the_measured_times(capsys):
    from swiftlite.cli import _minutes
    from swiftlite.zoo.hub import shipped_build_seconds

    with pytest.raises(SystemExit) as exit_info:
        main(["zoo", "build", "--help"])
    assert exit_info.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    seconds = shipped_build_seconds()
    for name, s in seconds.items():
        assert f"{name} {_minutes(s)}" in help_text
    assert f"all of them {_minutes(sum(seconds.values()))}" in help_text


class _Stdin:
    def __init__(self, tty: bool, answer: str = ""):
        self.tty, self.answer = tty, answer

    def isatty(self) -> bool:
        return self.tty

    def readline(self) -> str:
        return self.answer + "\n"


@pytest.fixture
def fake_build(monkeypatch, tmp_path):
    """swiftlite.zoo.build replaced by one that records names: the confirmation is what is tested here."""
    from swiftlite import zoo

    built = []

    def build(name, quick=False, out_dir=None):
        built.append(name)
        (tmp_path / name).mkdir()
        (tmp_path / name / "zoo_stamp.json").write_text(json.dumps({"name": name, "quick": quick, "figures": {}}))
        return tmp_path / name

    monkeypatch.setattr(zoo, "build", build)
    return built


def test_bare_zoo_build_without_a_terminal_refuses(capsys, monkeypatch, fake_build):
    monkeypatch.setattr(sys, "stdin", _Stdin(tty=False))
    code, _, err = _run(capsys, "zoo", "build")
    assert code == USER_ERROR and fake_build == []
    from swiftlite.cli import _minutes
    from swiftlite.zoo.hub import shipped_build_seconds

    line = _one_error_line(err)
    assert "--yes" in line and f"about {_minutes(sum(shipped_build_seconds().values()))}" in line


def test_bare_zoo_build_asks_first(capsys, monkeypatch, fake_build):
    from swiftlite import zoo

    monkeypatch.setattr(sys, "stdin", _Stdin(tty=True, answer="n"))
    code, out, err = _run(capsys, "zoo", "build")
    assert code == USER_ERROR and fake_build == [] and "Continue? [y/N]" in out
    assert "cancelled" in _one_error_line(err)
    monkeypatch.setattr(sys, "stdin", _Stdin(tty=True, answer="y"))
    assert _run(capsys, "zoo", "build")[0] == 0
    assert fake_build == zoo.names()


def test_zoo_build_yes_skips_the_question(capsys, monkeypatch, fake_build):
    from swiftlite import zoo

    monkeypatch.setattr(sys, "stdin", _Stdin(tty=False))
    assert _run(capsys, "zoo", "build", "--yes")[0] == 0
    assert fake_build == zoo.names()


def test_quick_build_says_quick_and_zoo_list_shows_it(capsys, monkeypatch, tmp_path):
    """A real quick build (seconds) into an empty cache: each figure line says quick, and `zoo list`
    then lists that quick build with its headline figure."""
    import torch

    monkeypatch.setenv("SWIFTLITE_CACHE", str(tmp_path))
    threads = torch.get_num_threads()
    try:
        code, out, _ = _run(capsys, "zoo", "build", "vit-tiny", "--quick")
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    header, *figure_lines = out.strip().splitlines()
    assert "quick build" in header and str(tmp_path) in header
    assert figure_lines and all(line.endswith("[quick]") for line in figure_lines)
    code, listing, _ = _run(capsys, "zoo", "list")
    assert code == 0
    quick_lines = [line for line in listing.splitlines() if line.strip().startswith("quick")]
    assert len(quick_lines) == 1 and "heldout_accuracy" in quick_lines[0] and str(tmp_path) in quick_lines[0]


def test_show_loads_the_saved_class(capsys, tmp_path):
    """Not a headless AutoModel: a LlamaForCausalLM folder shows LlamaForCausalLM (with its lm_head)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                                 num_attention_heads=2)).save_pretrained(tmp_path)
    code, out, _ = _run(capsys, "show", str(tmp_path))
    assert code == 0 and out.startswith("LlamaForCausalLM") and "lm_head" in out


def test_show_a_diffusers_pipeline_folder(capsys, tmp_path):
    """A pipeline folder (unet/, text_encoder/, as unet-tiny's) shows each model as its own class."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    UNet2DConditionModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                         layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                         up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
                         attention_head_dim=4, norm_num_groups=4).save_pretrained(tmp_path / "unet")
    CLIPTextModel(CLIPTextConfig(vocab_size=32, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                                 num_attention_heads=2)).save_pretrained(tmp_path / "text_encoder")
    code, out, _ = _run(capsys, "show", str(tmp_path))
    assert code == 0
    assert "text_encoder/: CLIPTextModel" in out and "unet/: UNet2DConditionModel" in out
    code, out, _ = _run(capsys, "show", str(tmp_path / "unet"))
    assert code == 0 and out.startswith("UNet2DConditionModel")


def test_show_a_zoo_name(capsys, monkeypatch):
    monkeypatch.setenv("SWIFTLITE_QUICK", "1")  # the quick vit-tiny build (cached after its first use)
    code, out, _ = _run(capsys, "show", "vit-tiny")
    assert code == 0 and out.startswith("ViTForImageClassification")


def test_show_a_folder_whose_config_names_no_model(capsys, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"width": 32}))  # e.g. unet-tiny's judge/ folder
    code, _, err = _run(capsys, "show", str(tmp_path))
    assert code == USER_ERROR
    assert "no transformers model_type or diffusers _class_name" in _one_error_line(err)
