import numpy as np
import pytest
import tf_keras as keras

from kdkeras.compress import (
    centroid_inits,
    cluster,
    has_clustering_wrappers,
    prune,
    sparsity_report,
    strip,
)
from tests.compress.compress_models import build, distill, make_data

# kernels that get clustered in each tiny model (MHA: its four projection kernels)
CLUSTERED = {
    "mlp": {"hidden": ["kernel"], "output": ["kernel"]},
    "cnn": {"conv0": ["kernel"], "conv1": ["kernel"], "output": ["kernel"]},
    "transformer": {"embed": ["embeddings"], "ffn": ["kernel"], "output": ["kernel"]},
}


def _kernels(model, kind):
    out = {}
    for name, attrs in CLUSTERED[kind].items():
        layer = model.get_layer(name)
        for attr in attrs:
            out[f"{name}.{attr}"] = getattr(layer, attr).numpy()
    if kind == "transformer":
        mha = model.get_layer("mha")
        for sub in ("_query_dense", "_key_dense", "_value_dense", "_output_dense"):
            out[f"mha.{sub}"] = getattr(mha, sub).kernel.numpy()
    return out


@pytest.mark.slow
def test_cluster_finetune_strip_keeps_n_values(kind, tmp_path):
    student = build(kind)
    before = [w.copy() for w in student.get_weights()]
    clustered = cluster(student, n_clusters=4)
    assert has_clustering_wrappers(clustered)
    distill(clustered, kind, epochs=1, n=32, batch_size=8)
    small = strip(clustered)
    assert not has_clustering_wrappers(small)
    assert [type(l) for l in small.layers] == [type(l) for l in student.layers]
    kernels = _kernels(small, kind)
    assert set(kernels) >= {f"{n}.{a}" for n, attrs in CLUSTERED[kind].items() for a in attrs}
    for name, value in kernels.items():
        assert len(np.unique(value)) <= 4, name
    x, _ = make_data(kind, n=8)
    np.testing.assert_allclose(small.predict(x, verbose=0), clustered.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-4)
    # caller's model untouched
    assert all(np.array_equal(a, b) for a, b in zip(before, student.get_weights()))
    # the stripped model saves and reloads with identical predictions
    path = str(tmp_path / "clustered.keras")
    small.save(path)
    np.testing.assert_array_equal(keras.models.load_model(path).predict(x, verbose=0),
                                  small.predict(x, verbose=0))


def test_preserve_sparsity_keeps_the_zeros_of_a_pruned_student():
    pruned = prune(build("mlp"), target_sparsity=0.6, schedule="constant", frequency=1)
    distill(pruned, "mlp", epochs=1, n=16, batch_size=8)
    sparse = strip(pruned)
    zeros_before = sparse.get_layer("hidden").kernel.numpy() == 0
    assert zeros_before.mean() == pytest.approx(0.6, abs=0.02)
    clustered = cluster(sparse, n_clusters=8, preserve_sparsity=True)
    distill(clustered, "mlp", epochs=1, n=32, batch_size=8)
    kernel = strip(clustered).get_layer("hidden").kernel.numpy()
    assert np.all(kernel[zeros_before] == 0)
    assert len(np.unique(kernel)) <= 8
    # clustering a still-wrapped pruned model strips it first (masks applied)
    again = cluster(pruned, n_clusters=8, preserve_sparsity=True)
    assert sparsity_report(again).layer("hidden").prunable_sparsity == pytest.approx(0.6, abs=0.02)


@pytest.mark.parametrize("init", ["kmeans++", "linear", "random", "density-based"])
def test_centroid_init_names(init):
    clustered = cluster(build("mlp"), n_clusters=5, init=init, skip=("output",))
    kernel = strip(clustered).get_layer("hidden").kernel.numpy()
    assert 1 <= len(np.unique(kernel)) <= 5
    assert np.array_equal(strip(clustered).get_layer("output").kernel.numpy(),
                          build("mlp").get_layer("output").kernel.numpy())


def test_linear_init_centroids_match_numpy():
    student = build("mlp")
    clustered = cluster(student, n_clusters=5, init="linear", skip=("output",))
    w = student.get_layer("hidden").kernel.numpy()
    kernel = strip(clustered).get_layer("hidden").kernel.numpy()
    centroids = np.linspace(w.min(), w.max(), 5)
    expected = centroids[np.argmin(np.abs(w[..., None] - centroids), axis=-1)]
    np.testing.assert_allclose(kernel, expected, rtol=1e-5, atol=1e-6)


def test_unknown_init_lists_known_names():
    assert centroid_inits.names() == ["density-based", "kmeans++", "linear", "random"]
    with pytest.raises(ValueError, match="Unknown centroid initialization 'kmeans'.*Known: "):
        cluster(build("mlp"), init="kmeans")


def test_more_clusters_than_weights():
    inputs = keras.Input((2,))
    tiny = keras.Model(inputs, keras.layers.Dense(3, name="output")(inputs))  # 6 kernel values
    with pytest.raises(ValueError, match=r"'output'.*only 6 values.*n_clusters=16.*"
                                         r"n_clusters <= 6.*skip=\('output',\)"):
        cluster(tiny, n_clusters=16)


@pytest.mark.parametrize("bad", [1, 0, 2.5, True])
def test_bad_n_clusters(bad):
    with pytest.raises(ValueError, match=f"Received: n_clusters={bad!r}"):
        cluster(build("mlp"), n_clusters=bad)


def test_keras3_and_nothing_to_cluster():
    import keras as keras3

    inputs = keras3.Input((4,))
    with pytest.raises(TypeError, match=r"Keras 3 model.*kdkeras\.keras"):
        cluster(keras3.Model(inputs, keras3.layers.Dense(2)(inputs)))
    with pytest.raises(ValueError, match="Nothing to cluster"):
        cluster(build("mlp"), skip=("hidden", "output"))
