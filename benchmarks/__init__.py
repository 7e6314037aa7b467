"""Speed benchmarks of the selfdistill pipeline: not library code (the library never imports this package).

One module per benchmark, each runnable from the repository root (with the library importable: installed, or
``PYTHONPATH=src``):

* ``python -m benchmarks.input_pipeline``: augmented batches from the device-resident dataset vs the original's
  torchvision ``DataLoader`` over PIL images (:mod:`benchmarks.input_pipeline`);
* ``python -m benchmarks.train_step``: forward + backward + SGD step per network and batch size
  (:mod:`benchmarks.train_step`);
* ``python -m benchmarks.frequency``: :func:`selfdistill.frequency.frequency_table` vs the original's
  per-epoch approach (:mod:`benchmarks.frequency`);
* ``python -m benchmarks.cifar_epoch``: one real CIFAR-10 epoch per network with the training pipeline itself
  (:mod:`benchmarks.cifar_epoch`; needs the CIFAR-10 files).

Each takes ``[--out CSV] [--quick] [--device D] [--threads N] [--data-root DIR] [--log FILE]`` (``--quick``: tiny
sizes, a smoke test) and writes ``results/benchmarks/NAME.csv`` by default. :mod:`benchmarks.common` holds what
they share: the CSV columns, timing and device helpers, the study settings read from ``config/*.yaml``, the
command line and :func:`benchmarks.common.run_benchmark`, which the Snakemake rule ``benchmark`` calls
(``snakemake --cores 2 benchmarks``; ``snakemake --cores 2 results/benchmarks/cifar_epoch.csv``).
"""
