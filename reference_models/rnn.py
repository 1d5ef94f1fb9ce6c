"""Document 003: an image read as a sequence of rows by a recurrent network.

A 28x28 image is 28 time steps of 28 features; a two-layer RNN, LSTM or GRU
with 128 hidden units reads them, and a linear layer classifies the last
step's output. The three cells are three workloads: ``rnn_rows``,
``lstm_rows``, ``gru_rows``.
"""
from __future__ import annotations

from torch import nn

from reference_models._registry import register_model
from reference_models._workload import Recipe, Target, Workload
from reference_models.cnn import FASHION_NOTE

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RowRNN(nn.Module):
    def __init__(self, cell: str, *, rows: int = 28, features: int = 28, hidden: int = 128,
                 num_layers: int = 2, num_classes: int = 10):
        super().__init__()
        self.rows, self.features = rows, features
        self.rnn = CELLS[cell](features, hidden, num_layers=num_layers, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x):
        out, _ = self.rnn(x.reshape(-1, self.rows, self.features))  # (N, 1, 28, 28) -> (N, 28 rows, 28)
        return self.fc(out[:, -1])


class RowRNNWorkload(Workload):
    cell: str
    source = "document 003: RNNModel, 28 rows of 28 features, hidden 128, last step classified"
    recipes = {
        "document": Recipe(optimizer="adam", lr=1e-3, batch_size=64, epochs=10),
        "fast": Recipe(optimizer="adam", lr=2e-3, batch_size=128, epochs=15),
    }
    notes = (
        "The classifier reads the top layer's output at the last row; the hidden state starts "
        "at zero for every batch.",
        FASHION_NOTE,
    )

    def build(self) -> nn.Module:
        return RowRNN(self.cell)


@register_model
class RNNRowsWorkload(RowRNNWorkload):
    name, cell = "rnn_rows", "rnn"
    recipes = {**RowRNNWorkload.recipes, "fast": Recipe(optimizer="adam", lr=1e-3, batch_size=128, epochs=20)}
    targets = {
        "quick": Target("accuracy", 0.70, recipe="fast", max_epochs=1, wall_cap_s=150, eval_every_steps=100),
        "full": Target("accuracy", 0.85, recipe="fast", max_epochs=20),
    }


@register_model
class LSTMRowsWorkload(RowRNNWorkload):
    name, cell = "lstm_rows", "lstm"
    targets = {
        "quick": Target("accuracy", 0.80, recipe="fast", max_epochs=1, wall_cap_s=200, eval_every_steps=100),
        "full": Target("accuracy", 0.88, recipe="fast", max_epochs=15),
    }


@register_model
class GRURowsWorkload(RowRNNWorkload):
    name, cell = "gru_rows", "gru"
    targets = {
        "quick": Target("accuracy", 0.80, recipe="fast", max_epochs=1, max_steps=400, wall_cap_s=200, eval_every_steps=100),
        "full": Target("accuracy", 0.88, recipe="fast", max_epochs=15),
    }
