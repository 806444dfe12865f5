"""The `swiftlite` command.

    swiftlite zoo build [NAME] [--quick]     build tiny backbones and print their quality figures
    swiftlite zoo list                       list backbones, shipped builds and their figures
    swiftlite show MODEL_DIR                 print the structure tree of a saved transformers model
    swiftlite course build [--quick] [--out DIR] [--only NN ...] [--keep-going] [--jobs N] [--resume]
                                             execute every tutorial, render the course site
    swiftlite --version

A user error (an unknown backbone, a missing or wrong directory, ...) prints one line,
`swiftlite: error: ...`, on stderr and exits with status 2; only a bug shows a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys

from . import __version__

USER_ERROR = 2


class UserError(Exception):
    """Something the user can fix; printed as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage + message; one line is enough
        raise UserError(f"{message} (see `{self.prog} --help`)")


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
    sub.add_parser("zoo", help="build or list the tiny pretrained backbones", add_help=False)
    show = sub.add_parser("show", help="print a model's structure tree")
    show.add_argument("model_dir", help="a directory saved with transformers' save_pretrained")
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
    if argv[:1] == ["zoo"]:
        from .zoo import cli_main  # light --help: torch loads only for the command that needs it

        return cli_main(argv[1:]) or 0
    args = parser.parse_args(argv)
    if args.command == "show":
        print(_show(args.model_dir))
    if args.command == "course":
        from .course import build  # light --help

        index = build(args.out, quick=args.quick, only=args.only, keep_going=args.keep_going, jobs=args.jobs,
                      resume=args.resume)
        print(f"course site: {index} (serve it: python -m http.server -d {index.parent})")
    return 0


def _show(model_dir: str) -> str:
    if not os.path.isdir(model_dir):
        what = "is a file, not a directory" if os.path.exists(model_dir) else "no such directory"
        raise UserError(f"show {model_dir}: {what}; give a folder written by transformers' save_pretrained")
    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        # an adapter checkpoint: adapter_config.json at the top (PEFT) or in dir/<adapter>/ (ms-swift's layout)
        configs = [os.path.join(model_dir, "adapter_config.json")] + [
            os.path.join(model_dir, entry, "adapter_config.json") for entry in sorted(os.listdir(model_dir))]
        if any(os.path.isfile(c) for c in configs):
            raise UserError(f"show {model_dir}: this is an adapter checkpoint (adapter_config.json), not a model; "
                            f"give the base model's folder (the one with config.json)")
        raise UserError(f"show {model_dir}: no config.json, so this is not a transformers model folder")
    from transformers import AutoModel

    from .api.inspect import show as show_tree  # light --help: torch loads only for `show`

    return show_tree(AutoModel.from_pretrained(model_dir))


if __name__ == "__main__":
    raise SystemExit(main())
