"""The local executor: each item in this process, one after another, in the order given."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

from refbench.run.executors import Lost, Needs, last


class LocalExecutor:
    remote = False

    def where(self) -> str:
        return "this machine"

    def cuda_available(self) -> bool:
        import torch

        return torch.cuda.is_available()

    def map(self, function: Callable[[Any], Iterator[Any]], items: Iterable[Any], *,
            needs: Callable[[Any], Needs | None], lost: Callable[[Any, Lost], Any]) -> Iterator[tuple[Any, Any]]:
        """Lazily: the next item starts when the caller asks for its result, after it has kept the last one."""
        for item in items:
            yield item, last(function(item))
