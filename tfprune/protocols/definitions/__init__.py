"""The comparison protocols, one module each; :mod:`tfprune.protocols.grids` registers them.

* :mod:`~tfprune.protocols.definitions.finetune_lr` — fine-tuning LR effect.
* :mod:`~tfprune.protocols.definitions.scratch_vs_prune` — scratch training vs pruning.
* :mod:`~tfprune.protocols.definitions.retrain_schedules` — retraining variants (Le & Hua 2021).
* :mod:`~tfprune.protocols.definitions.cross_recipe` — each method with both methods' recipes.
* :mod:`~tfprune.protocols.definitions.ratio_sweep` — accuracy and mean JSV versus ratio.
* :mod:`~tfprune.protocols.definitions.setup_check` — the strictest setup given runs share.
"""
