"""Checks every workload of the documents must pass; the test files parametrise them per workload."""
import torch

from refbench.models import Notes, Workload


def train(workload: Workload, model, batch, steps: int, recipe: str = "fast") -> list[float]:
    optimizer = workload.configure_optimizer(model, workload.recipe(recipe))
    return [workload.train_step(model, batch, optimizer).item() for _ in range(steps)]


def assert_steps_lower_the_loss(workload: Workload, variant=None, *, batch_size: int = 16, steps: int = 3):
    model = workload.make(**(variant or {}))
    batch = workload.example_batch(batch_size)
    model.eval()  # no dropout, BatchNorm on running statistics: the same function before and after
    before = workload.loss(model, batch).item()
    model.train()
    train(workload, model, batch, steps)
    model.eval()
    assert workload.loss(model, batch).item() < before


def assert_same_seed_same_losses(workload: Workload, variant=None, *, batch_size: int = 8, steps: int = 2):
    def run():
        torch.manual_seed(123)
        return train(workload, workload.make(**(variant or {})), workload.example_batch(batch_size), steps)

    assert run() == run()


def assert_documented(workload: Workload):
    """Notes, a document or reference recipe with its source, a fast recipe, reachable targets, each saying where
    its threshold comes from and the full ones stopping at it."""
    notes = workload.notes
    assert isinstance(notes, Notes) and notes.says, f"{workload.name} has no notes"
    assert workload.source.startswith(f"document {notes.document}")
    assert all(s and s.endswith(".") for sentences in notes.fields().values() for s in sentences)
    assert {"document", "reference"} & set(workload.recipes) and "fast" in workload.recipes
    assert all(recipe.source for recipe in workload.recipes.values())
    assert {"quick", "full"} <= set(workload.targets)
    for name, target in workload.targets.items():
        workload.recipe(target.recipe)
        workload.resolve_variant(**target.variant)
        assert len(target.source) > 20, f"{workload.name}'s {name} target does not say where {target.threshold} comes from"
    assert workload.targets["full"].stop_at_target, f"{workload.name}'s full target trains past its threshold"
    if "as_written" in workload.variants:
        assert workload.variants["as_written"] == (False, True)   # the fixed model is the default
        assert notes.as_written.startswith("as_written=True")
    else:
        assert notes.as_written.startswith("None")


def assert_as_written_trains(workload: Workload, variant=None, *, batch_size: int = 8):
    """The as-written variant builds, and one training step runs and gives a finite loss."""
    model = workload.make(as_written=True, **(variant or {}))
    loss = train(workload, model, workload.example_batch(batch_size), steps=1)[0]
    assert loss == loss and abs(loss) < float("inf")
