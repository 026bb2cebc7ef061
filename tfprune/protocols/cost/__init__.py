"""The cost of a protocol grid before it runs: epochs, examples, MACs, training FLOPs, seconds.

:func:`tfprune.protocols.cost.estimate.estimate_cost` counts a grid's runs
(:class:`~tfprune.protocols.cost.estimate.CostEstimator` does the counting);
:mod:`~tfprune.protocols.cost.model` holds the records of the cost,
:mod:`~tfprune.protocols.cost.report` their text, :mod:`~tfprune.protocols.cost.calibration` the
seconds measured on this machine and :mod:`~tfprune.protocols.cost.dataset_sizes` the number of
training examples of each dataset.
"""
