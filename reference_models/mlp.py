"""Document 004: a multi-layer perceptron for 28x28 digit images.

784 -> 128 -> 64 -> 10 with ReLU, trained with SGD (lr 0.001, momentum 0.9,
batch 64, 10 epochs) and cross-entropy.
"""
from __future__ import annotations

from torch import nn

from reference_models._registry import register_model
from reference_models._workload import Recipe, Target, Workload


class MLP(nn.Module):
    def __init__(self, *, in_features: int = 28 * 28, hidden: tuple[int, ...] = (128, 64), num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.ReLU()]
            in_features = width
        layers.append(nn.Linear(in_features, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


@register_model
class MLPWorkload(Workload):
    name = "mlp"
    source = "document 004: MLP 784-128-64-10 on MNIST"
    recipes = {
        "document": Recipe(optimizer="sgd", lr=1e-3, momentum=0.9, batch_size=64, epochs=10),
        "fast": Recipe(optimizer="adam", lr=1e-3, batch_size=128, epochs=10),
    }
    targets = {
        "quick": Target("accuracy", 0.84, recipe="fast", max_epochs=2, wall_cap_s=120, eval_every_steps=100),
        "full": Target("accuracy", 0.88, recipe="fast", max_epochs=20),
    }
    notes = (
        "The document trains on MNIST; without MNIST on disk refbench uses Fashion-MNIST "
        "(same shapes) and every record names the data set used.",
    )

    def build(self) -> nn.Module:
        return MLP()
