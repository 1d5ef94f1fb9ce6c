"""docs/records.md is the schema and the metric table as they are."""
from pathlib import Path

from refbench.records import doc

DOC = Path(__file__).resolve().parents[2] / "docs" / "records.md"


def test_the_record_document_is_current():
    assert DOC.read_text(encoding="utf-8") == doc.markdown(), \
        "docs/records.md is behind the code: python -m refbench.records.doc > docs/records.md"
