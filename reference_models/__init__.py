"""The reference models: every model of the source documents as a registered Workload.

    >>> from reference_models import get_workload, list_models
    >>> list_models("lenet*")
    ['lenet5']
    >>> model = get_workload("lenet5").make(activation="tanh")
"""
from reference_models._errors import RefbenchError
from reference_models._notes import Notes
from reference_models._registry import get_model, get_workload, list_models, register_model, unregister_model
from reference_models._workload import Recipe, Target, Workload, count_parameters, eval_mode

# Workload modules register themselves on import.
from reference_models import mlp, lenet  # noqa: E402,F401  isort: skip
from reference_models import transformer, attention, tagger, sentiment, hpo  # noqa: E402,F401  isort: skip
from reference_models import cnn, vgg, resnet, rnn, gan  # noqa: E402,F401  isort: skip

__all__ = [
    "Notes", "RefbenchError", "Recipe", "Target", "Workload", "count_parameters", "eval_mode",
    "get_model", "get_workload", "list_models", "register_model", "unregister_model",
]
