"""``converge --as-written``: the document's model beside the fixed one, under the target's recipe and the document's."""
from refbench.run.converge import Convergence, run_convergence
from tests.fixtures.convergence_workloads import AsWrittenBlobs, DocumentedBlobs, registered


def summaries(records):
    return [r for r in records if "seeds" in r["metrics"]]


def test_a_document_recipe_trains_both_models_again_under_it():
    with registered(DocumentedBlobs):
        groups = Convergence(workloads=["test_documented_blobs"], as_written=True, seeds=1).groups()
        records = run_convergence(Convergence(workloads=["test_documented_blobs"], as_written=True, seeds=2))
    assert [(g.asked["as_written"], g.recipe) for g in groups] == [
        (False, "fast"), (True, "fast"), (False, "document"), (True, "document")]
    assert [g.label() for g in groups][2:] == ["test_documented_blobs fixed (document) cpu",
                                                "test_documented_blobs as-written (document) cpu"]
    fixed_fast, written_fast, fixed_document, written_document = summaries(records)
    assert fixed_document["metrics"]["recipe_settings"]["lr"] == 0.5 and fixed_document["batch_size"] == 32
    for fixed, written in ((fixed_fast, written_fast), (fixed_document, written_document)):
        assert written["metrics"]["recipe"] == fixed["metrics"]["recipe"]
        cost = written["metrics"]["as_written"]     # each as-written group beside the fixed one of its recipe
        assert cost["fixed_mean"] == fixed["metrics"]["seeds"]["mean"]
        assert cost["mean"] == written["metrics"]["seeds"]["mean"]
    assert fixed_fast["metrics"]["seeds"]["values"] != fixed_document["metrics"]["seeds"]["values"]


def test_a_recipe_asked_for_is_the_only_one_and_no_document_recipe_means_the_target_s_alone():
    with registered(DocumentedBlobs, AsWrittenBlobs):
        asked = Convergence(workloads=["test_documented_blobs"], as_written=True, recipe="fast").groups()
        plain = Convergence(workloads=["test_as_written_blobs"], as_written=True).groups()
        without = Convergence(workloads=["test_documented_blobs"]).groups()
    assert {g.recipe for g in asked} == {g.recipe for g in plain} == {g.recipe for g in without} == {"fast"}
    assert len(asked) == len(plain) == 2 and len(without) == 1
