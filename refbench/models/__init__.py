"""The reference models: every model of the source documents as a registered Workload.

    >>> from refbench.models import get_workload, list_models
    >>> list_models("lenet*")
    ['lenet5']
    >>> model = get_workload("lenet5").make(activation="tanh")
"""
from refbench.models._notes import Notes
from refbench.models._registry import get_workload, list_models, register_model, unregister_model
from refbench.models._workload import Recipe, Target, Workload, count_parameters, eval_mode

# Workload modules register themselves on import.
from refbench.models import mlp  # noqa: E402,F401  isort: skip
from refbench.models import lenet
from refbench.models import transformer  # noqa: E402,F401  isort: skip
from refbench.models import attention
from refbench.models import tagger
from refbench.models import sentiment
from refbench.models import hpo
from refbench.models import cnn  # noqa: E402,F401  isort: skip
from refbench.models import vgg
from refbench.models import resnet
from refbench.models import rnn
from refbench.models import gan

__all__ = [
    "Notes", "Recipe", "Target", "Workload", "count_parameters", "eval_mode",
    "get_workload", "list_models", "register_model", "unregister_model",
]
