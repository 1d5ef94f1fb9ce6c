"""Deterministic synthetic sequence-to-sequence tasks on digit strings.

``copy``, ``reverse`` and ``sort`` a string of 2 to 10 digits. Tokens:
0 padding, 1 begin, 2 end, 3..12 the digits. A split holds ``src`` (N, 10),
the digits right-padded, and ``tgt`` (N, 12): begin, the answer, end,
padding. The test strings are held out: none of them occurs in training.
The same call gives the same data.
"""
from __future__ import annotations

import functools

import torch

from refbench.errors import RefbenchError
from refbench.models.data import register_source
from refbench.models.data._files import check_split
from refbench.models.data._sequences import PAD, SequenceSplit, pad

BOS, EOS, FIRST_DIGIT = 1, 2, 3
VOCAB_SIZE = FIRST_DIGIT + 10
MIN_LEN, MAX_LEN = 2, 10
TASKS = ("copy", "reverse", "sort")
SIZES = {"train": 50_000, "test": 1_000}

__all__ = ["BOS", "EOS", "PAD", "VOCAB_SIZE", "MAX_LEN", "TASKS", "SIZES", "answer", "load"]


def answer(task: str, digits: list[int]) -> list[int]:
    if task == "copy":
        return list(digits)
    if task == "reverse":
        return digits[::-1]
    if task == "sort":
        return sorted(digits)
    raise RefbenchError(f"unknown seq2seq task {task!r}; use {', '.join(TASKS)}")


def _strings(count: int, generator: torch.Generator, exclude: set[tuple[int, ...]]) -> list[tuple[int, ...]]:
    strings: list[tuple[int, ...]] = []
    while len(strings) < count:
        lengths = torch.randint(MIN_LEN, MAX_LEN + 1, (count,), generator=generator).tolist()
        digits = torch.randint(10, (count, MAX_LEN), generator=generator).tolist()
        strings += [s for s in (tuple(row[:n]) for row, n in zip(digits, lengths)) if s not in exclude]
    return strings[:count]


@functools.lru_cache(maxsize=8)
def load(task: str, split: str, *, seed: int = 0) -> SequenceSplit:
    """``split`` ("train" or "test") of ``task`` as a SequenceSplit named ``synthetic-<task>``."""
    answer(task, [])  # validates the task name
    check_split(split)
    test = _strings(SIZES["test"], torch.Generator().manual_seed(seed * 2 + 1), set())
    strings = test if split == "test" else _strings(SIZES["train"], torch.Generator().manual_seed(seed * 2), set(test))
    src = [[FIRST_DIGIT + d for d in s] for s in strings]
    tgt = [[BOS, *answer(task, s), EOS] for s in src]
    tensors = {"src": pad(src, MAX_LEN), "tgt": pad(tgt, MAX_LEN + 2)}
    lengths = torch.tensor([len(s) for s in strings])
    return SequenceSplit(tensors, lengths, f"synthetic-{task}", "generated")


for _task in TASKS:
    register_source(f"synthetic-{_task}", lambda data_dir: {"found": "generated", "size": dict(SIZES)})
