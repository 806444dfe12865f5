"""Atomic checkpoint publishing: a save that fails at any file-system step leaves the old checkpoint
byte-identical and loadable, keeps the user's own files, and leaves no temporary behind."""
import builtins
import os
import shutil

import pytest
import safetensors.torch
import torch

from swiftlite import LoRAConfig, Swift
from swiftlite.core import io
from swiftlite.testing import models, output_tensor

# Every file-system call a save makes that can fail (the safetensors writer included).
STEPS = [(os, "replace"), (os, "rename"), (os, "fsync"), (os, "link"), (os, "makedirs"), (os, "symlink"),
         (builtins, "open"), (safetensors.torch, "save_file"), (shutil, "copy2")]


def _model():
    model, inputs = models.mlp()
    sm = Swift.prepare_model(model, {"default": LoRAConfig(target_modules=["fc1"], init_lora_weights=False),
                                     "b": LoRAConfig(target_modules=["fc2"], init_lora_weights=False)},
                             extra_state_keys=[r"head\.bias"])
    return sm, inputs


def _tree(root):
    return {os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f), "rb").read()
            for d, _, files in os.walk(root) for f in files}


def _out(model, inputs):
    with torch.no_grad():
        return output_tensor(model(**inputs))


class _FailAt:
    """Patch every function in STEPS; the k-th call (counting all of them) raises OSError."""

    def __init__(self, monkeypatch, k):
        self.k, self.calls, self.failed = k, 0, None
        for owner, name in STEPS:
            monkeypatch.setattr(owner, name, self._wrap(getattr(owner, name), f"{getattr(owner, '__name__', owner)}.{name}"))

    def _wrap(self, fn, label):
        def wrapper(*args, **kwargs):
            self.calls += 1
            if self.calls == self.k:
                self.failed = label
                raise OSError(f"injected failure at step {self.k} ({label})")
            return fn(*args, **kwargs)
        return wrapper


def _prepare(tmp_path):
    sm, inputs = _model()
    ckpt = tmp_path / "run"
    sm.save_pretrained(ckpt)
    (ckpt / "trainer_state.json").write_text('{"step": 10}')  # a training run's own files
    (ckpt / "logs").mkdir()
    (ckpt / "logs" / "events.txt").write_text("loss 1.0\n")
    old_out = _out(Swift.from_pretrained(models.mlp()[0], str(ckpt)), inputs)
    with torch.no_grad():
        for name in sm.adapters:
            for p in sm.adapter_parameters(name).values():
                p.add_(0.5)
        sm.base_model.head.bias.add_(0.5)
    return sm, inputs, ckpt, old_out


def test_counting_steps_finds_every_kind(tmp_path, monkeypatch):
    sm, _, ckpt, _ = _prepare(tmp_path)
    with monkeypatch.context() as m:
        counter = _FailAt(m, k=-1)
        sm.save_pretrained(ckpt)
    assert counter.calls >= 10  # json writes, safetensors writes, fsyncs, links, renames


def test_failure_at_every_step_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    sm, inputs, ckpt, old_out = _prepare(tmp_path)
    before = _tree(ckpt)
    with monkeypatch.context() as m:
        counter = _FailAt(m, k=-1)
        sm.save_pretrained(tmp_path / "probe")
    shutil.rmtree(tmp_path / "probe")
    total = counter.calls + 8  # carrying the user's files adds steps: probe past the end too
    new_out = _out(sm, inputs)
    failures = 0
    for k in range(1, total + 1):
        with monkeypatch.context() as m:
            injected = _FailAt(m, k)
            try:
                sm.save_pretrained(ckpt)
                ok = True
            except OSError as err:
                assert "injected failure" in str(err)
                ok = False
        assert sorted(os.listdir(tmp_path)) == ["run"], f"step {k} ({injected.failed}): temporaries left"
        tree = _tree(ckpt)
        assert tree["trainer_state.json"] == before["trainer_state.json"] and "logs/events.txt" in tree
        loaded = _out(Swift.from_pretrained(models.mlp()[0], str(ckpt)), inputs)
        if ok:  # the injected call was not needed (e.g. a best-effort directory fsync): the new one is complete
            torch.testing.assert_close(loaded, new_out)
            shutil.rmtree(ckpt)
            _restore(before, ckpt)  # put the old checkpoint back for the next step
        else:
            failures += 1
            assert tree == before, f"step {k} ({injected.failed}) changed the old checkpoint"
            torch.testing.assert_close(loaded, old_out)
    assert failures >= total - 10  # nearly every step can fail, and each failure was harmless


def _restore(tree, root):
    for rel, data in tree.items():
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        with open(os.path.join(root, rel), "wb") as fh:
            fh.write(data)


def test_unrelated_files_survive_and_stale_swiftlite_entries_go(tmp_path):
    sm, inputs = _model()
    ckpt = tmp_path / "run"
    ckpt.mkdir()
    (ckpt / "notes.md").write_text("mine")
    os.symlink("notes.md", ckpt / "link.md")
    (ckpt / "adapter_config.json").write_text("{}")  # a stale top-level "default" from an older layout
    sm.save_pretrained(ckpt)
    assert sorted(os.listdir(ckpt)) == ["b", "default", "extra_states", "link.md", "notes.md"]
    assert os.readlink(ckpt / "link.md") == "notes.md" and (ckpt / "notes.md").read_text() == "mine"
    Swift.prepare_model(models.mlp()[0], LoRAConfig(target_modules=["fc1"])).save_pretrained(ckpt)
    # no extra states any more: the stale folder is dropped (it would load into the next model); "b" stays
    assert sorted(os.listdir(ckpt)) == ["b", "default", "link.md", "notes.md"]


def test_saving_one_adapter_keeps_the_others(tmp_path):
    sm, inputs = _model()
    sm.save_pretrained(tmp_path)
    b_before = _tree(tmp_path / "b")
    sm.save_pretrained(tmp_path, adapter_name="default")
    assert _tree(tmp_path / "b") == b_before


def test_new_directory_gets_the_usual_permissions(tmp_path):
    sm, _ = _model()
    sm.save_pretrained(tmp_path / "fresh")
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(tmp_path / "fresh").st_mode & 0o777 == 0o777 & ~mask


def test_staged_write_refuses_paths_outside_the_directory(tmp_path):
    with pytest.raises(ValueError, match="inside the save directory"):
        with io.StagedWrite(tmp_path / "x") as stage:
            stage.json({}, "../escape.json")
    assert sorted(os.listdir(tmp_path)) == []


def test_a_failed_rollback_says_where_the_previous_checkpoint_is(tmp_path, monkeypatch):
    """The swap fails, then putting the old checkpoint back fails too: the error gives its path, and the
    previous checkpoint is intact there (byte-identical, loadable once moved back)."""
    sm, inputs, ckpt, old_out = _prepare(tmp_path)
    before = _tree(ckpt)
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append((str(src), str(dst)))
        if len(calls) >= 2:  # 1: old checkpoint aside (works); 2: new one in place; 3: rollback
            raise OSError(f"injected failure #{len(calls)}")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="previous checkpoint is intact at") as info:
        sm.save_pretrained(ckpt)
    monkeypatch.setattr(os, "rename", real_rename)
    aside = calls[0][1]
    assert aside in str(info.value) and f"mv {aside} {os.path.realpath(ckpt)}" in str(info.value)
    assert not os.path.exists(ckpt) and _tree(aside) == before
    os.rename(aside, ckpt)  # the fix the message gives
    assert torch.equal(_out(Swift.from_pretrained(models.mlp()[0], str(ckpt)), inputs), old_out)
