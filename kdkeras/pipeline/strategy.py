"""The ``strategy`` key of ``kdkeras run``: which ``tf.distribute`` strategy trains the models,
and where each worker writes.

``default`` trains on one device; ``mirrored`` on every local GPU (every logical CPU when there
is none) with ``MirroredStrategy``; ``multi_worker`` on the hosts that ``TF_CONFIG`` lists with
``MultiWorkerMirroredStrategy``; ``tpu`` on a TPU with ``TPUStrategy``. The runner creates the
strategy before any other TensorFlow work (multi-worker and TPU set up the runtime at start-up)
and runs every stage in its scope, so each model is built, compiled and fitted under it.

Every worker of a multi-worker run runs every stage (the collective ops need them all), but
only the chief writes into ``--out``: the others write into a temporary folder that is deleted
at the end, the pattern of TensorFlow's multi-worker tutorial. Their stages are never reused
from earlier runs: every worker must take the same steps, and only the chief has the files.

Example:

>>> check_strategy("mirrored")
'mirrored'
>>> is_chief(None)  # no cluster: a single process is its own chief
True
"""

from __future__ import annotations

import difflib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import tensorflow as tf

__all__ = ["STRATEGIES", "STRATEGY_DOC", "check_strategy", "make_strategy", "tpu_strategy",
           "is_chief", "worker_count", "worker_folder", "remove_worker_folder", "describe"]

#: The values of the top-level config key ``strategy``.
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
STRATEGY_DOC = (
    "tf.distribute strategy of the training stages: default (one device), mirrored (every "
    "local GPU, MirroredStrategy), multi_worker (the hosts listed in the TF_CONFIG environment "
    "variable, MultiWorkerMirroredStrategy: run the same command on every host, only the chief "
    "writes --out) or tpu (TPUStrategy, e.g. a Colab TPU runtime)")


def check_strategy(name: Any) -> str:
    """``name`` if it is one of :data:`STRATEGIES`.

    Raises:
        ValueError: naming the value, the nearest valid name and the list.
    """
    if name not in STRATEGIES:
        close = difflib.get_close_matches(str(name), STRATEGIES, n=1, cutoff=0.75)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown strategy {name!r}.{hint} Known: {', '.join(STRATEGIES)}. "
                         f"Received: strategy={name!r}")
    return name


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The ``tf.distribute.Strategy`` of ``name``; call it before any other TensorFlow work.

    Args:
        name: str. One of :data:`STRATEGIES`.

    Returns:
        ``default``: the default strategy (one device); ``mirrored``: a ``MirroredStrategy``
        over the local GPUs, or over the logical CPUs when there is no GPU; ``multi_worker``:
        a ``MultiWorkerMirroredStrategy`` of the cluster in ``TF_CONFIG``; ``tpu``: see
        :func:`tpu_strategy`.

    Raises:
        ValueError: an unknown name, ``multi_worker`` without ``TF_CONFIG``, or ``tpu`` and no
            TPU (see :func:`tpu_strategy`).
    """
    check_strategy(name)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError(
                'strategy = "multi_worker" reads its cluster from the TF_CONFIG environment '
                "variable, which is not set. On every host set TF_CONFIG='{\"cluster\": "
                '{"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", '
                '"index": I}}\' (I = 0 on the chief) and run the same command; on one host '
                'use strategy = "mirrored".')
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tpu_strategy()


def tpu_strategy(tpu: Optional[str] = None) -> tf.distribute.TPUStrategy:
    """A ``TPUStrategy`` on the TPU named ``tpu``, by ``TPU_NAME``, or attached to this VM.

    The resolver is TensorFlow's ``TPUClusterResolver``: a name (or the ``TPU_NAME`` variable)
    for a TPU reached over the network, else ``tpu="local"`` (a TPU VM, as Colab's TPU
    runtimes are).

    Raises:
        ValueError: no TPU was found, with what to change.
    """
    resolver_cls = tf.distribute.cluster_resolver.TPUClusterResolver
    try:
        resolver = resolver_cls(tpu)
    except ValueError:  # no name given or in the environment: a TPU on this machine?
        resolver = resolver_cls(tpu="local")
    try:
        if resolver.master():  # a TPU over the network; "local" needs no connection
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (tf.errors.OpError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f'strategy = "tpu" found no TPU ({first}). On Colab choose Runtime > Change '
            "runtime type > a TPU and run again; on Google Cloud run on the TPU VM, or set "
            'TPU_NAME to the TPU\'s name; without a TPU use strategy = "mirrored" (GPUs) or '
            '"default".') from None
    return tf.distribute.TPUStrategy(resolver)


def _cluster(resolver) -> dict:
    return resolver.cluster_spec().as_dict() if resolver is not None else {}


def is_chief(resolver) -> bool:
    """Whether this process writes the files: no cluster, the ``chief`` task, or worker 0 of
    a cluster without a chief (TensorFlow's rule for multi-worker checkpoints).

    Args:
        resolver: the strategy's ``cluster_resolver`` (None: a single process).
    """
    if resolver is None or not _cluster(resolver):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return (task_type is None or task_type == "chief"
            or (task_type == "worker" and task_id == 0 and "chief" not in _cluster(resolver)))


def worker_count(strategy: tf.distribute.Strategy) -> int:
    """How many processes train together (1 unless multi-worker)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1
    cluster = _cluster(strategy.cluster_resolver)
    return max(1, sum(len(cluster.get(job, [])) for job in ("chief", "worker")))


def worker_folder(strategy: tf.distribute.Strategy, out: Path) -> Path:
    """``out`` on the chief; on every other worker a new temporary folder (the caller deletes
    it with :func:`shutil.rmtree` when the run ends)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if worker_count(strategy) == 1 or is_chief(resolver):
        return Path(out)
    return Path(tempfile.mkdtemp(prefix=f"kdkeras-{resolver.task_type}{resolver.task_id}-"))


def remove_worker_folder(folder: Path, out: Path) -> None:
    """Deletes a non-chief worker's temporary folder (never ``out`` itself)."""
    if Path(folder) != Path(out):
        shutil.rmtree(folder, ignore_errors=True)


def describe(strategy: tf.distribute.Strategy, name: str) -> str:
    """One progress line: the strategy, its replicas and, for a worker, where it writes."""
    text = f"strategy: {name}, {strategy.num_replicas_in_sync} replica(s) in sync"
    workers = worker_count(strategy)
    if workers > 1:
        resolver = strategy.cluster_resolver
        role = "chief, writes --out" if is_chief(resolver) else \
            "not the chief: its files go to a temporary folder, deleted at the end"
        text += (f", {workers} workers; this is {resolver.task_type} {resolver.task_id} "
                 f"({role}); every stage is recomputed, none reused")
    return text

