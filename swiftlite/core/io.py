"""Checkpoint I/O: safetensors only, atomic writes, PEFT-format key conversion.

Layout (ms-swift's)::

    save_dir/
      adapter_config.json          <- the "default" adapter sits at the top
      adapter_model.safetensors
      <other_adapter>/adapter_config.json, adapter_model.safetensors
      extra_states/adapter_model.safetensors   <- base weights trained via extra_state_keys

Atomicity: every file is first written completely to a temporary file in the destination folder
and only then moved over the old one with `os.replace` (atomic on POSIX). A save that fails —
an exception, a full disk, Ctrl-C — before that last step leaves the old checkpoint untouched.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from typing import Any

import torch

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PICKLE_WEIGHTS_NAME = "adapter_model.bin"
EXTRA_STATES_DIR = "extra_states"
PEFT_PREFIX = "base_model.model."


class StagedWrite:
    """Collect files in temporaries, then move them all into place on `commit()`.

    Use as a context manager: if the block raises, every temporary is removed and no destination
    file has been touched.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[str, str]] = []  # (temp path, final path)

    def _temp_for(self, final_path: str) -> str:
        folder = os.path.dirname(os.path.abspath(final_path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(final_path), dir=folder)
        os.close(fd)
        self._staged.append((tmp, final_path))
        return tmp

    def json(self, obj: Any, path: str) -> None:
        tmp = self._temp_for(path)
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())

    def safetensors(self, tensors: dict[str, torch.Tensor], path: str, metadata: dict[str, str] | None = None) -> None:
        from safetensors.torch import save_file

        tmp = self._temp_for(path)
        # safetensors refuses shared / non-contiguous storage: give it independent CPU copies.
        tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
        save_file(tensors, tmp, metadata=metadata or {"format": "pt"})

    def commit(self) -> None:
        for tmp, final in self._staged:
            os.replace(tmp, final)
        self._staged.clear()

    def discard(self) -> None:
        for tmp, _ in self._staged:
            if os.path.exists(tmp):
                os.remove(tmp)
        self._staged.clear()

    def __enter__(self) -> "StagedWrite":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def write_json_atomic(obj: Any, path: str) -> None:
    with StagedWrite() as w:
        w.json(obj, path)


def save_safetensors_atomic(tensors: dict[str, torch.Tensor], path: str) -> None:
    with StagedWrite() as w:
        w.safetensors(tensors, path)


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

    An `adapter_config.json` must also say which tuner wrote it: a registered `swift_type`, or a
    `peft_type` that PEFT (or a swiftlite tuner) knows.
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
    if os.path.basename(path) == CONFIG_NAME:
        _check_adapter_type(data, path)
    return data


def _check_adapter_type(data: dict[str, Any], path: str) -> None:
    from .config import TUNERS

    if "swift_type" in data:
        if data["swift_type"] not in TUNERS:
            import swiftlite.tuners  # noqa: F401  (fills the registry)
        if data["swift_type"] not in TUNERS:
            raise CheckpointError(f"{path}: swift_type={data['swift_type']!r} is not a registered tuner; known: "
                                  f"{', '.join(sorted(TUNERS))}. Import the module that registers it first.")
        return
    if "peft_type" in data:
        peft_type = data["peft_type"]
        known = {t.peft_type for t in TUNERS.values() if t.peft_type}
        try:
            from peft.utils import PeftType

            known |= {m.value for m in PeftType}
        except ImportError:  # without PEFT only swiftlite's own conversions are possible
            pass
        if peft_type not in known:
            raise CheckpointError(f"{path}: peft_type={peft_type!r} is not a PEFT method; known: "
                                  f"{', '.join(sorted(map(str, known)))}")
        return
    raise CheckpointError(f"{path}: neither 'swift_type' nor 'peft_type' is set, so no tuner can load it")


# ---- PEFT key conversion (renaming only) ------------------------------------------------------
def to_peft_keys(
    state_dict: dict[str, torch.Tensor], adapter_name: str, adapter_attrs: set[str]
) -> dict[str, torch.Tensor]:
    """`x.lora_A.<adapter>.weight` -> `base_model.model.x.lora_A.weight` (PEFT's saved form)."""
    out = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            if part in adapter_attrs and parts[i + 1] == adapter_name:
                del parts[i + 1]
                break
        out[PEFT_PREFIX + ".".join(parts)] = value
    return out


def from_peft_keys(
    state_dict: dict[str, torch.Tensor], adapter_name: str, adapter_attrs: set[str]
) -> dict[str, torch.Tensor]:
    """Inverse of `to_peft_keys`: insert the adapter name after the container segment."""
    out = {}
    for key, value in state_dict.items():
        key = key[len(PEFT_PREFIX):] if key.startswith(PEFT_PREFIX) else key
        parts = key.split(".")
        for i, part in enumerate(parts):
            if part in adapter_attrs:
                parts.insert(i + 1, adapter_name)
                break
        else:
            raise ValueError(f"PEFT checkpoint key {key!r} belongs to no known adapter container {sorted(adapter_attrs)}")
        out[".".join(parts)] = value
    return out


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
