"""tfprune: filter-level structured pruning and growing regularization for tf_keras.

The flow: model -> channel groups (:func:`channel_groups`, :func:`explain`) -> importance ->
masks during ``fit`` (:func:`prune_filters`, :class:`UpdateFilterMasks`) -> physical surgery
(:func:`strip_filters`, :func:`shrink`) -> SavedModel (:func:`export_saved_model`).

``import tfprune`` is instant: each name below loads its module (and TensorFlow) on first use,
so the command-line tools answer ``--help`` without loading TensorFlow. The names and the
modules they come from are listed in ``__init__.pyi``, which IDEs and type checkers read.
To load a saved model with tfprune's layers, pass ``custom_objects=tfprune.custom_objects()``.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)

__version__ = "0.2.0"
