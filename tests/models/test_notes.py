"""Every workload's notes: present, in one form, and true of the documents they quote.

The quote checks need the source documents, which are not part of the
repository: they are found in ``$REFBENCH_DOCUMENTS`` (CI's .ci/run sets it
to ``../shared/documents`` when that folder exists) or a ``shared/documents``
folder beside or above the checkout, and skipped (with that reason) on a
clean clone. A ``$REFBENCH_DOCUMENTS`` that is not a folder of the documents
fails: whoever set it meant the check to run.
"""
import os
import re
from pathlib import Path

import pytest

from refbench.models import Notes, get_workload, list_models

DOCUMENTS_ENV = "REFBENCH_DOCUMENTS"
QUOTE = re.compile(r"`([^`]+)`")
REPOSITORY = Path(__file__).resolve().parents[2]


def documents_dir() -> Path | None:
    """``$REFBENCH_DOCUMENTS``, else the first ``shared/documents`` in the checkout or a folder above it."""
    if os.environ.get(DOCUMENTS_ENV):
        return Path(os.environ[DOCUMENTS_ENV])
    return next((d / "shared" / "documents" for d in [REPOSITORY, *REPOSITORY.parents]
                 if (d / "shared" / "documents").is_dir()), None)


@pytest.fixture(scope="module")
def documents() -> dict[str, str]:
    """Document number ("000".."004") -> its text."""
    folder = documents_dir()
    if os.environ.get(DOCUMENTS_ENV) and not sorted(folder.glob("00*_*.txt")):
        pytest.fail(f"{DOCUMENTS_ENV}={folder} holds no source documents (000_*.txt ... 004_*.txt)")
    if folder is None or not folder.is_dir():
        pytest.skip(f"the source documents are not in this checkout; set {DOCUMENTS_ENV} to their folder "
                    f"(shared/documents) to check the notes' quotes")
    return {path.name.split("_")[0]: path.read_text(encoding="utf-8") for path in sorted(folder.glob("00*_*.txt"))}


def squash(text: str) -> str:
    return " ".join(text.split())


def quotes(notes: Notes) -> list[str]:
    """The verbatim spans the notes claim: the section heading and every backticked span of ``says``."""
    return [notes.section, *(span for sentence in notes.says for span in QUOTE.findall(sentence))]


def missing_quotes(notes: Notes, text: str) -> list[str]:
    """The claimed spans that ``text`` does not contain (whitespace aside)."""
    body = squash(text)
    return [span for span in quotes(notes) if squash(span) not in body]


NAMES = list_models(exclude="test_*")   # not the harness tests' own workloads


@pytest.mark.parametrize("name", NAMES)
def test_quoted_text_is_in_the_document(name, documents):
    notes = get_workload(name).notes
    assert notes.document in documents, f"no document {notes.document} in {documents_dir()}"
    assert missing_quotes(notes, documents[notes.document]) == []


@pytest.mark.parametrize("name", NAMES)
def test_only_documents_that_name_mnist_are_said_to_train_on_it(name, documents):
    notes = get_workload(name).notes
    claims = [s for sentences in notes.fields().values() for s in sentences if "document trains on MNIST" in s]
    assert not claims or "MNIST" in documents[notes.document]


def test_a_misquote_is_caught():
    text = "self.fc1 = torch.nn.Linear(784, 128)\n    self.fc2 = torch.nn.Linear(128, 64)\n# 5.代码实现"
    notes = Notes(document="004", section="5.代码实现",
                  says=("It has `torch.nn.Linear(784,   128)` and `torch.nn.Linear(128, 128)`.",))
    assert missing_quotes(notes, text) == ["torch.nn.Linear(128, 128)"]
    assert missing_quotes(Notes(document="004", section="6.结论", says=()), text) == ["6.结论"]


def test_issue_claims_are_quoted_from_the_code():
    """The differences the documents' code really has, as the notes quote them (checked above against the text)."""
    def quoted(name):
        return quotes(get_workload(name).notes)

    assert {"nn.Linear(in_features=25088, out_features=4096)", "return F.softmax(x, dim=-1)",
            "random_split(dataset, [40000, 10000])"} <= set(quoted("vgg16_cifar"))
    assert {"return self.softmax(out)", "criterion = torch.nn.CrossEntropyLoss()"} <= set(quoted("mlp"))
    assert not any("softmax" in span.lower() for span in quoted("lenet5"))   # document 000 has none
    assert {"self.fc1 = torch.nn.Linear(7*7*16, 120)", "FlattenLayer()"} <= set(quoted("lenet5"))
    assert "nn.Linear(in_features=14 * 14 * 64, out_features=128)" in quoted("cnn_small")
    assert "optim.Adam(model.parameters(), lr=0.001)" in quoted("vgg16_transfer")
    assert {"num_classes = 4", "dropout_prob = 0.2"} <= set(quoted("pos_tagger"))
    assert "'n_estimators': [10, 50, 100]" in quoted("hpo_rf_wine")


def test_readme_table_lists_every_workload():
    """The README's table: one row per workload, its document and section, whether it has an as-written variant."""
    rows = {}
    for line in (REPOSITORY / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 4:
            rows[cells[0].strip("`")] = cells
    assert sorted(rows) == NAMES
    for name, (_, document, as_written, data_set) in rows.items():
        workload = get_workload(name)
        assert document.startswith(workload.notes.document), name
        assert as_written == ("yes" if "as_written" in workload.variants else "no"), name
        assert data_set, name
