"""What a recipe says about the input: normalisation and augmentation, as the workloads apply them."""
import inspect

import pytest
import torch

from refbench.models import get_workload, list_models
from refbench.errors import RefbenchError
from refbench.models.data import TensorSplit


@pytest.mark.parametrize("normalize, low, high", [("half", -1.0, 1.0), ("none", 0.0, 1.0)])
def test_normalize_maps_pixels_as_the_documents_transforms(normalize, low, high, real_data):
    """``half`` is Normalize((0.5,), (0.5,)) after ToTensor(); ``none`` is ToTensor() alone."""
    split = real_data(get_workload("mlp").load_data, "test", normalize=normalize)
    assert (split.x.min().item(), split.x.max().item()) == (low, high)


def test_default_normalisation_is_the_data_sets_statistics(real_data):
    workload = get_workload("lenet5")
    default = real_data(workload.load_data, "test")
    assert torch.equal(default.x, workload.load_data("test", normalize="dataset").x)
    assert abs(default.x.mean().item()) < 0.05 and abs(default.x.std().item() - 1) < 0.05


def test_unknown_normalisation_is_a_clear_error():
    with pytest.raises(RefbenchError, match="unknown normalisation 'imagenet'; use dataset, half, none"):
        get_workload("mlp").load_data("test", normalize="imagenet")


@pytest.mark.parametrize("augment, changed", [(None, True), (True, True), (False, False)])
def test_cifar_augmentation_follows_the_recipe(augment, changed):
    """Real CIFAR-10 is cropped and flipped unless a recipe says augment=False (document 001's does not augment)."""
    x = torch.randn(64, 3, 32, 32)
    split = TensorSplit(x, torch.zeros(64, dtype=torch.long), "cifar10", "test")
    batch, _ = next(get_workload("vgg16_cifar").train_batches(
        split, 64, generator=torch.Generator().manual_seed(0), augment=augment))
    unshuffled = x[torch.randperm(64, generator=torch.Generator().manual_seed(0))]
    assert torch.equal(batch, unshuffled) != changed


@pytest.mark.parametrize("name", list_models(exclude="test_*"))
def test_recipes_set_only_what_their_workload_applies(name):
    """A recipe's normalize and augment must be options of the workload's load_data and train_batches."""
    workload = get_workload(name)
    for recipe in workload.recipes.values():
        if recipe.normalize is not None:
            assert "normalize" in inspect.signature(workload.load_data).parameters
        if recipe.augment is not None:
            assert "augment" in inspect.signature(workload.train_batches).parameters
