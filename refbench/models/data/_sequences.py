"""Padded token sequences held as tensors, batched by length.

The text and seq2seq data sets are variable-length sequences padded with 0.
A ``SequenceSplit`` keeps them as a few named tensors whose first dimension
is the example; ``batches`` yields dicts of those tensors, grouping examples
of similar length so a batch computes little padding.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

PAD = 0


@dataclass
class SequenceSplit:
    """One split of a sequence data set.

    ``lengths`` stays on the host: it orders and trims batches without a
    device round trip. Tensors named in ``trim`` are cut along dimension 1 to
    the longest example of each batch.
    """

    tensors: dict[str, torch.Tensor]
    lengths: torch.Tensor
    dataset: str        # the data set really used, e.g. "synthetic-reverse"
    origin: str         # where it was found
    trim: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)   # vocabularies, sizes

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def to(self, device) -> "SequenceSplit":
        tensors = {name: t.to(device) for name, t in self.tensors.items()}
        return SequenceSplit(tensors, self.lengths, self.dataset, self.origin, self.trim, self.info)

    def take(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The examples at ``index`` (a host tensor) as a batch dict, trimmed to their longest."""
        longest = int(self.lengths[index].max())
        device_index = index.to(next(iter(self.tensors.values())).device)
        batch = {}
        for name, t in self.tensors.items():
            t = t[device_index]
            batch[name] = t[:, :longest] if name in self.trim else t
        return batch


def batches(split: SequenceSplit, batch_size: int, *, shuffle: bool = False,
            generator: torch.Generator | None = None, pool: int = 50) -> Iterator[dict[str, torch.Tensor]]:
    """Mini-batches of ``split``.

    Unshuffled, examples come sorted by length (evaluation: order does not
    matter, padding does). Shuffled, a random permutation is cut into pools
    of ``pool`` batches, each pool is sorted by length and cut into batches,
    and the batches are served in random order.
    """
    n = len(split)
    if not shuffle:
        order = torch.argsort(split.lengths, stable=True)
        for start in range(0, n, batch_size):
            yield split.take(order[start:start + batch_size])
        return
    order = torch.randperm(n, generator=generator)
    chunks = []
    for start in range(0, n, batch_size * pool):
        part = order[start:start + batch_size * pool]
        part = part[torch.argsort(split.lengths[part], stable=True)]
        chunks += list(part.split(batch_size))
    for i in torch.randperm(len(chunks), generator=generator).tolist():
        yield split.take(chunks[i])


def pad(sequences: list[list[int]], width: int | None = None, *, value: int = PAD) -> torch.Tensor:
    """A (N, width) long tensor of the sequences, cut to ``width`` and right-padded with ``value``."""
    width = width if width is not None else max((len(s) for s in sequences), default=0)
    lengths = torch.tensor([min(len(s), width) for s in sequences], dtype=torch.long)
    out = torch.full((len(sequences), width), value, dtype=torch.long)
    out[torch.arange(width) < lengths[:, None]] = torch.tensor(
        [x for s in sequences for x in s[:width]], dtype=torch.long)
    return out
