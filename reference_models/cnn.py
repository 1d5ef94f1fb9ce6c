"""Small convolutional networks for 28x28 grey images.

Document 003's ``CNNModel`` (``cnn_small``): conv 1->32 k3, pool, conv 32->64
k3, pool, fc 128, fc 10. Document 002's three-block network (``convnet3``):
conv 1->32->64->128, each 3x3 with padding 1 and followed by ReLU and 2x2 max
pooling, then a small classifier.
"""
from __future__ import annotations

from torch import nn

from reference_models._registry import register_model
from reference_models._workload import Recipe, Target, Workload

FASHION_NOTE = ("The document trains on MNIST; without MNIST on disk refbench uses Fashion-MNIST "
                "(same shapes) and every record names the data set used.")


def conv_block(in_channels: int, out_channels: int) -> list[nn.Module]:
    """3x3 convolution (padding 1, size kept), ReLU, 2x2 max pool (size halved, rounded down)."""
    return [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]


class ConvClassifier(nn.Module):
    """``conv_block`` for each width, then flatten -> fc ``hidden`` -> fc ``num_classes`` (logits)."""

    def __init__(self, widths: tuple[int, ...], *, in_channels: int = 1, image_size: int = 28,
                 hidden: int = 128, num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = []
        for width in widths:
            layers += conv_block(in_channels, width)
            in_channels, image_size = width, image_size // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * image_size * image_size, hidden), nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model
class CNNSmallWorkload(Workload):
    name = "cnn_small"
    source = "document 003: CNNModel (conv 32, conv 64, fc 128) on MNIST"
    kernel_sweep_layers = True
    recipes = {
        "document": Recipe(optimizer="adam", lr=1e-3, batch_size=64, epochs=10),
        "fast": Recipe(optimizer="adam", lr=2e-3, batch_size=128, epochs=10),
    }
    targets = {
        "quick": Target("accuracy", 0.87, recipe="fast", max_epochs=2, max_steps=600, wall_cap_s=600, eval_every_steps=200),
        "full": Target("accuracy", 0.91, recipe="fast", max_epochs=15),
    }
    notes = (
        "Convolutions are padded by 1 so the map is 64x7x7 after two pools and the first "
        "linear layer takes 3,136 inputs (421,642 parameters in all).",
        FASHION_NOTE,
    )

    def build(self) -> nn.Module:
        return ConvClassifier((32, 64))


@register_model
class ConvNet3Workload(Workload):
    name = "convnet3"
    source = "document 002: three conv blocks 32-64-128 (k3, pad 1, ReLU, max pool) on MNIST"
    kernel_sweep_layers = True
    recipes = {
        "document": Recipe(optimizer="adam", lr=1e-3, batch_size=64, epochs=10),
        "fast": Recipe(optimizer="adam", lr=2e-3, batch_size=128, epochs=10),
    }
    targets = {
        "quick": Target("accuracy", 0.87, recipe="fast", max_epochs=2, max_steps=600, wall_cap_s=450, eval_every_steps=200),
        "full": Target("accuracy", 0.92, recipe="fast", max_epochs=15),
    }
    notes = (
        "The document's flatten size does not match its layers: three 2x2 pools take 28 to "
        "14, 7 and 3 (floor), so the map is 128x3x3 and the first linear layer takes 1,152 "
        "inputs (241,546 parameters in all).",
        FASHION_NOTE,
    )

    def build(self) -> nn.Module:
        return ConvClassifier((32, 64, 128))
