"""The `swiftlite` command.

    swiftlite zoo build [NAME] [--quick]     build tiny backbones and print their quality figures
    swiftlite zoo list                       list backbones, shipped builds and their figures
    swiftlite show MODEL_DIR                 print the structure tree of a saved transformers model
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="swiftlite", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("zoo", help="build or list the tiny pretrained backbones", add_help=False)
    show = sub.add_parser("show", help="print a model's structure tree")
    show.add_argument("model_dir", help="a directory saved with transformers' save_pretrained")
    if argv[:1] == ["zoo"]:
        from .zoo import cli_main

        return cli_main(argv[1:]) or 0
    args = parser.parse_args(argv)
    if args.command == "show":
        from transformers import AutoModel

        from .core.inspect import show as show_tree

        print(show_tree(AutoModel.from_pretrained(args.model_dir)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
