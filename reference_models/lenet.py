"""Document 000: LeNet-5 on 28x28 digit images.

conv 6@5x5 (padding 2) -> pool -> conv 16@5x5 -> pool -> fc 120 -> fc 84 -> fc 10,
with the activation as a variant (relu, sigmoid, tanh). The document trains
with Adam (lr 0.01, batch 128, 20 epochs) and also shows SGD with momentum 0.9.
"""
from __future__ import annotations

from torch import nn

from reference_models._registry import register_model
from reference_models._workload import Recipe, Target, Workload

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


class LeNet5(nn.Module):
    def __init__(self, *, activation: str = "relu", in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        act = ACTIVATIONS[activation]
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=2), act(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5), act(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), act(),
            nn.Linear(120, 84), act(),
            nn.Linear(84, num_classes),  # logits: CrossEntropyLoss applies log-softmax itself
        )

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model
class LeNet5Workload(Workload):
    name = "lenet5"
    source = "document 000: LeNet-5 on MNIST"
    kernel_sweep_layers = True
    variants = {"activation": ("relu", "sigmoid", "tanh")}
    recipes = {
        "document": Recipe(optimizer="adam", lr=1e-2, batch_size=128, epochs=20),
        "document-sgd": Recipe(optimizer="sgd", lr=1e-2, momentum=0.9, batch_size=128, epochs=20),
        "fast": Recipe(optimizer="adam", lr=2e-3, batch_size=128, epochs=10),
    }
    targets = {
        "quick": Target("accuracy", 0.85, recipe="fast", max_epochs=2, wall_cap_s=300, eval_every_steps=200),
        "full": Target("accuracy", 0.89, recipe="fast", max_epochs=20),
    }
    notes = (
        "The document applies softmax at the end of forward and then trains with "
        "nn.CrossEntropyLoss, which applies log-softmax again (a double softmax that "
        "flattens the gradients); here forward returns logits.",
        "The document's flatten size does not match the feature map its layers produce; "
        "with conv1 padded by 2 the map is 16x5x5, so the first linear layer takes 400 inputs "
        "(61,706 parameters in all).",
        "Pooling is max pooling for every activation.",
        "The document trains on MNIST; without MNIST on disk refbench uses Fashion-MNIST "
        "(same shapes) and every record names the data set used.",
    )

    def build(self, *, activation: str) -> nn.Module:
        return LeNet5(activation=activation)
