"""The device image as data: the manifest, and imports held to it the way the GPU machine holds them."""
import importlib
import sys

import pytest

from refbench.gpu_check import image

pytest.importorskip("ruptures", reason="the refused import needs a package installed here and absent there")


def test_the_manifest_is_the_machines_image():
    packages = image.manifest()
    assert packages["python"].startswith("3.12")
    assert packages["torch"] == "2.11.0" and packages["triton"] == "3.6.0" and packages["torchvision"] == "0.26.0"
    assert {"numpy", "pandas", "scipy", "matplotlib", "pytest", "nvidia-ml-py"} <= set(packages)
    assert not {"optuna", "ruptures", "nox", "liger-kernel", "snownlp"} & set(packages)
    assert "liger-kernel" in image.device_packages() and "python" not in image.device_packages()


@pytest.fixture
def unimported(monkeypatch):
    """ruptures as if no module had imported it yet."""
    for name in [n for n in sys.modules if n == "ruptures" or n.startswith("ruptures.")]:
        monkeypatch.delitem(sys.modules, name)


def test_the_project_cannot_import_what_the_machine_lacks(unimported, monkeypatch):
    finder = image.DeviceImageFinder(image.device_packages())
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    with pytest.raises(ModuleNotFoundError, match="ruptures is not on the GPU machine's image"):
        importlib.import_module("ruptures")
    assert finder.refused == {"ruptures": "ruptures"}
    importlib.import_module("numpy")   # on the image


def test_a_dependency_importing_it_for_itself_is_left_alone(unimported, monkeypatch):
    monkeypatch.setattr(sys, "meta_path", [image.DeviceImageFinder(image.device_packages()), *sys.meta_path])
    namespace = {}
    exec(compile("import ruptures", "/usr/lib/python3/dist-packages/some_dependency.py", "exec"), namespace)
    assert namespace["ruptures"].__name__ == "ruptures"


def test_the_check_names_the_module_and_the_package():
    failures = image.check_imports(["refbench.kernelbench.softmax", "tests.fixtures.needs_optuna"])
    assert len(failures) == 1
    assert failures[0].startswith("tests.fixtures.needs_optuna: ModuleNotFoundError")
    assert "optuna is not on the GPU machine's image" in failures[0]


def test_pytest_m_gpu_collects_as_the_machine_would():
    tests, errors = image.collect_gpu_tests()
    assert errors == []
    assert len(tests) >= 39 and any(t.startswith("tests/kernels/test_softmax.py::test_gpu") for t in tests)
