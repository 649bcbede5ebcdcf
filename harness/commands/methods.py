"""`realtalk-bench methods list [--json] [--plugin X]`: every registered method (built-in, entry points,
--plugin), its kind and origin, and whether it can run here (and why not)."""
from __future__ import annotations

import argparse

from harness.plugins import add_plugin_argument


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("methods", help="list the registered methods and whether each can run here")
    sub = p.add_subparsers(dest="methods_command", metavar="ACTION")
    lst = sub.add_parser("list", help="name, kind, origin (built-in / plugin), availability here and why not")
    lst.add_argument("--json", action="store_true", help="print the rows as JSON")
    add_plugin_argument(lst)
    lst.set_defaults(func=run)
    p.set_defaults(func=run, json=False, plugin=[])


def run(args: argparse.Namespace) -> int:
    from harness.listing import method_rows, print_methods
    from harness.plugins import load_plugins

    load_plugins(args.plugin)
    print_methods(method_rows(), as_json=args.json)
    return 0
