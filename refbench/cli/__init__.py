"""The ``refbench`` command line (also ``python -m refbench``): parses arguments and calls library functions.

A module per command group (``info``, ``measure``, ``train``, ``ddp``,
``kernels``, ``report``, ``regress``) adds its commands with ``register``.
Every error a user can fix is one line, ``refbench: error: ...``, and exit
status 2; an interrupted command exits 130, saying how to go on (each
command's ``going_on``). Nothing heavy is imported before
the arguments are parsed, so ``--help`` answers at once, and the commands
that only read records (``compare``, ``report``, ``nightly --no-run``) never
import torch.
"""
from __future__ import annotations

import argparse
import re
import signal
import sys
import warnings
from typing import Sequence

from refbench.cli import ddp, info, kernels, measure, regress, report, train
from refbench.errors import RefbenchError
from refbench.records.validate import SkippedLine
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
        # A value that starts with a minus and a digit ("-5%", "-1") is a value, so that its own check names what
        # is wrong with it; no option of refbench's looks like a number.
        self._negative_number_matcher = re.compile(r"^-\.?\d")

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


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """A line a reader left out is one warning line, as the commands print theirs."""
    if issubclass(category, SkippedLine):
        print(f"refbench: warning: {message}", file=sys.stderr)
    else:
        _default_show_warning(message, category, filename, lineno, file, line)


_default_show_warning = warnings.showwarning


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"refbench: error: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    except RefbenchError as exc:
        print(f"refbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        going_on = getattr(args, "going_on", None)
        print("refbench: interrupted" + (f"; {going_on(args, argv)}" if going_on else ""), file=sys.stderr)
        return 130
