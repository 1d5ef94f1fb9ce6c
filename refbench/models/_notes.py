"""A workload next to its source document: what the document says and every difference.

Each workload declares one ``Notes``. ``says`` reports the document; any span
in backticks there is a verbatim quote of the document's text (whitespace
aside), which the tests check against the documents wherever they are on
disk. The other fields say what refbench did about it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Notes:
    document: str                      # the document's number, "000" to "004"
    section: str                       # the heading of its section, verbatim
    says: tuple[str, ...]              # what the document says (backticked spans are verbatim)
    changed: tuple[str, ...] = ()      # what refbench changed, and why
    substituted: tuple[str, ...] = ()  # data sets and weights used in place of the document's
    own_choices: tuple[str, ...] = ()  # what the document leaves open and refbench chose
    as_written: str = ""               # what as_written=True builds, or why there is no such variant

    def adding(self, *, as_written: str | None = None, **first: tuple[str, ...]) -> "Notes":
        """These notes with ``first`` sentences put before each named field's own (and ``as_written`` replaced)."""
        changes = {name: (*sentences, *getattr(self, name)) for name, sentences in first.items()}
        return dataclasses.replace(self, **changes, **({"as_written": as_written} if as_written else {}))

    def fields(self) -> dict[str, tuple[str, ...]]:
        """The notes' sentences by field, in reading order."""
        return {"says": self.says, "changed": self.changed, "substituted": self.substituted,
                "own_choices": self.own_choices, "as_written": (self.as_written,)}


def mnist_substitute(mnist_figure: str) -> str:
    """The substitution sentence of a workload whose document trains on MNIST; ``mnist_figure`` is its model's
    published MNIST figure, so a reader can see how much harder the stand-in is."""
    return ("The document trains on MNIST, which cannot be downloaded here; the quick and full targets train "
            "and judge on Fashion-MNIST (same shapes and splits, shipped with the system, and harder: "
            f"{mnist_figure}), and their thresholds are Fashion-MNIST figures. Runs without a target (refbench "
            "run on real data, sweep) use MNIST where it is present and Fashion-MNIST in its place; every record "
            "names the data set used.")


NO_DATA_SET = ("The document names no data set, and its code takes one-channel 28x28 images; refbench trains and "
               "judges on Fashion-MNIST, whether or not MNIST is present: it ships with the system, and it is hard "
               "enough for a target to tell a good recipe from a poor one (on MNIST such networks pass 99%); every "
               "record names the data set used.")
CPU_CHECK = ("refbench's: a CPU check of the training path within minutes, below the full target; not a claim "
             "about the model")
NO_RECIPE = ("The document gives no optimizer, learning rate, batch size or epochs for this model; the "
             "'reference' recipe is refbench's.")
