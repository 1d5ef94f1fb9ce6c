"""What the commands share: value parsers, option groups, the output file check and the table printer.

Imports nothing heavy: the parser is built before torch or pandas is imported.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shlex
import sys
from typing import Any, Sequence

from refbench.errors import RefbenchError
from refbench.regress.gates import GATES
from refbench.run.executors import EXECUTORS, Placement, open_executor
from refbench.run.settings import Settings, positive_float, variant_option

DTYPES = ("fp32", "fp16", "bf16", "fp64", "float32", "float16", "bfloat16", "float64")


def csv_list(text: str) -> list[str]:
    """Comma-separated items; an item given twice is refused (each cell, shape or gate would count twice)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    twice = list(dict.fromkeys(item for item in items if items.count(item) > 1))
    if twice:
        raise argparse.ArgumentTypeError(f"{', '.join(twice)} given twice in {text!r}; give each once")
    return items


def path_option(text: str) -> str:
    """A file or directory name: an empty one is refused rather than taken for the current directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


def text_option(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a value, got an empty string")
    return text


def int_list(text: str) -> list[int]:
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    twice = list(dict.fromkeys(str(v) for v in values if values.count(v) > 1))
    if twice:
        raise argparse.ArgumentTypeError(f"{', '.join(twice)} given twice in {text!r}; give each once")
    return values


def dtype_list(text: str) -> list[str]:
    names = csv_list(text)
    bad = [name for name in names if name not in DTYPES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown dtype {', '.join(bad) or '(none)'}; use fp32, fp16, bf16 or fp64")
    return names


def merged_variants(items: list[dict]) -> dict[str, dict]:
    """Repeated ``--variant W:K=V`` options as one variant per workload; an option given twice is refused."""
    variants: dict[str, dict] = {}
    for item in items:
        for workload, variant in item.items():
            merged = variants.setdefault(workload, {})
            for key, value in variant.items():
                if key in merged:
                    raise RefbenchError(f"--variant {workload}:{key} is given twice ({merged[key]!r} and {value!r}); "
                                        f"give each option once")
                merged[key] = value
    return variants


def writable(path: str, flag: str = "--out") -> str:
    """``path`` if this process can append to it (creating it when absent), else a RefbenchError."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError:
        raise RefbenchError(f"cannot write results to {path}: choose a writable file path with {flag}") from None
    return path


def matrix_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    """The cells of a matrix (``run``, ``nightly``) and the settings they share."""
    p.add_argument("--workloads", type=csv_list, required=required,
                   help="names or shell patterns ('lenet*'), or all")
    p.add_argument("--backends", type=csv_list, default=["cpu"], help="e.g. cpu,cpu+compile,cuda+amp-bf16")
    p.add_argument("--modes", type=csv_list, default=["train", "infer"], help="train, infer or both")
    p.add_argument("--batch-sizes", type=int_list, default=[128], help="samples per step, comma-separated")
    p.add_argument("--variant", dest="variants", type=variant_option, action="append", default=[],
                   metavar="WORKLOAD:OPTION=VALUE", help="a workload's variant, e.g. lenet5:activation=tanh; repeatable")
    Settings.add_arguments(p)
    p.add_argument("--time-budget", type=positive_float, default=None,
                   help="seconds for the whole run; cells not started by then are recorded as not_run")


def matrix_of(args):
    """The validated Matrix of the matrix options."""
    from refbench.run.matrix import Matrix

    matrix = Matrix(workloads=args.workloads, backends=args.backends, modes=args.modes, batch_sizes=args.batch_sizes,
                    variants=merged_variants(args.variants), settings=Settings.from_args(args))
    matrix.validate()
    return matrix


def node_label(text: str) -> tuple[str, str]:
    """``--node-label KEY=VALUE``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE such as ray.io/accelerator-type=H100, got {text!r}")
    return key.strip(), value.strip()


def node_resource(text: str) -> tuple[str, float]:
    """``--node-resource NAME=AMOUNT`` (AMOUNT positive; 1 when left out)."""
    name, sep, amount = text.partition("=")
    try:
        value = positive_float(amount) if sep else 1.0
    except argparse.ArgumentTypeError:
        value = None
    if not name.strip() or value is None:
        raise argparse.ArgumentTypeError(f"expected NAME=AMOUNT such as H100=1, got {text!r}")
    return name.strip(), value


def executor_options(p: argparse.ArgumentParser) -> None:
    """Where the cells run (``run``, ``nightly``, ``converge``): this machine, or the nodes of a Ray cluster."""
    group = p.add_argument_group("where the cells run")
    group.add_argument("--executor", choices=EXECUTORS, default="local",
                       help="local: one cell after another on this machine; ray: each cell (each seed, for converge) "
                            "a task of a Ray cluster, on a node with the CPUs and GPU it needs (pip install "
                            "'refbench[ray]')")
    group.add_argument("--address", type=text_option, default=None,
                       help="with --executor ray: the cluster's address (`ray start --head` prints it); default: "
                            "$RAY_ADDRESS, else a cluster started on this machine for the command")
    group.add_argument("--node-label", dest="node_labels", type=node_label, action="append", default=[],
                       metavar="KEY=VALUE", help="with --executor ray: run every cell on a node with this Ray label, "
                                                 "e.g. ray.io/accelerator-type=H100; repeatable")
    group.add_argument("--node-resource", dest="node_resources", type=node_resource, action="append", default=[],
                       metavar="NAME=AMOUNT", help="with --executor ray: every cell asks for this much of a custom "
                                                   "resource (`ray start --resources`), e.g. H100=1; repeatable")


def executor_of(args) -> contextlib.AbstractContextManager:
    """The executor the options ask for, open for the length of a block."""
    placement = Placement(address=args.address, labels=_once(args.node_labels, "--node-label"),
                          resources=_once(args.node_resources, "--node-resource"))
    return open_executor(args.executor, placement)


def _once(pairs: list[tuple[str, Any]], flag: str) -> dict[str, Any]:
    twice = sorted({key for key, _ in pairs if sum(k == key for k, _ in pairs) > 1})
    if twice:
        raise RefbenchError(f"{flag} {', '.join(twice)} is given twice; give each once")
    return dict(pairs)


def judging_options(p: argparse.ArgumentParser) -> None:
    """How ``compare`` and ``nightly`` judge a change."""
    p.add_argument("--threshold", default="5%", help="smallest change that counts, e.g. 5%% (and it must be "
                                                     "significant on the raw samples)")
    p.add_argument("--fail-on", type=csv_list, default=list(GATES), metavar=",".join(GATES),
                   help="what makes the exit status 1")
    p.add_argument("--judge-busy", action="store_true",
                   help="no longer needed, accepted so that scripts keep working: cells timed on a busy machine are "
                        "judged by their interval like any other, the busy probe a note in the row")


def table_options(p: argparse.ArgumentParser) -> None:
    """How a command prints its table: fit to the terminal, or whole as Markdown or CSV."""
    style = p.add_mutually_exclusive_group()
    style.add_argument("--markdown", dest="style", action="store_const", const="markdown", default="text",
                       help="print the whole table as Markdown (default: text fit to the terminal)")
    style.add_argument("--csv", dest="style", action="store_const", const="csv",
                       help="print the whole table as CSV")


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], args) -> None:
    from refbench.report.tables import render

    print(render(rows, columns, style=getattr(args, "style", "text")))


def needs_torch(command):
    """A command that imports torch: Triton's mode is chosen first (refbench.harness.triton_mode), since Triton
    fixes it when first imported. Commands that only read records never import torch."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        from refbench.harness.triton_mode import choose_triton_mode

        choose_triton_mode()
        return command(*args, **kwargs)

    return run


def warn(message: str) -> None:
    print(f"refbench: warning: {message}", file=sys.stderr)


def goes_on_with_resume(args, argv: Sequence[str]) -> str:
    """What an interrupted command that has ``--resume`` says: the command that goes on."""
    command = shlex.join(["refbench", *argv, *([] if "--resume" in argv else ["--resume"])])
    return f"the records written so far are kept; `{command}` goes on from there"


def starts_again(kept: str):
    """What an interrupted command without ``--resume`` says: what it kept, and the command that starts it again."""
    def going_on(args, argv: Sequence[str]) -> str:
        return f"{kept}; `{shlex.join(['refbench', *argv])}` starts it again"
    return going_on
