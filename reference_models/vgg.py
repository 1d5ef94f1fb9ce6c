"""VGG16 on CIFAR-10: document 001's network (``vgg16_cifar``) and document 002's transfer learning.

Document 001 section 4.1, VGG16 for 3x32x32 CIFAR-10 images: thirteen 3x3
convolutions in five stages (64, 128, 256, 512, 512 channels), each stage
closed by a 2x2 max pool, then three fully connected layers. The document trains it with SGD (lr 0.01, momentum 0.9, batch 32). Its code has
two bugs, kept reproducible by the ``document_bugs=True`` variant so the
harness can show what they cost (see ``notes``).

Document 002 (``vgg16_transfer``): torchvision's VGG16 with its features
frozen and a new 10-class head.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torchvision.models import VGG16_Weights, vgg16

from reference_models._cifar import QUICK_WIDTH_NOTE, CifarWorkload
from reference_models._errors import RefbenchError
from reference_models._registry import register_model
from reference_models._workload import Recipe, Target

VGG16_STAGES = ((1, 1), (2, 2), (4, 4, 4), (8, 8, 8), (8, 8, 8))   # channels in multiples of the width (64)


def vgg16_features(width: int = 64, in_channels: int = 3) -> nn.Sequential:
    layers: list[nn.Module] = []
    for stage in VGG16_STAGES:
        for multiple in stage:
            out_channels = multiple * width
            layers += [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
                       nn.BatchNorm2d(out_channels), nn.ReLU()]
            in_channels = out_channels
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class VGG16(nn.Module):
    """VGG16-BN for 32x32 images; ``width`` 64 is VGG16, smaller widths scale every layer alike."""

    def __init__(self, *, width: int = 64, num_classes: int = 10, softmax_output: bool = False):
        super().__init__()
        self.features = vgg16_features(width)
        channels, hidden = 8 * width, 64 * width          # 512 and 4096 at width 64
        layers: list[nn.Module] = [
            nn.Flatten(),
            nn.Linear(channels * 1 * 1, hidden), nn.ReLU(), nn.Dropout(),   # 32 / 2**5 = 1: the map is 512x1x1
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(),
            nn.Linear(hidden, num_classes),
        ]
        if softmax_output:
            layers.append(nn.Softmax(dim=1))  # the document's bug: CrossEntropyLoss applies log-softmax again
        self.classifier = nn.Sequential(*layers)

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model
class VGG16CifarWorkload(CifarWorkload):
    name = "vgg16_cifar"
    source = "document 001 section 4.1: VGG16 on CIFAR-10, SGD lr 0.01 momentum 0.9, batch 32"
    kernel_sweep_layers = True
    variants = {"document_bugs": (False, True), "width": (64, 16)}
    recipes = {
        "document": Recipe(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=32, epochs=30),
        "fast": Recipe(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=128, epochs=30),
    }
    targets = {
        "quick": Target("accuracy", 0.90, recipe="fast", dataset="synthetic-cifar10", max_epochs=1,
                        max_steps=40, wall_cap_s=180, eval_every_steps=10, variant={"width": 16}),
        "full": Target("accuracy", 0.88, recipe="document", max_epochs=30),
    }
    notes = (
        "The document's first linear layer is Linear(25088, 4096), torchvision's size for "
        "224x224 inputs (512x7x7); five 2x2 pools take 32x32 to 1x1, so the map is 512x1x1 "
        "and the layer takes 512 inputs. Linear(25088, ...) cannot run on 32x32 input at all, "
        "so the document_bugs=True variant keeps 512.",
        "The document ends forward with a softmax and then trains with nn.CrossEntropyLoss, "
        "which applies log-softmax again (a double softmax that flattens the gradients); "
        "forward returns logits here, and document_bugs=True keeps the softmax.",
        "Every convolution is followed by BatchNorm and ReLU (the VGG16-BN layout).",
        QUICK_WIDTH_NOTE,
        "Real CIFAR-10 is trained with random 4-pixel crops and horizontal flips.",
    )

    def build(self, *, document_bugs: bool, width: int) -> nn.Module:
        return VGG16(width=width, softmax_output=document_bugs)


# ----- document 002: transfer learning from torchvision's VGG16 -----

WEIGHTS_ENV = "REFBENCH_VGG16_WEIGHTS"


def pretrained_vgg16_file() -> Path | None:
    """ImageNet VGG16 weights on local disk: ``$REFBENCH_VGG16_WEIGHTS``, else torchvision's cache, else None."""
    if os.environ.get(WEIGHTS_ENV):
        path = Path(os.environ[WEIGHTS_ENV])
        if not path.is_file():
            raise RefbenchError(f"{WEIGHTS_ENV}={path} is not a file; point it at torchvision's vgg16 "
                                f"state dict or unset it to start from random weights")
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG16_Weights.IMAGENET1K_V1.url).name
    return cached if cached.is_file() else None


class VGG16Transfer(nn.Module):
    """torchvision's VGG16 with frozen features and a new ``num_classes`` head.

    ImageNet weights are loaded when on disk; ``weights`` says where the
    backbone came from. ``image_size`` above 32 upsamples the input first,
    as transfer learning from 224x224 ImageNet features usually does.
    """

    def __init__(self, *, image_size: int = 32, num_classes: int = 10):
        super().__init__()
        self.resize = nn.Upsample(size=(image_size, image_size), mode="bilinear") if image_size != 32 else nn.Identity()
        self.backbone = vgg16(weights=None)
        path = pretrained_vgg16_file()
        if path is None:
            self.weights = "random init (no ImageNet VGG16 weights on disk)"
        else:
            if not next(self.backbone.parameters()).is_meta:  # `refbench list` builds on meta: shapes only
                self.backbone.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            self.weights = f"ImageNet ({path})"
        self.backbone.features.requires_grad_(False)
        self.backbone.classifier[-1] = nn.Linear(self.backbone.classifier[-1].in_features, num_classes)

    def forward(self, x):
        return self.backbone(self.resize(x))


@register_model
class VGG16TransferWorkload(CifarWorkload):
    name = "vgg16_transfer"
    source = "document 002: pretrained torchvision VGG16, frozen features, new 10-class head, on CIFAR-10"
    variants = {"image_size": (32, 224)}
    recipes = {
        "document": Recipe(optimizer="sgd", lr=1e-3, momentum=0.9, batch_size=32, epochs=10),
        "fast": Recipe(optimizer="adam", lr=1e-4, batch_size=128, epochs=10),
    }
    targets = {
        "quick": Target("accuracy", 0.30, recipe="fast", dataset="synthetic-cifar10", max_epochs=1,
                        wall_cap_s=600, eval_every_steps=25),
        "full": Target("accuracy", 0.85, recipe="fast", max_epochs=10, variant={"image_size": 224}),
    }
    notes = (
        "The document downloads ImageNet weights (weights='IMAGENET1K_V1'), which needs a network. "
        f"refbench loads them from ${WEIGHTS_ENV} or torchvision's cache "
        "(torch.hub checkpoints/vgg16-397923af.pth) when present and otherwise starts from "
        "random weights; the model's `weights` attribute, and so the record, says which. "
        "The full target assumes ImageNet weights.",
        "At 32x32 (the default, for throughput) torchvision's adaptive average pool turns the "
        "512x1x1 map into 512x7x7, so the 25088-input classifier applies unchanged; "
        "image_size=224 upsamples first, as ImageNet features need, and the full target uses it. "
        "Inputs are normalised with CIFAR-10's statistics, close to ImageNet's.",
        "Only the convolutional features are frozen; the classifier's two hidden layers train "
        "with the new head (119,586,826 trainable parameters).",
        "Without ImageNet weights the frozen random features carry little of the synthetic task's "
        "class patterns, so the quick (CPU) target only asks for clearly better than chance (30%) "
        "and takes minutes: one evaluation is 2,000 images through VGG16.",
    )

    def build(self, *, image_size: int) -> nn.Module:
        return VGG16Transfer(image_size=image_size)

    def provenance(self, model: VGG16Transfer) -> dict[str, str]:
        return {"weights": model.weights}
