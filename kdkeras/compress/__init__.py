"""Compression of tf-keras students with TF-MOT: pruning, clustering, quantization-aware training.

Each function builds and returns a *new* model (the caller's model is never modified); training
(the KD-aware fine-tune) is done by :class:`kdkeras.Distiller`, which adds the pruning callbacks
itself. Typical order::

    pruned = prune(student, target_sparsity=0.8, end_step=steps)  # then Distiller.fit
    small = strip(pruned)                                         # plain layers, zeros kept
    qat = quantize_aware(small, preserve_sparsity=True)           # then Distiller.fit (PQAT)
    print(sparsity_report(small))

Modules: ``schedules`` (pruning schedules), ``pruning`` (which layers, :func:`prune`),
``callbacks`` (what a pruned model needs in ``fit``), ``clustering``, ``quantization`` (QAT),
``stripping`` (:func:`strip`), ``report`` (:func:`sparsity_report`), ``layers`` (model walks
and copies); ``_tfmot`` is the one module touching TF-MOT's private API.
"""

from kdkeras.compress.callbacks import ensure_pruning_callbacks, has_pruning_wrappers
from kdkeras.compress.clustering import centroid_inits, cluster, has_clustering_wrappers
from kdkeras.compress.pruning import (  # prunable_weight*: importable, not in __all__
    is_prunable,
    prunable_weight_names,
    prunable_weights,
    prune,
)
from kdkeras.compress.quantization import float_layers, has_quantization_wrappers, quantize_aware
from kdkeras.compress.report import LayerSparsity, SparsityReport, sparsity_report
from kdkeras.compress.schedules import pruning_schedules
from kdkeras.compress.stripping import strip
from kdkeras.distill.hooks import register_fit_callbacks

# Distiller.fit adds TF-MOT's UpdatePruningStep (and the target check) when its student holds
# pruning wrappers: the core learns of pruning through this hook, never by importing compress.
register_fit_callbacks(ensure_pruning_callbacks)

__all__ = [
    "prune",
    "strip",
    "cluster",
    "quantize_aware",
    "sparsity_report",
    "ensure_pruning_callbacks",
    "has_pruning_wrappers",
    "has_clustering_wrappers",
    "has_quantization_wrappers",
    "is_prunable",
    "float_layers",
    "pruning_schedules",
    "centroid_inits",
    "SparsityReport",
    "LayerSparsity",
]
