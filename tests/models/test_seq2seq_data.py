import pytest
import torch

from refbench.errors import RefbenchError
from refbench.models.data import describe_sources, seq2seq
from refbench.models.data._sequences import batches


def answers(split):
    """Each example's target without begin, end and padding, and its source digits."""
    for src, tgt in zip(split["src"].tolist(), split["tgt"].tolist()):
        digits = [t for t in src if t]
        assert tgt[0] == seq2seq.BOS and tgt[len(digits) + 1] == seq2seq.EOS
        assert all(t == seq2seq.PAD for t in tgt[len(digits) + 2:])
        yield digits, tgt[1:len(digits) + 1]


@pytest.mark.parametrize("task, rule", [("copy", list), ("reverse", lambda d: d[::-1]), ("sort", sorted)])
def test_targets_follow_the_task(task, rule):
    for digits, answer in answers(seq2seq.load(task, "test")):
        assert answer == rule(digits)


def test_shapes_lengths_and_vocabulary():
    train = seq2seq.load("reverse", "train")
    assert len(train) == seq2seq.SIZES["train"] and train.dataset == "synthetic-reverse"
    assert train["src"].shape == (50_000, 10) and train["tgt"].shape == (50_000, 12)
    assert train.lengths.min() == seq2seq.MIN_LEN and train.lengths.max() == seq2seq.MAX_LEN
    assert torch.equal(train.lengths, (train["src"] != seq2seq.PAD).sum(1))
    assert train["src"][train["src"] != 0].min() >= seq2seq.FIRST_DIGIT
    assert train["tgt"].max() < seq2seq.VOCAB_SIZE


def test_generation_is_deterministic_and_test_strings_are_held_out():
    a, b = seq2seq.load.__wrapped__("reverse", "train"), seq2seq.load.__wrapped__("reverse", "train")
    assert torch.equal(a["src"], b["src"]) and torch.equal(a["tgt"], b["tgt"])
    test = seq2seq.load("reverse", "test")
    seen = set(map(tuple, a["src"].tolist()))
    assert not seen & set(map(tuple, test["src"].tolist()))
    assert not torch.equal(seq2seq.load.__wrapped__("reverse", "train", seed=1)["src"], a["src"])


def test_bad_task_or_split_is_a_clear_error():
    with pytest.raises(RefbenchError, match="unknown seq2seq task 'rotate'; use copy, reverse, sort"):
        seq2seq.load("rotate", "train")
    with pytest.raises(RefbenchError, match="unknown split 'val'"):
        seq2seq.load("copy", "val")


def test_batches_cover_every_example_once_and_trim_to_the_longest():
    split = seq2seq.load("sort", "test")
    split.trim = ("src",)
    seen = []
    for batch in batches(split, 64, shuffle=True, generator=torch.Generator().manual_seed(0), pool=4):
        assert (batch["src"][:, -1] != seq2seq.PAD).any()  # trimmed: the last column holds a digit
        seen += batch["tgt"].tolist()
    assert sorted(seen) == sorted(split["tgt"].tolist())


def test_the_tasks_are_listed_as_data_sources():
    rows = {row["name"]: row for row in describe_sources()}
    assert rows["synthetic-reverse"]["status"] == "found"
    assert rows["synthetic-sort"]["size"] == {"train": 50_000, "test": 1_000}
