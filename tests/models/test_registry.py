import pytest

from refbench.models import Workload, get_workload, list_models, register_model, unregister_model
from refbench.errors import RefbenchError


def test_list_models_filters_with_shell_patterns():
    names = list_models()
    assert {"mlp", "lenet5"} <= set(names)
    assert names == sorted(names)
    assert list_models("len*") == ["lenet5"]
    assert "mlp" not in list_models(exclude="m*")
    assert list_models(["mlp", "lenet?"]) == ["lenet5", "mlp"]


def test_duplicate_name_raises():
    class Again(Workload):
        name = "mlp"

    with pytest.raises(ValueError, match="already registered"):
        register_model(Again)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(RefbenchError, match="did you mean lenet5"):
        get_workload("lenet")


def test_registered_test_workload_can_be_removed():
    @register_model
    class Tiny(Workload):
        name = "tiny_for_registry_test"

    try:
        assert isinstance(get_workload("tiny_for_registry_test"), Tiny)
    finally:
        unregister_model("tiny_for_registry_test")
    assert "tiny_for_registry_test" not in list_models()


def test_variants_are_checked():
    lenet = get_workload("lenet5")
    assert lenet.resolve_variant() == {"activation": "relu", "as_written": False}
    with pytest.raises(RefbenchError, match="activation='gelu' is not one of"):
        lenet.make(activation="gelu")
    with pytest.raises(RefbenchError, match="has no option depth"):
        lenet.make(depth=3)


def test_refbench_list_json_gives_every_target_with_its_source(capsys):
    import json

    from refbench.cli import main

    assert main(["list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    for name in list_models(exclude="test_*"):
        workload = get_workload(name)
        for key, target in workload.targets.items():
            shown = rows[name]["targets"][key]
            assert shown["source"] == target.source and shown["recipe"] == target.recipe
            assert shown["dataset"] == (target.dataset or workload.dataset)
    assert rows["mlp"]["targets"]["full"]["goal"] == "accuracy >= 0.88"
    assert rows["mlp"]["targets"]["full"]["dataset"] == "fashion-mnist" and rows["mlp"]["dataset"] == "mnist"
