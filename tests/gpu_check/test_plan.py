"""gpu-check's plan: each step's cells and costs, cut to its share, in the order that matters."""
import pytest

from refbench.gpu_check import costs
from refbench.gpu_check.plan import SHARES, Cell, Step, describe, plan, gpu_test_cells


def test_a_step_keeps_in_order_what_fits_and_names_the_rest():
    step = Step("matrix", 20.0, 2.0, [Cell("a", 5.0), Cell("b", 50.0), Cell("c", 5.0), Cell("d", 9.0)]).fit()
    assert [c.label for c in step.kept] == ["a", "c"] and [c.label for c in step.left_out] == ["b", "d"]
    assert step.estimate_s == 12.0


@pytest.fixture(scope="module")
def gpu_plan():
    return plan(450, device="cuda")


def test_every_step_fits_and_the_order_is_kernels_matrix_convergence_validate_pytest(gpu_plan):
    assert [s.name for s in gpu_plan] == ["softmax", "conv2d", "matrix", "converge", "validate", "pytest"]
    assert all(s.estimate_s <= s.share_s for s in gpu_plan)
    assert sum(s.estimate_s for s in gpu_plan) <= 450
    for step in gpu_plan:
        assert len(step.kept) + len(step.left_out) == len(step.cells)


def test_the_kernels_meet_their_peers_and_the_matrix_spans_its_backends(gpu_plan):
    softmax, conv2d, matrix = gpu_plan[:3]
    assert {c.spec["backend"] for c in softmax.kept} == {"torch", "compile", "triton", "liger", "quack"}
    # A peer that is not installed is planned as the skipped record it will be, at no cost.
    assert all(c.seconds == 0 and "not installed" in c.group for c in softmax.kept if c.spec["backend"] == "quack")
    assert {c.spec["backend"] for c in conv2d.kept} == {"cudnn", "triton", "compile-max-autotune"}
    assert {c.spec["backend"] for c in matrix.kept} == {"cuda", "tf32", "amp-bf16", "cudagraphs", "triton", "compile"}
    # The costly cells are the ones left out: a max-autotune build costs what 30 cuDNN cells do.
    assert max(c.seconds for c in conv2d.left_out) > 10 * max(c.seconds for c in conv2d.kept if
                                                               c.spec["backend"] == "cudnn")


def test_a_smaller_budget_measures_less_and_says_what_it_leaves_out():
    small, large = plan(200, device="cuda"), plan(900, device="cuda")
    assert sum(len(s.kept) for s in small) < sum(len(s.kept) for s in large)
    text = "\n".join(describe(small, 200))
    assert "leaves out" in text and "resnet18_cifar compile train" in text
    assert sum(SHARES.values()) == pytest.approx(1.0)


def test_tests_are_kept_file_by_file_in_priority_order():
    cells = gpu_test_cells(["tests/run/test_ddp.py::t", "tests/kernels/test_softmax.py::a", "tests/x.py::y",
                        "tests/kernels/test_conv.py::b"])
    assert [c.label.split("::")[0] for c in cells] == ["tests/kernels/test_softmax.py", "tests/kernels/test_conv.py",
                                                       "tests/run/test_ddp.py", "tests/x.py"]
    assert cells[0].seconds == costs.PYTEST_TEST_S["tests/kernels/test_softmax.py"]


def test_cell_costs_follow_the_measured_figures():
    # A compile cell pays the measured compile (models_compile: resnet18 21.2 s) on top of its steps.
    plain = costs.matrix_cell_s("resnet18_cifar", "cuda", "train", warmup=10, iters=20, energy_s=0.3)
    compiled = costs.matrix_cell_s("resnet18_cifar", "compile", "train", warmup=10, iters=20, energy_s=0.3)
    assert compiled - plain == pytest.approx(21.2 + 30 * (17.38 - 16.17) / 1e3)
    assert costs.converge_run_s("mlp", "cuda", epochs=20) == pytest.approx(6.0 + 20 * 469 * 1.25e-3)


def test_a_budget_past_the_device_calls_time_limit_is_a_problem(monkeypatch):
    from refbench.gpu_check import run

    monkeypatch.setattr(run, "collect_gpu_tests", lambda: (["tests/kernels/test_softmax.py::t"], []))
    monkeypatch.setattr(run, "check_imports", lambda modules: [])
    monkeypatch.setattr(run.carry, "problems", lambda: [])
    assert run.dry_run(450, log=lambda line: None) == []
    (problem,) = run.dry_run(500, log=lambda line: None)
    assert "do not fit a device call of 540 s" in problem
