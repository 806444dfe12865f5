"""The `swiftlite` command.

    swiftlite zoo build [NAME] [--quick] [--yes] [--ship] [--out DIR]
                                             build tiny backbones and print their quality figures
    swiftlite zoo list                       list backbones, their full and quick builds and figures
    swiftlite zoo path NAME [--quick]        print a backbone's directory (building it if needed)
    swiftlite show MODEL_DIR | ZOO_NAME      print the structure tree of a saved model, loaded as its own
                                             class (config.json's architectures / diffusers' _class_name)
    swiftlite course build [--quick] [--out DIR] [--only NN ...] [--keep-going] [--jobs N] [--resume] [--repo-url URL]
                                             execute every tutorial, render the course site
    swiftlite --version

A user error (an unknown backbone, a missing or wrong directory, ...) prints one line,
`swiftlite: error: ...`, on stderr and exits with status 2; only a bug shows a traceback.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from pathlib import Path

from . import __version__, zoo
from .zoo.hub import list_lines, shipped_build_seconds, stamp_lines

USER_ERROR = 2


class UserError(Exception):
    """Something the user can fix; printed as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage + message; one line is enough
        raise UserError(f"{message}{_did_you_mean(self, message)} (see `{self.prog} --help`)")


def _did_you_mean(parser: argparse.ArgumentParser, message: str) -> str:
    """For `unrecognized arguments: --quik`, the nearest option of any (sub)command: ` (did you mean --quick?)`."""
    if not message.startswith("unrecognized arguments: "):
        return ""
    options, parsers = set(), [parser]
    while parsers:
        p = parsers.pop()
        for action in p._actions:  # argparse keeps no public list of a parser's options or subparsers
            options.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
    unknown = message.split(": ", 1)[1].split()
    hints = [(arg, close[0]) for arg in unknown for close in [difflib.get_close_matches(arg, sorted(options), n=1)]
             if close]
    if len(unknown) == 1 and hints:
        return f" (did you mean {hints[0][1]}?)"
    return f" (did you mean {', '.join(f'{near} for {arg}' for arg, near in hints)}?)" if hints else ""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(argv)
    except UserError as err:
        return _fail(str(err))
    except (KeyError, ValueError, OSError) as err:  # raised by the library for bad names / files
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        return _fail(" ".join(str(message).split()))


def _fail(message: str) -> int:
    print(f"swiftlite: error: {message}", file=sys.stderr)
    return USER_ERROR


def _main(argv: list[str]) -> int:
    parser = _Parser(prog="swiftlite", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"swiftlite {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_zoo_parser(sub)
    show = sub.add_parser("show", help="print a model's structure tree")
    show.add_argument("model_dir", help="a folder saved by transformers' or diffusers' save_pretrained, or a zoo "
                                        "backbone's name (vit-tiny, llama-tiny, unet-tiny)")
    course = sub.add_parser("course", help="the rendered course (swiftlite/course.py)")
    course_sub = course.add_subparsers(dest="action", required=True)
    course_build = course_sub.add_parser("build", help="execute every tutorial and render a static site")
    course_build.add_argument("--quick", action="store_true", help="quick mode (SWIFTLITE_QUICK=1), as CI")
    course_build.add_argument("--out", default="course-site", help="output folder (default: ./course-site)")
    course_build.add_argument("--only", nargs="+", metavar="NN", help="only these tutorials (numbers or names)")
    course_build.add_argument("--keep-going", action="store_true",
                              help="run every notebook to its end, show errors in the site, then fail")
    course_build.add_argument("--jobs", type=int, default=1, metavar="N",
                              help="notebooks run at once (default 1; each gets cores/N torch threads)")
    course_build.add_argument("--resume", action="store_true",
                              help="skip tutorials already run unchanged, in this mode, into --out")
    course_build.add_argument("--repo-url", metavar="URL",
                              help="links to repository files point at URL/<path> (e.g. https://github.com/OWNER/"
                                   "swiftlite/blob/main; default: $SWIFTLITE_REPO_URL), else they are plain text")
    args = parser.parse_args(argv)
    if args.command == "zoo":
        return _zoo(args)
    if args.command == "show":
        print(_show(args.model_dir))
    if args.command == "course":
        from .course import build  # light --help

        index = build(args.out, quick=args.quick, only=args.only, keep_going=args.keep_going, jobs=args.jobs,
                      resume=args.resume, repo_url=args.repo_url)
        print(f"course site: {index} (serve it: python -m http.server -d {index.parent})")
    return 0


def _add_zoo_parser(sub) -> None:
    seconds = shipped_build_seconds()
    times = ", ".join(f"{name} {_minutes(s)}" for name, s in sorted(seconds.items()))
    zoo = sub.add_parser("zoo", help="build or list the tiny pretrained backbones")
    zoo_sub = zoo.add_subparsers(dest="action", required=True)
    build = zoo_sub.add_parser(
        "build", help="rebuild from scratch and print the quality figures",
        description=f"Full builds take (1 thread, measured on a shared 2-core CPU): {times}; all of them "
                    f"{_minutes(sum(seconds.values()))}. --quick builds take seconds.")
    build.add_argument("name", nargs="?", help="backbone name (default: all, after a confirmation)")
    build.add_argument("--quick", action="store_true", help="the seconds-long quick recipe used by tests")
    build.add_argument("--yes", action="store_true", help="build all backbones without asking first")
    build.add_argument("--ship", action="store_true",
                       help="write into swiftlite/zoo/shipped/<name> (full builds shipped with the package)")
    build.add_argument("--out", help="write into this directory instead of the cache")
    zoo_sub.add_parser("list", help="names, descriptions, and the full and quick builds present, with figures")
    path = zoo_sub.add_parser("path", help="print the directory (building if needed)")
    path.add_argument("name")
    path.add_argument("--quick", action="store_true")


def _minutes(seconds: float) -> str:
    """A measured time as the README writes it: whole minutes from an hour up, else one decimal (no ".0")."""
    return f"{seconds / 60:.0f} min" if seconds >= 3600 else f"{seconds / 60:.1f}".removesuffix(".0") + " min"


def _zoo(args: argparse.Namespace) -> int:
    if args.action == "list":
        for line in list_lines():
            print(line)
        return 0
    if args.action == "path":
        print(zoo.path(args.name, quick=args.quick or None))
        return 0
    if args.ship and args.quick:
        raise UserError("zoo build: --ship is for full builds; drop --quick")
    names = [zoo.get_recipe(args.name).name] if args.name else zoo.names()
    if not args.name and not args.quick and not args.yes:
        _confirm_build_all(names)
    for name in names:
        out = zoo.SHIPPED / name if args.ship else (Path(args.out) / name if args.out and len(names) > 1
                                                      else args.out)
        directory = zoo.build(name, quick=args.quick, out_dir=out)
        stamp = zoo.read_stamp(directory) or {}
        for line in stamp_lines(stamp, str(directory)):
            print(line)
    return 0


def _confirm_build_all(names: list[str]) -> None:
    total = _minutes(sum(shipped_build_seconds().values()))
    what = f"builds all {len(names)} backbones ({', '.join(names)}) from scratch, about {total} on a 2-core CPU"
    if not sys.stdin.isatty():
        raise UserError(f"zoo build without a NAME {what}; name one backbone, or add --yes to build them all")
    answer = input(f"swiftlite zoo build {what}. Continue? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise UserError("zoo build: cancelled; name one backbone (`swiftlite zoo build vit-tiny`) or add --yes")


def _show(model_dir: str) -> str:
    from . import show as show_tree  # light --help: torch loads only for `show`

    if not os.path.exists(model_dir) and model_dir in zoo.names():
        model_dir = str(zoo.path(model_dir))
    if not os.path.isdir(model_dir):
        what = "is a file, not a directory" if os.path.exists(model_dir) else "no such directory"
        raise UserError(f"show {model_dir}: {what}; give a folder written by transformers' or diffusers' "
                        "save_pretrained, or a zoo backbone's name")
    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        # an adapter checkpoint: adapter_config.json at the top (PEFT) or in dir/<adapter>/ (ms-swift's layout)
        entries = sorted(os.listdir(model_dir))
        configs = [os.path.join(model_dir, "adapter_config.json")] + [
            os.path.join(model_dir, entry, "adapter_config.json") for entry in entries]
        if any(os.path.isfile(c) for c in configs):
            raise UserError(f"show {model_dir}: this is an adapter checkpoint (adapter_config.json), not a model; "
                            f"give the base model's folder (the one with config.json)")
        # a diffusers pipeline folder: one model per sub-folder (unet/, text_encoder/, ...)
        parts = [e for e in entries if _model_class(os.path.join(model_dir, e)) is not None]
        if parts:
            return "\n\n".join(f"{part}/: {show_tree(_load_model(os.path.join(model_dir, part)))}"
                                 for part in parts)
        raise UserError(f"show {model_dir}: no config.json, so this is not a transformers or diffusers model folder")
    return str(show_tree(_load_model(model_dir)))


def _model_class(folder: str) -> type | None:
    """The class a saved model folder names: diffusers' `_class_name`, else transformers' `architectures[0]`
    (a headless `AutoModel` when it names neither); None when the folder holds no model config."""
    config_file = os.path.join(folder, "config.json")
    if not os.path.isfile(config_file):
        return None
    with open(config_file) as f:
        config = json.load(f)
    if not isinstance(config, dict):
        return None
    if "_class_name" in config:
        import diffusers  # light --help: loaded only for `show`

        return getattr(diffusers, config["_class_name"], None)
    import transformers  # light --help: loaded only for `show`

    if "model_type" not in config:
        return None  # not a transformers config either (e.g. the zoo's small judge network)
    for name in config.get("architectures") or []:
        if hasattr(transformers, name):
            return getattr(transformers, name)
    return transformers.AutoModel


def _load_model(folder: str):
    cls = _model_class(folder)
    if cls is None:
        raise UserError(f"show {folder}: config.json names no transformers model_type or diffusers _class_name")
    return cls.from_pretrained(folder)


if __name__ == "__main__":
    raise SystemExit(main())
