import pytest
import torch
import torchvision

from refbench.run.convergence import converge
from refbench.models import count_parameters, get_workload
from tests.models import workload_checks as checks


def test_parameter_count_is_torchvisions_resnet18_with_a_cifar_stem():
    with torch.device("meta"):
        ours = count_parameters(get_workload("resnet18_cifar").make())
        theirs = count_parameters(torchvision.models.resnet18(num_classes=10))
    assert ours == theirs - 64 * 3 * 7 * 7 + 64 * 3 * 3 * 3 == 11_173_962


def test_logits_and_full_resolution_first_stage():
    model = get_workload("resnet18_cifar").make().eval()
    x = torch.randn(2, 3, 32, 32)
    assert model.stem(x).shape == (2, 64, 32, 32)
    assert model(x).shape == (2, 10)


def test_projection_shortcut_only_where_the_shape_changes():
    model = get_workload("resnet18_cifar").make()
    projections = [isinstance(block.shortcut, torch.nn.Sequential) for block in model.stages]
    assert projections == [False, False, True, False, True, False, True, False]


def test_training_steps_lower_the_loss():
    checks.assert_steps_lower_the_loss(get_workload("resnet18_cifar"), batch_size=4)


def test_same_seed_same_losses():
    checks.assert_same_seed_same_losses(get_workload("resnet18_cifar"), {"width": 16}, batch_size=4)


def test_quick_width_scales_every_stage():
    model = get_workload("resnet18_cifar").make(width=16)
    assert [block.conv2.out_channels for block in model.stages] == [16, 16, 32, 32, 64, 64, 128, 128]


@pytest.mark.convergence
def test_quick_target_on_synthetic_cifar():
    result = converge(get_workload("resnet18_cifar"), "quick")
    assert result.dataset == "synthetic-cifar10"
    assert result.reached
