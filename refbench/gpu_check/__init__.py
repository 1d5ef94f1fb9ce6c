"""gpu-check: every GPU claim of refbench measured in one budgeted call on a lent H100/H200.

A lent GPU machine comes for about 15 minutes of device time, its start
included, which leaves one call of at most 10 minutes; it has its own image
(Python 3.12, torch 2.11, Triton 3.6, the packages of ``device-image.txt``),
no network, and returns at most 8 files from ``$OUT``. ``python3 -m
refbench.gpu_check`` turns such a call into results:

- ``plan``: the steps (kernels against their peers, the model matrix across
  backends, convergence, validate, pytest -m gpu), each with its cells and
  their costs from figures measured on an H100 (``costs``), cut to fit;
- ``steps``: one step in its own process, through the library, resuming;
- ``run``: the steps within the budget, and the dry run that rehearses all
  of it on a CPU, held to the device image (``image``);
- ``pack``: the results packed into ``$OUT`` after each step and every 10 s,
  never partial;
- ``carry``: Fashion-MNIST and the wheels the image lacks, in ``.carry/``.

Nothing here imports the CLI; steps call the library.
"""
