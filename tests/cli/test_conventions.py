"""The command line behaves like the tools its users know: --version, python -m, help for everything, one error form."""
import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from refbench.cli import build_parser, main
from refbench.version import __version__

ROOT = Path(__file__).resolve().parents[2]


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"refbench {__version__}"


def test_python_dash_m_refbench_is_the_command():
    done = subprocess.run([sys.executable, "-m", "refbench", "--version"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"refbench {__version__}"


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_command_says_what_it_does_and_shows_an_example(name):
    parser = _commands()[name]
    assert parser.description and len(parser.description) > 30
    assert f"refbench {name}" in (parser.epilog or ""), f"{name} has no example"


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_option_has_help(name):
    missing = [a.option_strings or a.dest for a in _commands()[name]._actions if not (a.help or "").strip()]
    assert not missing


def test_options_show_their_defaults():
    text = _commands()["run"].format_help()
    assert "(default: results/results.jsonl)" in " ".join(text.split())
    assert "(default: forkserver)" in text


@pytest.mark.parametrize("argv", [["run", "--bogus"], ["run", "--workloads", "lenet6"], ["frobnicate"]])
def test_every_error_is_one_line_with_one_prefix(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("refbench: error: ") and "error: refbench" not in err
