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


def load_weights(directory: str, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read `adapter_model.safetensors` from `directory`. Pickle files only when asked."""
    path = os.path.join(directory, WEIGHTS_NAME)
    if os.path.exists(path):
        from safetensors.torch import load_file

        return load_file(path)
    pickle_path = os.path.join(directory, PICKLE_WEIGHTS_NAME)
    if os.path.exists(pickle_path):
        if not allow_pickle:
            raise ValueError(
                f"{pickle_path}: only a pickle checkpoint is present, and pickle files can run code when "
                f"loaded. Pass allow_pickle=True if you trust it, or re-save it as safetensors."
            )
        return torch.load(pickle_path, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{directory}: no {WEIGHTS_NAME} found")


def read_json(path: str) -> dict[str, Any]:
    with open(path) as fh:
        return json.load(fh)


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
    """A local directory, or a hub id downloaded with huggingface_hub (needs internet)."""
    if os.path.isdir(model_id):
        return model_id
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise FileNotFoundError(f"{model_id!r} is not a local directory and HF_HUB_OFFLINE=1 forbids downloading it")
    from huggingface_hub import snapshot_download

    return snapshot_download(model_id, revision=revision)
