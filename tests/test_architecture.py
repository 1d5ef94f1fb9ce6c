"""The package's layers: each imports only the layers below it, and the layers that read records need no torch."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "refbench"
# Lowest first; a module may import its own subpackage and any subpackage of an earlier layer, nothing else.
LAYERS = [
    {"errors", "version", "lifeline"},
    {"records"},
    {"report"},
    {"regress"},
    {"models", "kernels"},
    {"harness"},
    {"run", "kernelbench"},
    {"cli", "__init__"},
    {"gpu_check", "__main__"},     # programs that drive the command line
]
READERS = ("refbench.records.analysis", "refbench.records.benchmark_json", "refbench.records.store",
           "refbench.report.build", "refbench.regress.compare", "refbench.regress.nightly",
           "refbench.regress.history", "refbench.regress.page", "refbench.regress.bisect")


def _layer(part: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if part in names)


def _imports():
    """(importing part, imported part, where) for every import of refbench in refbench, functions' included."""
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        part = relative.parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "refbench":
                targets = [node.module] if node.module != "refbench" else [f"refbench.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "refbench"]
            else:
                continue
            for target in targets:
                target_part = target.split(".")[1] if "." in target else "__init__"
                yield part, target_part, f"{relative}:{node.lineno} imports {target}"


def test_every_part_of_the_package_has_a_layer():
    parts = {p.name.removesuffix(".py") for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert parts <= set().union(*LAYERS), f"give these a layer: {parts - set().union(*LAYERS)}"


def test_each_layer_imports_only_the_layers_below_it():
    wrong = [where for part, target, where in _imports()
             if target != part and not _layer(target) < _layer(part) and part != "__init__"]
    assert not wrong, "upward or sideways imports:\n" + "\n".join(wrong)


_NO_TORCH = """
import importlib, sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "triton", "torchvision") or name.startswith("refbench.models"):
            raise ImportError(f"{name} is not importable here")
sys.meta_path.insert(0, Refuse())
for module in sys.argv[1:]:
    importlib.import_module(module)
print("ok")
"""


def test_the_layers_that_read_records_import_without_torch_or_any_workload():
    done = subprocess.run([sys.executable, "-c", _NO_TORCH, *READERS], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.mark.parametrize("argv", [["compare", "{a}", "{a}"], ["report", "{a}", "-o", "{dir}"], ["--version"],
                                  ["--help"]])
def test_commands_that_only_read_records_run_without_torch(tmp_path, argv):
    results = ROOT / "reports" / "cpu" / "bench.jsonl"
    argv = [a.format(a=results, dir=tmp_path) for a in argv]
    script = _NO_TORCH.replace('print("ok")', "from refbench.cli import main; sys.exit(main(sys.argv[1:]))")
    script = script.replace("for module in sys.argv[1:]:\n    importlib.import_module(module)\n", "")
    done = subprocess.run([sys.executable, "-c", script, *argv], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode in (0, 1, 3), done.stderr[-2000:]
    assert "Traceback" not in done.stderr
