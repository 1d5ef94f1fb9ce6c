"""Document 003: an image read as a sequence of rows by a recurrent network.

A 28x28 image is 28 time steps of 28 features; a two-layer RNN, LSTM or GRU
with 128 hidden units reads them, and a linear layer classifies the last
step's output. The three cells are three workloads: ``rnn_rows`` (the
document's nn.RNN), ``lstm_rows`` and ``gru_rows`` (refbench's additions).
"""
from __future__ import annotations

from torch import nn

from refbench.models._notes import CPU_CHECK, NO_RECIPE, Notes
from refbench.models._registry import register_model
from refbench.models._workload import Recipe, Target, Workload

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


ROWS = ("The document names no data set or sizes; refbench reads each 28x28 image as 28 time steps of 28 "
        "features (input_dim 28, output_dim 10) and trains and judges on Fashion-MNIST, whether or not MNIST "
        "is present; every record names the data set used.")

ROWS_SOURCE = ("Fashion-MNIST's benchmark table (github.com/zalandoresearch/fashion-mnist) lists a GRU read row "
               "by row, with an SVM on top, at 0.888 (0.897 with dropout); a plain RNN is asked less, 0.85; "
               "refbench's runs: reports/cpu/converge-full")

RNN_NOTES = Notes(
    document="003", section="2. 循环神经网络(Recurrent Neural Network)",
    says=(
        "`class RNNModel(nn.Module)` takes `input_dim, hidden_dim, layer_dim, output_dim`, runs "
        "`nn.RNN(input_dim, hidden_dim, layer_dim, batch_first=True)` from a zero initial state and feeds "
        "`out[:, -1, :]`, the last time step, to `nn.Linear(hidden_dim, output_dim)`.",
        "The initial state is `Variable(torch.zeros(self.layer_dim, x.size(0), self.hidden_dim)).cuda()`, on the "
        "GPU whether or not the model is (the check `if (next(self.parameters()).is_cuda):` comes after it), "
        "and Variable is not imported.",
        "No sizes, data set or recipe are given.",
    ),
    changed=(
        "nn.RNN starts from zeros on the input's device when given no initial state: the document's model "
        "without the .cuda() call, which is the default.",
    ),
    substituted=(ROWS,),
    own_choices=("hidden_dim 128 and layer_dim 2 are refbench's.", NO_RECIPE,
                 "'reference' (Adam, lr 1e-3, batch 64, 10 epochs) and 'fast' (Adam, batch 128) are refbench's; "
                 "the quick target uses 'fast'."),
    as_written=("None: as written the model is the default (zero initial state, top layer's last step "
                "classified); only its .cuda() call had to go."),
)


class RowRNNWorkload(Workload):
    cell: str
    source = "document 003 section 2: RNNModel, 28 rows of 28 features, hidden 128, last step classified"
    dataset = "fashion-mnist"
    recipes = {
        "reference": Recipe(optimizer="adam", lr=1e-3, batch_size=64, epochs=10, source="refbench's"),
        "fast": Recipe(optimizer="adam", lr=2e-3, batch_size=128, epochs=15, source="refbench's"),
    }
    notes = RNN_NOTES

    def build(self) -> nn.Module:
        return RowRNN(self.cell)


def with_cell(cell: str) -> Notes:
    """The RNN's notes for a workload that swaps in another recurrent cell."""
    return RNN_NOTES.adding(
        changed=(f"{cell}_rows is refbench's addition: the document's model with nn.{cell.upper()} in place of "
                 f"nn.RNN; the document shows only nn.RNN.",),
        own_choices=("'fast' is Adam at lr 2e-3, the quickest refbench knows for it, and the full target uses it "
                     "too.",),
        as_written="None: the document has no LSTM or GRU.")


@register_model
class RNNRowsWorkload(RowRNNWorkload):
    name, cell = "rnn_rows", "rnn"
    notes = RNN_NOTES.adding(own_choices=(
        "The full target trains with 'full', Adam at lr 5e-4: at 'fast''s 1e-3 the plain RNN's training loss "
        "jumps back twice in 20 epochs (0.53 to 0.65 at epoch 5, 0.42 to 0.46 at epoch 15) and its test "
        "accuracy reaches 0.85 only at epoch 18 and ends at 0.849; at 5e-4 the loss falls steadily and 0.85 "
        "comes at epoch 10 (refbench's runs). 'fast' is Adam at lr 1e-3.",))
    recipes = {**RowRNNWorkload.recipes,
               "fast": Recipe(optimizer="adam", lr=1e-3, batch_size=128, epochs=20, source="refbench's"),
               "full": Recipe(optimizer="adam", lr=5e-4, batch_size=128, epochs=20,
                              source="refbench's: fast at half the learning rate, for a plain RNN's loss spikes "
                                     "at 1e-3")}
    targets = {
        "quick": Target("accuracy", 0.70, recipe="fast", max_epochs=1, wall_cap_s=150, eval_every_steps=100,
                        source=CPU_CHECK),
        "full": Target("accuracy", 0.85, recipe="full", max_epochs=20, stop_at_target=True,
                       source=ROWS_SOURCE),
    }


@register_model
class LSTMRowsWorkload(RowRNNWorkload):
    name, cell = "lstm_rows", "lstm"
    notes = with_cell("lstm")
    targets = {
        "quick": Target("accuracy", 0.80, recipe="fast", max_epochs=1, wall_cap_s=200, eval_every_steps=100,
                        source=CPU_CHECK),
        "full": Target("accuracy", 0.88, recipe="fast", max_epochs=15, stop_at_target=True, source=ROWS_SOURCE),
    }


@register_model
class GRURowsWorkload(RowRNNWorkload):
    name, cell = "gru_rows", "gru"
    notes = with_cell("gru")
    targets = {
        "quick": Target("accuracy", 0.80, recipe="fast", max_epochs=1, max_steps=400, wall_cap_s=200,
                        eval_every_steps=100, source=CPU_CHECK),
        "full": Target("accuracy", 0.88, recipe="fast", max_epochs=15, stop_at_target=True, source=ROWS_SOURCE),
    }
