"""A text corpus that exists on every machine, and a byte-level BPE tokenizer trained on it.

The corpus is Python's own standard library: every Python installation ships the same modules'
source, so language-model pretraining needs no download. ``kind="docstrings"`` extracts the
English prose (module, class and function docstrings, via :mod:`ast`); ``kind="source"`` keeps the
code; ``kind="mixed"`` interleaves both. Documents are split into train / test by module name, so
held-out perplexity is measured on modules the model never saw.

The tokenizer is byte-level BPE (Sennrich et al., "Neural Machine Translation of Rare Words with
Subword Units", arXiv:1508.07909; byte-level as in GPT-2): start from the 256 bytes and
repeatedly merge the most frequent adjacent pair until ``vocab_size`` is reached. It is trained
with 🤗 ``tokenizers`` and wrapped as a ``transformers.PreTrainedTokenizerFast``, so
``save_pretrained`` / ``AutoTokenizer.from_pretrained`` work. Trained tokenizers are cached under
the user cache directory, keyed by a hash of their recipe.

Note: the corpus is read from the *running* interpreter's standard library, so its exact bytes
differ slightly between Python versions (the recipe hash does not include the Python version).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sysconfig
from pathlib import Path
from typing import Iterable

from ..settings import cache_dir

# Pure-Python modules present in every CPython >= 3.8 (order is irrelevant; we sort). Not in the list:
# modules CPython 3.11+ may freeze into the interpreter (abc, codecs, os, posixpath, ...): whether their
# source was found used to depend on `-X frozen_modules` (Jupyter kernels turn freezing off), so the
# corpus, and the tokenizer trained on it, differed between a kernel and a plain `python`.
STDLIB_MODULES: tuple[str, ...] = (
    "argparse", "ast", "base64", "bisect", "calendar", "cmd", "collections",
    "colorsys", "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "difflib",
    "dis", "email.message", "enum", "filecmp", "fileinput", "fnmatch", "fractions", "ftplib",
    "functools", "getopt", "gettext", "glob", "gzip", "heapq", "hmac", "html", "html.parser",
    "http.client", "http.server", "imaplib", "inspect", "ipaddress", "json", "json.decoder",
    "json.encoder", "keyword", "linecache", "locale", "logging", "logging.handlers", "mailbox",
    "mimetypes", "numbers", "operator", "optparse", "pathlib", "pdb", "pickle",
    "pkgutil", "platform", "plistlib", "poplib", "pprint", "profile", "pstats",
    "queue", "quopri", "random", "reprlib", "sched", "secrets", "selectors", "shelve", "shlex",
    "shutil", "signal", "smtplib", "socket", "socketserver", "statistics", "string", "subprocess",
    "tarfile", "tempfile", "textwrap", "threading", "timeit", "token", "tokenize", "trace",
    "traceback", "types", "typing", "unittest.case", "unittest.mock", "urllib.parse",
    "urllib.request", "uuid", "warnings", "wave", "weakref", "webbrowser", "zipfile",
)
EOS = "<|endoftext|>"
PAD = "<|pad|>"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _module_path(name: str) -> Path | None:
    """The source file of stdlib module `name`, looked up in the stdlib folder itself: the same file
    whatever `sys.path`, `sys.modules` or `-X frozen_modules` say."""
    base = Path(sysconfig.get_paths()["stdlib"]).joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _docstrings(source: str) -> list[str]:
    """All module / class / function docstrings of ``source``, in file order."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc and len(doc) > 40:
                out.append(doc.strip())
    return out


def stdlib_documents(kind: str = "docstrings", modules: Iterable[str] = STDLIB_MODULES) -> list[dict]:
    """``[{"module": name, "text": ...}, ...]``, one document per module (sorted by name)."""
    if kind not in ("docstrings", "source", "mixed"):
        raise ValueError(f"kind={kind!r}; expected 'docstrings', 'source' or 'mixed'")
    docs = []
    for name in sorted(set(modules)):
        path = _module_path(name)
        if path is None:
            continue
        source = path.read_text(encoding="utf-8", errors="replace")
        parts = []
        if kind in ("docstrings", "mixed"):
            parts.append("\n\n".join(_docstrings(source)))
        if kind in ("source", "mixed"):
            parts.append(source)
        text = "\n\n".join(p for p in parts if p)
        if text:
            docs.append({"module": name, "text": text})
    return docs


def _is_test_module(name: str, test_fraction: float) -> bool:
    # a stable hash of the module name decides the split (independent of Python's hash seed)
    h = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return h < test_fraction


def text_corpus(kind: str = "docstrings", *, test_fraction: float = 0.1, max_chars: int | None = None,
                chunk_chars: int = 2000):
    """The standard-library corpus as ``DatasetDict(train, test)`` with columns ``text``, ``module``.

    Each module's text is cut into chunks of about ``chunk_chars`` characters (on paragraph
    boundaries where possible). ``max_chars`` truncates the train split (quick experiments).
    """
    import datasets

    splits: dict[str, dict[str, list]] = {"train": {"text": [], "module": []},
                                          "test": {"text": [], "module": []}}
    used = 0
    for doc in stdlib_documents(kind):
        split = "test" if _is_test_module(doc["module"], test_fraction) else "train"
        for chunk in _chunks(doc["text"], chunk_chars):
            if split == "train" and max_chars is not None:
                if used >= max_chars:
                    continue
                used += len(chunk)
            splits[split]["text"].append(chunk)
            splits[split]["module"].append(doc["module"])
    return datasets.DatasetDict({k: datasets.Dataset.from_dict(v) for k, v in splits.items()})


def _chunks(text: str, size: int) -> list[str]:
    out, current = [], ""
    for para in text.split("\n\n"):
        if current and len(current) + len(para) > size:
            out.append(current)
            current = ""
        current = f"{current}\n\n{para}" if current else para
        while len(current) > 2 * size:  # a huge paragraph: hard cut
            out.append(current[:size])
            current = current[size:]
    if current:
        out.append(current)
    return out


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048, *, min_frequency: int = 2):
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it as ``PreTrainedTokenizerFast``.

    Special tokens: ``<|endoftext|>`` (bos = eos = unk) and ``<|pad|>``; a minimal chat template
    (``<|user|>`` / ``<|assistant|>`` turns) is attached so ``apply_chat_template`` works.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 256 + 2:
        raise ValueError(f"vocab_size={vocab_size} is too small: byte-level BPE needs the 256 bytes "
                         "plus 2 special tokens; use vocab_size >= 258.")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=[EOS, PAD], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS,
                                   pad_token=PAD)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def stdlib_tokenizer(vocab_size: int = 2048, *, kind: str = "docstrings", max_chars: int | None = None):
    """The BPE tokenizer trained on the train split of :func:`text_corpus` (cached on disk)."""
    from transformers import PreTrainedTokenizerFast

    recipe = {"vocab_size": vocab_size, "kind": kind, "max_chars": max_chars, "version": 1}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / "tokenizers" / f"stdlib-bpe-{key}"
    if (path / "tokenizer.json").exists():
        return PreTrainedTokenizerFast.from_pretrained(str(path))
    corpus = text_corpus(kind, max_chars=max_chars)["train"]
    tok = train_tokenizer(corpus["text"], vocab_size)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tok.save_pretrained(str(tmp))
    (tmp / "recipe.json").write_text(json.dumps(recipe, indent=2))
    try:
        tmp.rename(path)
    except OSError:  # another process finished first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return PreTrainedTokenizerFast.from_pretrained(str(path))
