"""The ``refbench`` command line (also ``python -m refbench``): parses arguments and calls library functions.

A module per command group (``info``, ``measure``, ``train``, ``ddp``,
``kernels``, ``report``, ``regress``) adds its commands with ``register``.
Every error a user can fix is one line, ``refbench: error: ...``, and exit
status 2; an interrupted command exits 130. Nothing heavy is imported before
the arguments are parsed, so ``--help`` answers at once, and the commands
that only read records (``compare``, ``report``, ``nightly --no-run``) never
import torch.
"""
from __future__ import annotations

import argparse
import signal
import sys
from typing import Sequence

from refbench.cli import ddp, info, kernels, measure, regress, report, train
from refbench.errors import RefbenchError
from refbench.version import __version__

GROUPS = (info, measure, train, ddp, kernels, report, regress)
EXAMPLES = """examples:
  refbench list
  refbench run --workloads lenet5,mlp --backends cpu,cpu+compile --batch-sizes 16
  refbench report results/results.jsonl -o rep
  refbench compare base.jsonl new.jsonl

`refbench COMMAND --help` describes a command and its options."""


class UsageError(Exception):
    """A malformed command line; its message is the one line the user sees."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples keep their lines; every option's help ends with its default, unless it says its own."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or action.default in (None, False, [], (), argparse.SUPPRESS) or not action.option_strings
                or isinstance(action, (argparse._StoreConstAction, argparse._VersionAction))):
            return text
        default = ",".join(map(str, action.default)) if isinstance(action.default, list) else action.default
        return f"{text} (default: {str(default).replace('%', '%%')})"


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (what was wrong, where the help is), not the whole usage."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        command = self.prog.removeprefix("refbench").strip()
        where = f"{command}: " if command else ""
        raise UsageError(f"{where}{message} (`{self.prog} --help` lists the options)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="refbench", description="Benchmark and correctness harness for PyTorch models and "
                                                 "Triton kernels.", epilog=EXAMPLES)
    parser.add_argument("--version", action="version", version=f"refbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for group in GROUPS:
        group.register(sub)
    return parser


def _terminate(signum, frame):
    """SIGTERM ends a command as Ctrl-C does: the current cell's processes are killed, written records kept."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"refbench: error: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except RefbenchError as exc:
        print(f"refbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("refbench: interrupted; records written so far are kept (`--resume` goes on)", file=sys.stderr)
        return 130
