"""Downstream image-classification tasks: a tiny VTAB-like suite.

VTAB (Zhai et al., "A Large-scale Study of Representation Learning with the Visual Task
Adaptation Benchmark", arXiv:1910.04867) measures how well one backbone adapts to many small
tasks with different label spaces, grouped as *natural*, *specialized* and *structured*. This
module builds the same kind of table from data that needs no download:

    group        task                 labels
    natural      digits               10 handwritten digits (sklearn's load_digits, 8×8 upsampled)
    natural      digits-parity        2  (even / odd digit)
    natural      colour               6  colours of a plain shape
    specialized  style                6  rendering styles of the shapes world
    specialized  shape-in-style       5  shapes, drawn only in non-plain styles (domain shift)
    structured   position             9  cells of a 3×3 grid
    structured   size                 3  object sizes
    structured   shape                5  shapes (plain style, all backgrounds)

Each task is a ``datasets.DatasetDict`` with ``train`` and ``test`` splits and columns ``image``
((H, W, 3) uint8) and ``label`` (``ClassLabel``). ``shots`` gives the few-shot regime: the train
split then holds exactly ``shots`` examples per class (VTAB-1k uses 1000 in total).
"""

from __future__ import annotations

import numpy as np

from .shapes import COLOURS, POSITIONS, SHAPES, SIZES, STYLES, shapes_dataset

TASK_GROUPS: dict[str, str] = {
    "digits": "natural", "digits-parity": "natural", "colour": "natural",
    "style": "specialized", "shape-in-style": "specialized",
    "position": "structured", "size": "structured", "shape": "structured",
}
TASKS: tuple[str, ...] = tuple(TASK_GROUPS)


def _shapes_task(name: str, n: int, image_size: int, seed: int):
    """(images uint8 (N, H, W, 3), labels int (N,), label names) for a shapes-world task."""
    if name == "shape":
        ds, column = shapes_dataset(n, image_size=image_size, seed=seed, maps=False), "shape"
    elif name == "colour":
        ds, column = shapes_dataset(n, image_size=image_size, seed=seed, maps=False), "colour"
    elif name == "position":
        ds, column = shapes_dataset(n, image_size=image_size, seed=seed, maps=False), "position"
    elif name == "size":
        ds, column = shapes_dataset(n, image_size=image_size, seed=seed, maps=False), "size"
    elif name == "style":
        ds, column = shapes_dataset(n, image_size=image_size, seed=seed, styles=STYLES, maps=False), "style"
    elif name == "shape-in-style":
        ds = shapes_dataset(n, image_size=image_size, seed=seed, styles=STYLES[1:], maps=False)
        column = "shape"
    else:  # pragma: no cover - guarded by downstream_task
        raise KeyError(name)
    arrays = ds.with_format("numpy")[:]
    return arrays["image"].astype(np.uint8), arrays[column].astype(np.int64), ds.features[column].names


def _digits_task(name: str, image_size: int):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # (N, 8, 8) in [0, 1]
    index = (np.arange(image_size) * 8) // image_size  # nearest-neighbour upsampling 8 -> image_size
    images = images[:, index][:, :, index]  # (N, S, S)
    images = np.repeat((images * 255).round().astype(np.uint8)[..., None], 3, axis=-1)  # (N, S, S, 3)
    labels = digits.target.astype(np.int64)
    if name == "digits-parity":
        return images, labels % 2, ["even", "odd"]
    return images, labels, [str(d) for d in range(10)]


def downstream_task(name: str, *, shots: int | None = None, n_test: int = 300, image_size: int = 32,
                    seed: int = 0):
    """Build one downstream task as a ``DatasetDict(train=..., test=...)``.

    ``shots=None`` keeps every remaining example for training (digits: ~1500; shapes tasks: 1000);
    ``shots=k`` keeps exactly ``k`` examples per class (fails if a class has fewer). The test split
    has ``n_test`` examples (fewer for digits if the data run out) and never overlaps the train split.
    """
    import datasets

    if name not in TASK_GROUPS:
        raise ValueError(f"unknown task {name!r}; available: {list(TASKS)}")
    if name.startswith("digits"):
        images, labels, names = _digits_task(name, image_size)
    else:
        images, labels, names = _shapes_task(name, 1000 + n_test, image_size, seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    n_test = min(n_test, len(labels) // 3)
    test_idx, pool = order[:n_test], order[n_test:]
    if shots is None:
        train_idx = pool
    else:
        train_idx = []
        for c in range(len(names)):
            members = pool[labels[pool] == c]
            if len(members) < shots:
                raise ValueError(f"task {name!r}: class {names[c]!r} has only {len(members)} training "
                                 f"examples but shots={shots}; lower shots.")
            train_idx.extend(members[:shots].tolist())
        train_idx = np.array(sorted(train_idx))
    s = image_size
    features = datasets.Features({"image": datasets.Array3D(shape=(s, s, 3), dtype="uint8"),
                                  "label": datasets.ClassLabel(names=list(names))})

    def split(idx):
        return datasets.Dataset.from_dict({"image": list(images[idx]), "label": labels[idx].tolist()},
                                          features=features)

    return datasets.DatasetDict(train=split(train_idx), test=split(test_idx))


def vtab_suite(*, shots: int | None = 10, image_size: int = 32, seed: int = 0,
               tasks: tuple[str, ...] = TASKS) -> dict:
    """``{task: DatasetDict}`` for every task in ``tasks`` (same few-shot budget for all)."""
    return {t: downstream_task(t, shots=shots, image_size=image_size, seed=seed) for t in tasks}


__all__ = ["TASKS", "TASK_GROUPS", "downstream_task", "vtab_suite", "SHAPES", "COLOURS", "SIZES",
           "POSITIONS"]
