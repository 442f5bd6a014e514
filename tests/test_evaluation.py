"""classification_metrics against scikit-learn, the reference implementation."""

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from kdkeras.evaluation import classification_metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 5, 300)
    p = np.where(rng.random(300) < 0.6, t, rng.integers(0, 5, 300))
    p[p == 4] = 3  # class 4 is never predicted: precision 0, as zero_division=0
    m = classification_metrics(t, p, 5, class_names=list("abcde"))
    prec, rec, f1, sup = precision_recall_fscore_support(t, p, labels=range(5), zero_division=0)
    assert m["accuracy"] == pytest.approx(np.mean(t == p))
    assert m["macro_f1"] == pytest.approx(f1_score(t, p, labels=range(5), average="macro", zero_division=0))
    np.testing.assert_allclose([c["precision"] for c in m["per_class"]], prec)
    np.testing.assert_allclose([c["recall"] for c in m["per_class"]], rec)
    np.testing.assert_allclose([c["f1"] for c in m["per_class"]], f1)
    assert [c["support"] for c in m["per_class"]] == sup.tolist()
    assert m["confusion_matrix"] == confusion_matrix(t, p, labels=range(5)).tolist()
    assert [c["class"] for c in m["per_class"]] == list("abcde")


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="same length"):
        classification_metrics([0, 1], [0], 2)
    with pytest.raises(ValueError, match=r"y_pred holds class 3, outside \[0, 2\]"):
        classification_metrics([0, 1], [0, 3], 3)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        classification_metrics([0], [0], 1)
