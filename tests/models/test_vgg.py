import pytest
import torch
import torchvision

from refbench.run.convergence import converge
from refbench.models import count_parameters, get_workload
from refbench.errors import RefbenchError
from refbench.models import vgg
from tests.models import workload_checks as checks

CLASSIFIER_32 = 512 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 10 + 10   # flatten of 512x1x1
BATCH_NORM = 2 * (2 * 64 + 2 * 128 + 3 * 256 + 6 * 512)                   # weight and bias per channel


def meta_parameters(build) -> int:
    """Parameters of the module ``build()`` makes, counted on the meta device (no memory, no init)."""
    with torch.device("meta"):
        return count_parameters(build())


def test_vgg16_cifar_parameter_count():
    features = meta_parameters(lambda: torchvision.models.vgg16_bn().features)
    assert features == meta_parameters(lambda: torchvision.models.vgg16().features) + BATCH_NORM
    model = meta_parameters(lambda: get_workload("vgg16_cifar").make())
    assert model == features + CLASSIFIER_32 == 33_646_666


def test_as_written_is_the_documents_six_convolutions():
    """64-128-256-256-512-512, no BatchNorm, four pools, 512x2x2 = 2,048 into the first linear layer, softmax out."""
    model = get_workload("vgg16_cifar").make(as_written=True)
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 256, 512, 512]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.features)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.features) == 4
    assert model.features(torch.randn(1, 3, 32, 32)).shape == (1, 512, 2, 2)
    assert model.classifier[1].in_features == 2048 and isinstance(model.classifier[-1], torch.nn.Softmax)
    convolutions = sum(c.weight.numel() + c.bias.numel() for c in convs)
    classifier = 2048 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 10 + 10
    assert count_parameters(model) == convolutions + classifier == 29_715_850


def test_quick_width_scales_every_layer():
    """Width 16: channels 16..128 and a 1024-unit classifier, about 1/16 of the parameters."""
    model = get_workload("vgg16_cifar").make(width=16)
    convs = [m.out_channels for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert convs == [16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 128]
    assert model.classifier[1].in_features == 128 and model.classifier[1].out_features == 1024


def test_vgg16_cifar_flattens_512_features_of_a_32x32_image():
    model = get_workload("vgg16_cifar").make().eval()
    x = torch.randn(2, 3, 32, 32)
    assert model.features(x).shape == (2, 512, 1, 1)
    assert model(x).shape == (2, 10)


def test_as_written_outputs_probabilities():
    workload = get_workload("vgg16_cifar")
    batch = workload.example_batch(3)
    as_written = workload.eval_step(workload.make(as_written=True, width=16).eval(), batch)
    fixed = workload.eval_step(workload.make(width=16).eval(), batch)
    assert torch.allclose(as_written.sum(1), torch.ones(3)) and (as_written >= 0).all()
    assert not torch.allclose(fixed.sum(1), torch.ones(3))


def test_as_written_at_the_quick_width():
    """Width 16 scales the document's network as the default: channels 16..128, 512 flattened, 1,024 hidden."""
    model = get_workload("vgg16_cifar").make(as_written=True, width=16)
    assert [m.out_channels for m in model.features if isinstance(m, torch.nn.Conv2d)] == [16, 32, 64, 64, 128, 128]
    assert model.classifier[1].in_features == 512 and model.classifier[1].out_features == 1024
    checks.assert_as_written_trains(get_workload("vgg16_cifar"), {"width": 16}, batch_size=4)


def test_document_recipe_is_the_documents():
    recipe = get_workload("vgg16_cifar").recipe("document")
    assert (recipe.optimizer, recipe.lr, recipe.momentum, recipe.batch_size, recipe.epochs, recipe.normalize,
            recipe.augment) == ("sgd", 0.01, 0.9, 32, 10, "half", False)


def test_vgg16_cifar_training_steps_lower_the_loss():
    checks.assert_steps_lower_the_loss(get_workload("vgg16_cifar"), batch_size=8)


def test_vgg16_cifar_same_seed_same_losses():
    checks.assert_same_seed_same_losses(get_workload("vgg16_cifar"), {"as_written": True, "width": 16}, batch_size=4)


@pytest.fixture(scope="module")
def transfer_model():
    torch.manual_seed(0)
    return get_workload("vgg16_transfer").make()


def test_vgg16_transfer_parameters_are_torchvisions_with_a_10_class_head(transfer_model):
    assert count_parameters(transfer_model) == meta_parameters(lambda: torchvision.models.vgg16(num_classes=10))
    frozen = meta_parameters(lambda: torchvision.models.vgg16().features)
    assert count_parameters(transfer_model, trainable_only=True) == count_parameters(transfer_model) - frozen
    assert not any(p.requires_grad for p in transfer_model.backbone.features.parameters())


def test_vgg16_transfer_says_where_its_weights_came_from(transfer_model):
    found = vgg.pretrained_vgg16_file()
    assert transfer_model.weights == (f"ImageNet ({found})" if found else "random init (no ImageNet VGG16 weights on disk)")
    assert any("weights" in note for note in get_workload("vgg16_transfer").notes.substituted)
    assert get_workload("vgg16_transfer").provenance(transfer_model) == {"weights": transfer_model.weights}


def test_vgg16_transfer_trains_only_its_classifier(transfer_model):
    workload = get_workload("vgg16_transfer")
    batch = workload.example_batch(4)
    features_before = [p.clone() for p in transfer_model.backbone.features.parameters()]
    head_before = transfer_model.backbone.classifier[-1].weight.clone()
    transfer_model.eval()
    loss_before = workload.loss(transfer_model, batch).item()
    transfer_model.train()
    checks.train(workload, transfer_model, batch, steps=2, recipe="document")
    transfer_model.eval()
    assert workload.loss(transfer_model, batch).item() < loss_before
    assert all(torch.equal(a, b) for a, b in zip(features_before, transfer_model.backbone.features.parameters()))
    assert not torch.equal(head_before, transfer_model.backbone.classifier[-1].weight)
    assert workload.eval_step(transfer_model, batch).shape == (4, 10)


def test_transfer_as_written_trains_everything_through_the_1000_class_output():
    with torch.device("meta"):
        model = get_workload("vgg16_transfer").make(as_written=True)
    assert model.backbone.classifier[-1].out_features == 1000
    assert (model.head.in_features, model.head.out_features) == (1000, 10)
    assert count_parameters(model, trainable_only=True) == count_parameters(model) == 138_357_544 + 10_010
    recipe = get_workload("vgg16_transfer").recipe("document")
    assert (recipe.optimizer, recipe.lr) == ("adam", 1e-3)


def test_weights_file_from_the_environment_is_loaded(tmp_path, monkeypatch):
    """Whatever state dict the file holds ends up in the backbone, and the model names the file."""
    path = tmp_path / "vgg16.pth"
    path.touch()
    monkeypatch.setenv(vgg.WEIGHTS_ENV, str(path))
    with torch.device("meta"):
        shapes = torchvision.models.vgg16().state_dict()
    loaded = []
    monkeypatch.setattr(torch, "load", lambda p, **kw: loaded.append(p) or
                        {k: torch.full(v.shape, 0.5) for k, v in shapes.items()})
    model = vgg.VGG16Transfer()
    assert loaded == [path] and model.weights == f"ImageNet ({path})"
    assert (model.backbone.features[0].weight == 0.5).all()
    assert model.backbone.classifier[-1].out_features == 10


def test_torchvision_cache_is_found_and_a_missing_env_file_is_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv(vgg.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert vgg.pretrained_vgg16_file() is None
    cached = tmp_path / "checkpoints" / "vgg16-397923af.pth"
    cached.parent.mkdir()
    cached.touch()
    assert vgg.pretrained_vgg16_file() == cached
    monkeypatch.setenv(vgg.WEIGHTS_ENV, str(tmp_path / "missing.pth"))
    with pytest.raises(RefbenchError, match="is not a file"):
        vgg.pretrained_vgg16_file()


@pytest.mark.convergence
@pytest.mark.parametrize("name", [
    "vgg16_cifar",
    pytest.param("vgg16_transfer", marks=pytest.mark.slow),  # minutes on CPU: VGG16 at full width
])
def test_quick_target_on_synthetic_cifar(name):
    result = converge(get_workload(name), "quick")
    assert result.dataset == "synthetic-cifar10"
    assert result.reached
