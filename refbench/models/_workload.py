"""The Workload: everything model-specific, so the harness stays generic.

A workload file defines its ``nn.Module`` and a small ``Workload`` subclass
registered with ``@register_model``. The base class implements the common
case, image classification with cross-entropy; multi-network or sequence
workloads override the few methods that differ.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from refbench.models import data
from refbench.errors import RefbenchError
from refbench.models._notes import Notes


NORMALIZATIONS = ("dataset", "half", "none")


@dataclass(frozen=True)
class Recipe:
    """How to train: the optimizer and its settings, batch size, epochs and how the input is prepared.

    ``normalize`` and ``augment`` are None where the workload's own data
    handling applies (see ``Workload.load_data`` and ``train_batches``);
    ``source`` says where the values come from.
    """

    optimizer: str = "adam"          # sgd | adam | adamw
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 10
    momentum: float = 0.0
    weight_decay: float = 0.0
    normalize: str | None = None     # one of NORMALIZATIONS, for image sets
    augment: bool | None = None      # random crops and flips, for real CIFAR-10
    source: str = ""
    notes: str = ""


@dataclass(frozen=True)
class Target:
    """A metric a training run must reach within a budget of optimizer steps.

    The budget is ``max_epochs`` epochs, or ``max_steps`` steps when that comes
    first: counted in steps, a target means the same on a busy laptop and an
    idle GPU, and every backend and seed trains the same steps. Wall time is
    measured, not budgeted: ``wall_cap_s`` only ends a run that hangs or
    crawls (set generously: about 3x the wall time measured at one thread on
    a 2-core machine busy with other work, 10x or more an idle one's; None:
    no cap).

    ``source`` says where the threshold comes from (a paper, a measured
    baseline, a run of refbench's); a target is a promise, and a reader must
    be able to check it. ``stop_at_target`` ends training at the first
    evaluation that meets the threshold, so that a run's cost is its time to
    the target (the full targets); without it every seed and backend trains
    the whole budget, so their final metrics compare (the quick targets).
    """

    metric: str
    threshold: float
    recipe: str = "fast"
    split: str = "test"
    max_epochs: int = 10
    max_steps: int | None = None     # None: max_epochs whole epochs
    wall_cap_s: float | None = None  # a guard against hangs, not a budget
    dataset: str | None = None       # None: the workload's own data set
    variant: dict[str, Any] = field(default_factory=dict)
    higher_is_better: bool = True
    eval_every_steps: int | None = None   # also evaluate every N steps, not only per epoch
    source: str = ""                 # where the threshold comes from
    stop_at_target: bool = False     # end training once the threshold is met

    def __post_init__(self):
        for name in ("max_epochs", "max_steps", "eval_every_steps"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"Target.{name} must be a positive integer, got {value!r}")
        if self.wall_cap_s is not None and not self.wall_cap_s > 0:
            raise ValueError(f"Target.wall_cap_s must be positive, got {self.wall_cap_s!r}")

    def reached(self, value: float) -> bool:
        return value >= self.threshold if self.higher_is_better else value <= self.threshold


Batch = Any  # usually (inputs, labels); a workload's batches are its own business


class Workload:
    """Base class of every registered workload (TorchBench's ``Model`` is the anchor)."""

    name: ClassVar[str]
    source: ClassVar[str]             # document and section reproduced
    task: ClassVar[str] = "image-classification"
    dataset: ClassVar[str]            # what it trains on; MNIST is replaced by its stand-in when absent
    input_shape: ClassVar[tuple[int, ...]] = (1, 28, 28)
    num_classes: ClassVar[int] = 10
    variants: ClassVar[dict[str, tuple]] = {}      # option -> allowed values, first is default
    recipes: ClassVar[dict[str, Recipe]] = {}      # "document" (or "reference") and "fast"
    targets: ClassVar[dict[str, Target]] = {}      # "quick" (CPU) and "full" (GPU)
    notes: ClassVar[Notes | None] = None           # the workload next to its document

    # ----- what the harness needs to know, declared here so it never names a workload -----
    untimed_reason: ClassVar[str | None] = None    # why there is no train/infer step to time (None: there is)
    throughput_recipe: ClassVar[str] = "fast"      # the recipe whose optimizer the timed train step uses
    kernel_sweep_layers: ClassVar[bool] = False    # its Conv2d layers are shapes of the conv2d kernel sweep

    # ----- construction -----

    def resolve_variant(self, **variant: Any) -> dict[str, Any]:
        """Fill defaults and check every option against ``variants``."""
        unknown = sorted(set(variant) - set(self.variants))
        if unknown:
            raise RefbenchError(f"{self.name} has no option {', '.join(unknown)}; options: "
                                f"{', '.join(self.variants) or 'none'}")
        resolved = {}
        for option, allowed in self.variants.items():
            value = variant.get(option, allowed[0])
            if value not in allowed:
                raise RefbenchError(f"{self.name}: {option}={value!r} is not one of {list(allowed)}")
            resolved[option] = value
        return resolved

    def build(self, **variant: Any) -> nn.Module:
        raise NotImplementedError

    def make(self, **variant: Any) -> nn.Module:
        """``build`` after checking the variant; what the harness calls."""
        return self.build(**self.resolve_variant(**variant))

    def parameter_count(self, **variant: Any) -> int:
        """Parameters of the variant's model, counted on the meta device: shapes only, nothing initialised."""
        with torch.device("meta"), _NoInitialisation():
            return count_parameters(self.make(**variant))

    def provenance(self, model: nn.Module) -> dict[str, Any]:
        """What a result record should say about how ``model`` was made (e.g. which weights)."""
        return {}

    def recipe(self, name: str) -> Recipe:
        try:
            return self.recipes[name]
        except KeyError:
            raise RefbenchError(f"{self.name} has no recipe {name!r}; recipes: {', '.join(self.recipes)}") from None

    # ----- one step, for throughput -----

    def example_batch(self, batch_size: int, device="cpu", *, seed: int = 0) -> Batch:
        """A deterministic synthetic batch with the real shapes and dtypes."""
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(batch_size, *self.input_shape, generator=g)
        y = torch.randint(self.num_classes, (batch_size,), generator=g)
        return x.to(device), y.to(device)

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(batch[0])

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(self.forward(model, batch), batch[1])

    def eval_step(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        with torch.no_grad():
            return self.forward(model, batch)

    def configure_optimizer(self, model: nn.Module, recipe: Recipe, **extra: Any) -> torch.optim.Optimizer:
        """The recipe's optimizer; ``extra`` reaches its constructor (e.g. ``capturable=True``)."""
        params = [p for p in model.parameters() if p.requires_grad]
        if recipe.optimizer == "sgd":
            return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum,
                                   weight_decay=recipe.weight_decay, **extra)
        if recipe.optimizer in ("adam", "adamw"):
            cls = torch.optim.Adam if recipe.optimizer == "adam" else torch.optim.AdamW
            return cls(params, lr=recipe.lr, weight_decay=recipe.weight_decay, **extra)
        raise RefbenchError(f"unknown optimizer {recipe.optimizer!r}; use sgd, adam or adamw")

    def train_step(self, model: nn.Module, batch: Batch, optimizer, *,
                   scaler: torch.amp.GradScaler | None = None) -> torch.Tensor:
        """One optimisation step; returns the detached loss (no host sync)."""
        loss = self.loss(model, batch)
        backward_and_step(loss, optimizer, scaler)
        return loss.detach()

    # ----- training to a target -----

    def load_data(self, split: str, *, device="cpu", data_dir=None, dataset: str | None = None,
                  normalize: str | None = None):
        """The split to train or evaluate on; its ``dataset`` names what was really used.

        ``normalize`` (a recipe's): ``dataset`` (the default) subtracts the image
        set's per-channel mean and divides by its standard deviation; ``half``
        maps pixels from [0, 1] to [-1, 1], as ``transforms.Normalize((0.5,), (0.5,))``;
        ``none`` keeps ``transforms.ToTensor()``'s [0, 1]. Synthetic images are
        generated centred already; ``half`` rescales them alike.
        """
        normalize = normalize or "dataset"
        if normalize not in NORMALIZATIONS:
            raise RefbenchError(f"unknown normalisation {normalize!r}; use {', '.join(NORMALIZATIONS)}")
        loaded = data.load(dataset or self.dataset, split, data_dir=data_dir, device=device,
                           normalize=normalize == "dataset")
        if normalize == "half":
            loaded.x = loaded.x * 2 - 1
        return loaded

    def train_batches(self, split, batch_size: int, *, generator: torch.Generator) -> Iterator[Batch]:
        return data.batches(split, batch_size, shuffle=True, generator=generator)

    def evaluate(self, model: nn.Module, split, *, batch_size: int = 1000) -> dict[str, float]:
        """Metrics on a whole split; the base reports classification accuracy."""
        correct = 0
        with eval_mode(model), torch.no_grad():
            for batch in data.batches(split, batch_size):
                correct += (self.forward(model, batch).argmax(1) == batch[1]).sum().item()
        return {"accuracy": correct / len(split)}


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block, and back in the mode it had after it."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def backward_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                      scaler: torch.amp.GradScaler | None = None) -> None:
    """Clear the gradients, back-propagate ``loss`` and step, through ``scaler`` when given."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()


class _NoInitialisation(TorchFunctionMode):
    """Skips in-place initialisation of meta tensors (``normal_``, ``uniform_``, ...): on the meta device it
    computes nothing and costs torch's reference kernels (and the compiler stack they import)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        target = args[0] if args else kwargs.get("tensor")
        if name.endswith("_") and not name.endswith("__") and isinstance(target, torch.Tensor) and target.is_meta:
            return target
        return func(*args, **kwargs)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
