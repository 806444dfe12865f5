"""swiftlite.train.train with two CPU processes (gloo), started as a user would (issue 11).

tests/multiprocess_train.py is launched with ``torchrun`` and with ``accelerate launch`` (each a
subprocess, 2 processes of 4 rows per step), and as a plain one-process ``python`` run of 8 rows
(the same global batch); GPUs are hidden from all three. Checked: the world really has 2 processes, both end with identical
tuner weights, equal to the one-process run to float tolerance (losses too), the inactive adapter
is left untouched and trainable, only process 0 writes checkpoints, and the saved adapter, loaded
onto a fresh base, reproduces process 0's outputs. Both data kinds: a ``datasets.Dataset`` and a
function of the step (each process must get its own micro-batches).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests import multiprocess_train as script

SCRIPT = str(Path(script.__file__))
RUNS = ("map", "step")
TIMEOUT = 300  # seconds; a run takes ~20-40 s on the shared 2-core machine


def _launcher(name: str, module: str) -> list[str]:
    """The console script beside this Python (``torchrun``, ``accelerate``), else its module."""
    exe = Path(sys.executable).parent / name
    return [str(exe)] if exe.exists() else [sys.executable, "-m", module]


# The README's commands ("More than one process"), as run here.
COMMANDS = {
    "torchrun": "torchrun --standalone --nproc_per_node 2",
    "accelerate": "accelerate launch --multi_gpu --num_processes 2 --main_process_port 0",
}
LAUNCHERS = {
    "torchrun": _launcher("torchrun", "torch.distributed.run") + COMMANDS["torchrun"].split()[1:],
    "accelerate": _launcher("accelerate", "accelerate.commands.accelerate_cli") + COMMANDS["accelerate"].split()[1:],
}


def test_readme_gives_these_commands():
    readme = (Path(SCRIPT).parents[1] / "README.md").read_text()
    section = readme[readme.index("## More than one process"):]
    for command in COMMANDS.values():
        assert f"{command} train_script.py" in section, command


def _env(home: Path) -> dict[str, str]:
    # HF_HOME: no `accelerate config` file of this machine's user changes the launch;
    # CUDA_VISIBLE_DEVICES: CPU processes (gloo) on a machine with GPUs too (one GPU cannot host two)
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_HOME=str(home), CUDA_VISIBLE_DEVICES="")
    for key in list(env):  # the launcher sets these; ACCELERATE_USE_CPU is left out on purpose (train copes)
        if key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") or key.startswith("ACCELERATE_"):
            del env[key]
    env["PYTHONPATH"] = os.pathsep.join([str(Path(SCRIPT).parents[1]), env.get("PYTHONPATH", "")])
    return env


def _read(out: Path, run: str, rank: int) -> tuple[dict[str, torch.Tensor], dict]:
    return load_file(str(out / run / f"rank{rank}.safetensors")), json.loads((out / run / f"rank{rank}.json").read_text())


def _launch(cmd: list[str], out: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd + [SCRIPT, str(out), *args], env=_env(out / "hf_home"), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """The one-process reference: 8 rows per step (two processes' 4 + 4), in the same conditions."""
    out = tmp_path_factory.mktemp("single")
    _launch([sys.executable], out, "--batch-size", "8", "--group", "2")
    return out


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_processes_train_like_one_with_the_global_batch(launcher, single, tmp_path):
    done = _launch(LAUNCHERS[launcher], tmp_path)
    assert "world size 1" not in done.stderr, done.stderr[-3000:]
    init = script.adapter_weights(script.build_swift_model())

    for run in RUNS:
        ref, ref_info = _read(single, run, 0)
        (w0, info0), (w1, info1) = _read(tmp_path, run, 0), _read(tmp_path, run, 1)
        assert (ref_info["world_size"], info0["world_size"], info1["world_size"]) == (1, 2, 2), run
        assert set(w0) == set(w1) == set(ref) == set(init) | {"probe_logits"}
        trained = [k for k in init if k.startswith("default.")]
        assert any(not torch.equal(ref[k], init[k]) for k in trained), f"{run}: the reference did not train"
        for key in w0:  # DDP: the same averaged gradient, so the same step, on both processes
            assert torch.equal(w0[key], w1[key]), (run, key)
        for key in ref:  # ... and the update of one process with the global batch (sums in another order)
            torch.testing.assert_close(w0[key], ref[key], rtol=1e-4, atol=1e-5, msg=f"{run}: {key}")
        assert info0["loss"] == pytest.approx(ref_info["loss"], rel=1e-5), run
        # the inactive adapter was frozen while training, then given back its requires_grad
        for key in (k for k in init if k.startswith("other.")):
            assert torch.equal(w0[key], init[key]), (run, key)
        assert info0["other_requires_grad"] and info1["other_requires_grad"], run

    # only process 0 wrote checkpoints, one per run
    assert json.loads((tmp_path / "saves0.json").read_text()) == list(RUNS)
    assert json.loads((tmp_path / "saves1.json").read_text()) == []

    # the checkpoint, loaded onto a fresh base, gives process 0's outputs
    from swiftlite import Swift

    for run in RUNS:
        weights, _ = _read(tmp_path, run, 0)
        model = Swift.from_pretrained(script.build_model(), str(tmp_path / run / "adapter"))
        model.set_active_adapters("default")
        with torch.no_grad():
            logits = model(input_ids=script.probe()).logits
        torch.testing.assert_close(logits, weights["probe_logits"], rtol=0, atol=1e-5, msg=run)
