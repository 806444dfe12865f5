"""Checkpoint I/O: safetensors only, atomic directory writes, safe loading.

(What goes into a checkpoint is `api/checkpoint.py`; PEFT's key names are `peft_format.py`.)

Layout (ms-swift's)::

    save_dir/
      <adapter>/adapter_config.json        <- every adapter, "default" included, in its own folder
      <adapter>/adapter_model.safetensors  <- omitted for a tuner without parameters (NEFTune)
      extra_states/adapter_model.safetensors   <- base weights trained via extra_state_keys

Only PEFT-format output (`save_pretrained(..., peft_format=True)`, `Swift.save_to_peft_format`)
puts "default" at the top (`save_dir/adapter_config.json`), as PEFT does. Loading accepts both,
plus checkpoints from older swiftlite versions that had "default" at the top.

Atomicity (`StagedWrite`): the new content is written completely, and fsynced, into a sibling
directory `.<name>.tmp-XXXX`; then the old directory is renamed aside, the new one renamed into
its place, and only then is the old one deleted. A save that fails at any step — an exception, a
full disk, Ctrl-C — leaves the old checkpoint exactly as it was and no temporary behind.

Files swiftlite does not own are kept: a save directory is often a training run's output folder.
Entries of the old directory that this save does not write are carried into the new one (hard
links, so it is cheap; a copy where links are impossible), except the few swiftlite entries that
the new save makes stale (`replaces`, e.g. an old top-level "default" adapter).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
import uuid
from typing import Any

import torch

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PICKLE_WEIGHTS_NAME = "adapter_model.bin"
EXTRA_STATES_DIR = "extra_states"


class StagedWrite:
    """Build the new content of `directory` beside it, then swap it in atomically (see module doc).

        with StagedWrite(save_dir, replaces={"extra_states"}) as stage:
            stage.json(config, "default/adapter_config.json")
            stage.safetensors(weights, "default/adapter_model.safetensors")
            base_model.save_pretrained(stage.root)     # any writer may fill `stage.root` too

    On a clean exit the staged entries replace their namesakes in `directory`; entries named in
    `replaces` are dropped even if not rewritten; everything else in `directory` is kept. If the
    block raises, nothing under `directory` has changed and the staging folder is removed.
    """

    def __init__(self, directory: str, replaces: set[str] | tuple[str, ...] = ()) -> None:
        self.directory = os.path.realpath(os.path.abspath(os.fspath(directory)))
        self.replaces = set(replaces)
        self.root = ""  # the staging directory, created on __enter__

    def path(self, relpath: str) -> str:
        """Absolute path of `relpath` inside the staging directory (its folders are created)."""
        full = os.path.normpath(os.path.join(self.root, relpath))
        if os.path.commonpath([full, self.root]) != self.root or full == self.root:
            raise ValueError(f"{relpath!r}: a checkpoint file must lie inside the save directory")
        os.makedirs(os.path.dirname(full), exist_ok=True)
        return full

    def json(self, obj: Any, relpath: str) -> None:
        with open(self.path(relpath), "w") as fh:
            json.dump(obj, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())

    def safetensors(self, tensors: dict[str, torch.Tensor], relpath: str, metadata: dict[str, str] | None = None) -> None:
        from safetensors.torch import save_file

        path = self.path(relpath)
        # safetensors refuses shared / non-contiguous storage: give it independent CPU copies.
        tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
        save_file(tensors, path, metadata=metadata or {"format": "pt"})
        _fsync_file(path)

    def publish(self) -> None:
        parent, name = os.path.split(self.directory)
        if not os.path.lexists(self.directory):
            os.chmod(self.root, 0o777 & ~_umask())  # mkdtemp makes 0700; a new folder gets the usual mode
            os.rename(self.root, self.directory)
            _fsync_dir(parent)
            return
        if not os.path.isdir(self.directory):
            raise NotADirectoryError(f"{self.directory}: exists and is not a directory")
        written = set(os.listdir(self.root))
        for entry in os.listdir(self.directory):  # keep what swiftlite does not own
            if entry not in written and entry not in self.replaces:
                _carry(os.path.join(self.directory, entry), os.path.join(self.root, entry))
        os.chmod(self.root, stat.S_IMODE(os.stat(self.directory).st_mode))
        old = os.path.join(parent, f".{name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(self.directory, old)  # the old checkpoint stays whole under another name ...
        try:
            os.rename(self.root, self.directory)  # ... until the new one is in place
        except BaseException as err:
            try:
                os.rename(old, self.directory)
            except OSError as rollback:
                raise OSError(f"{self.directory}: the save failed ({err}) and putting the previous checkpoint back "
                              f"failed too ({rollback}); the previous checkpoint is intact at {old}: move it back "
                              f"with `mv {old} {self.directory}`") from err
            raise
        _fsync_dir(parent)
        shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        if self.root and os.path.isdir(self.root):
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "StagedWrite":
        parent, name = os.path.split(self.directory)
        os.makedirs(parent, exist_ok=True)
        self.root = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.publish()
        finally:
            self.discard()


def _carry(src: str, dst: str) -> None:
    """Put `src` at `dst` without copying data where possible (hard links; symlinks stay links)."""
    if os.path.islink(src):
        os.symlink(os.readlink(src), dst)
    elif os.path.isdir(src):
        shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(src, dst)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    """Make a rename durable; best effort (some file systems cannot fsync a directory)."""
    try:
        _fsync_file(path)
    except OSError:
        pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(obj: Any, path: str) -> None:
    """One file, atomically: a temporary beside it, fsynced, then `os.replace`d over it."""
    _write_file_atomic(path, lambda tmp: _write_json(obj, tmp))


def save_safetensors_atomic(tensors: dict[str, torch.Tensor], path: str) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    _write_file_atomic(path, lambda tmp: (save_file(tensors, tmp, metadata={"format": "pt"}), _fsync_file(tmp)))


def _write_json(obj: Any, path: str) -> None:
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())


def _write_file_atomic(path: str, write) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path), dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged or of an unknown kind. The message names the file."""


def load_weights(directory: str, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read `adapter_model.safetensors` from `directory`, else `adapter_model.bin`.

    A `.bin` (PEFT's `safe_serialization=False`, old ms-swift) goes through torch's restricted
    unpickler (`torch.load(weights_only=True)`), which builds tensors and plain containers only and
    runs no code from the file; anything else in it is refused unless `allow_pickle=True` (full
    pickle: only for files you trust). A damaged file raises one CheckpointError naming it.
    """
    path = os.path.join(directory, WEIGHTS_NAME)
    if os.path.exists(path):
        return _load_safetensors(path)
    pickle_path = os.path.join(directory, PICKLE_WEIGHTS_NAME)
    if os.path.exists(pickle_path):
        return _load_pickle(pickle_path, allow_pickle)
    raise CheckpointError(f"{directory}: no {WEIGHTS_NAME} (or {PICKLE_WEIGHTS_NAME}) found")


def _load_safetensors(path: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except Exception as err:  # SafetensorError, OSError, ... : all mean "not a readable safetensors file"
        size = os.path.getsize(path)
        raise CheckpointError(f"{path}: not a valid safetensors file ({size} bytes; {_first_line(err)}); "
                              f"it is truncated or damaged: save the adapter again") from None


def _load_pickle(path: str, allow_pickle: bool) -> dict[str, torch.Tensor]:
    import pickle

    try:
        weights = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as err:
        if allow_pickle:
            raise CheckpointError(f"{path}: not a readable pickle checkpoint ({_first_line(err)})") from None
        raise CheckpointError(
            f"{path}: torch's restricted unpickler (weights_only=True) refused this pickle file and ran none of "
            f"it ({_unpickler_reason(err)}). It is damaged, or holds more than tensors: if you trust its source, "
            f"pass allow_pickle=True (full pickle can run code), or re-save it as safetensors."
        ) from None
    except (EOFError, RuntimeError, OSError, ValueError) as err:
        what = "an empty file" if os.path.getsize(path) == 0 else f"{type(err).__name__}: {_first_line(err)}"
        raise CheckpointError(f"{path}: not a readable pickle checkpoint ({what}); it is truncated or damaged") from None
    if not isinstance(weights, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                for k, v in weights.items()):
        raise CheckpointError(f"{path}: expected a state dict (parameter name -> tensor), got "
                              f"{type(weights).__name__}")
    return weights


def _unpickler_reason(err: BaseException) -> str:
    """The line of torch's long weights_only message that says what was refused."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for key in ("GLOBAL", "Unsupported", "Unpickler error"):
        for line in lines:
            if key in line and not line.endswith("error:"):
                return line
    return lines[0] if lines else type(err).__name__


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def read_json(path: str) -> dict[str, Any]:
    """A JSON object from `path`; a damaged file raises one CheckpointError naming it.

    What the object must hold (an adapter config naming its tuner) is `api/checks.py`'s
    `check_adapter_file`: this module reads files and knows no tuner.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err}); the file is damaged: save the adapter again") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object {{...}}, got a {type(data).__name__}")
    return data


def resolve_checkpoint_dir(model_id: str, revision: str | None = None) -> str:
    """A local directory, or a hub repo id `owner/name` downloaded with huggingface_hub.

    Only the `owner/name` form goes to the hub, and only when `owner` is not a local folder; any
    other missing path (absolute, relative, `./x`, `a/b/c`) raises "no such directory" at once.
    """
    model_id = os.fspath(model_id)
    if os.path.isdir(model_id):
        return model_id
    if os.path.exists(model_id):
        raise CheckpointError(f"{model_id}: is a file; give the checkpoint directory that holds {CONFIG_NAME}")
    looks_like_hub_id = (re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", model_id) is not None
                         and not os.path.isdir(model_id.split("/")[0]) and ".." not in model_id)
    if not looks_like_hub_id:
        raise FileNotFoundError(f"{model_id}: no such directory (looked in {os.path.abspath(model_id)}); "
                                f"give the folder save_pretrained wrote, or a hub id 'owner/name'")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise FileNotFoundError(f"{model_id}: no such directory, and HF_HUB_OFFLINE=1 forbids downloading it "
                                f"as a hub repo id")
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(model_id, revision=revision)
    except Exception as err:  # offline, no such repo, no access: one error that says both
        raise FileNotFoundError(f"{model_id}: no such directory, and downloading it as a hub repo id failed "
                                f"({type(err).__name__}: {_first_line(err)})") from None
