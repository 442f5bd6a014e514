"""Weight clustering (k-means weight sharing) of tf-keras students with TF-MOT.

Each clustered weight tensor keeps only ``n_clusters`` distinct values, so the exported model
compresses well (gzip, or palettized weights). As for pruning, only the layers TF-MOT can cluster
are wrapped (``Dense``, ``Conv*``, ``Embedding``, ``MultiHeadAttention``, ...), so transformer
students work; everything else stays as it is. Fine-tune the result with
:class:`kdkeras.Distiller`, then :func:`kdkeras.compress.strip` it.

Example:

>>> import kdkeras as kd
>>> inputs = kd.keras.Input((8,))
>>> student = kd.keras.Model(inputs, kd.keras.layers.Dense(4)(
...     kd.keras.layers.Dense(32)(inputs)))
>>> clustered = cluster(student, n_clusters=4)
>>> small = strip(clustered)
>>> import numpy as np
>>> int(len(np.unique(small.layers[1].kernel.numpy())))
4

References:
    Han, Mao & Dally, "Deep Compression", ICLR 2016.
"""

from __future__ import annotations

import logging
from typing import Iterable, Union

import numpy as np
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from kdkeras.compress._tfmot import ClusterableLayer, ClusterWeights, cluster_weights_map
from kdkeras.compress.layers import check_tf_keras_model, clone_layers, resolve_skip, walk_layers
from kdkeras.compress.stripping import strip
from kdkeras.registry import Registry

logger = logging.getLogger("kdkeras.compress")

CentroidInitialization = tfmot.clustering.keras.CentroidInitialization

centroid_inits = Registry("centroid initialization")
centroid_inits.register("kmeans++", CentroidInitialization.KMEANS_PLUS_PLUS)
centroid_inits.register("linear", CentroidInitialization.LINEAR)
centroid_inits.register("random", CentroidInitialization.RANDOM)
centroid_inits.register("density-based", CentroidInitialization.DENSITY_BASED)

_MHA_KERNELS = ("_query_dense", "_key_dense", "_value_dense", "_output_dense")


def clusterable_weights(layer: keras.layers.Layer) -> list:
    """The (built) weight variables TF-MOT would cluster in ``layer``; empty if none."""
    if isinstance(layer, ClusterableLayer):
        return [w for _, w in layer.get_clusterable_weights()]
    if type(layer) is keras.layers.MultiHeadAttention:
        return [getattr(layer, name).kernel for name in _MHA_KERNELS if hasattr(layer, name)]
    weights_map = cluster_weights_map()
    return [getattr(layer, name) for name in weights_map.get(type(layer), [])
            if hasattr(layer, name)]


def is_clustering_wrapper(layer) -> bool:
    """True when ``layer`` is a TF-MOT clustering wrapper."""
    return isinstance(layer, ClusterWeights)


def has_clustering_wrappers(model) -> bool:
    """True when ``model`` (or a model nested in it) holds TF-MOT clustering wrappers."""
    return any(is_clustering_wrapper(layer) for layer in walk_layers(model))


def cluster(
    model: keras.Model,
    n_clusters: int = 16,
    preserve_sparsity: bool = False,
    *,
    init: Union[str, "CentroidInitialization"] = "kmeans++",
    skip: Iterable[Union[str, type]] = (),
    cluster_per_channel: bool = False,
) -> keras.Model:
    """Returns a copy of ``model`` whose clusterable layers share ``n_clusters`` weight values.

    Pruning wrappers are stripped first (masks applied). The caller's model is untouched.

    Args:
        model: tf_keras.Model. A built Functional or Sequential tf-keras student.
        n_clusters: int >= 2. Distinct values per clustered weight tensor.
        preserve_sparsity: bool. Keep zeros at zero (sparsity-preserving clustering): use it on a
            pruned student so clustering does not undo the pruning.
        init: str or CentroidInitialization. How centroids start: ``"kmeans++"``, ``"linear"``
            (evenly spaced between min and max), ``"random"``, ``"density-based"`` (evenly
            spaced along the weights' CDF); names in ``centroid_inits``.
        skip: iterable of layer names or tf-keras layer classes left unclustered.
        cluster_per_channel: bool. Clusters per output channel of Conv2D layers (better
            accuracy before per-channel int8 quantization).

    Returns:
        A new tf-keras model with clustering wrappers.

    Raises:
        TypeError: ``model`` is not a tf-keras model.
        ValueError: ``n_clusters`` < 2, a layer with fewer weights than ``n_clusters``, a skip
            entry naming no layer, nothing clusterable, an unknown ``init`` name.

    Example:

    >>> import kdkeras as kd
    >>> inputs = kd.keras.Input((8,))
    >>> student = kd.keras.Model(inputs, kd.keras.layers.Dense(4, name="output")(inputs))
    >>> clustered = cluster(student, n_clusters=8, init="linear")
    >>> has_clustering_wrappers(clustered), has_clustering_wrappers(student)
    (True, False)
    """
    check_tf_keras_model(model)
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) \
            or n_clusters < 2:
        raise ValueError(
            "n_clusters is the number of distinct values per weight tensor and must be an int "
            f">= 2, e.g. 16. Received: n_clusters={n_clusters!r}")
    if isinstance(init, str):
        init = centroid_inits.get(init)
    skip_names, skip_classes = resolve_skip(model, skip)

    work = strip(model)  # a private copy, pruning masks applied, no wrappers

    selected = []
    for layer in walk_layers(work):
        if isinstance(layer, keras.Model) or layer.name in skip_names \
                or isinstance(layer, skip_classes):
            continue
        weights = clusterable_weights(layer)
        if not weights:
            continue
        for weight in weights:
            size = int(np.prod(weight.shape))
            if cluster_per_channel and isinstance(layer, keras.layers.Conv2D):
                size //= int(weight.shape[-1])
            if size < n_clusters:
                raise ValueError(
                    f"Layer {layer.name!r} ({type(layer).__name__}) has only {size} values in "
                    f"weight {weight.name!r}, fewer than n_clusters={n_clusters}. Use "
                    f"n_clusters <= {size}, or leave the layer out with "
                    f"skip=({layer.name!r},).")
        selected.append(layer.name)
    if not selected:
        raise ValueError(
            f"Nothing to cluster in model {model.name!r}: no Dense, Conv*, Embedding or "
            f"MultiHeadAttention layer is left after skip={tuple(skip or ())!r}. Layers: "
            f"{', '.join(f'{l.name} ({type(l).__name__})' for l in walk_layers(model))}.")
    chosen = set(selected)

    def _wrap(layer):
        if layer.name not in chosen:
            return layer
        return tfmot.clustering.keras.cluster_weights(
            layer, number_of_clusters=int(n_clusters), cluster_centroids_init=init,
            preserve_sparsity=bool(preserve_sparsity), cluster_per_channel=cluster_per_channel)

    clustered = clone_layers(work, _wrap)
    logger.info("Clustering %d layer(s) into %d values: %s", len(selected), n_clusters,
                ", ".join(selected))
    return clustered

