import numpy as np
import pytest
import tensorflow as tf

import kdkeras as kd
from kdkeras.distill import logit_cache


def test_cache_to_file_is_atomic_and_checked(tmp_path, trained_teacher, digits_data):
    (x, y), _ = digits_data
    path = tmp_path / "cache" / "logits.npy"
    kd.cache_teacher_logits(trained_teacher, (x[:40], y[:40]), path=path, batch_size=16)
    assert path.exists() and np.load(path).shape == (40, 10)
    assert [p.name for p in path.parent.iterdir()] == ["logits.npy"]  # no temp file left
    with pytest.raises(ValueError, match="same length. Received: 40 and 39"):
        kd.cache_teacher_logits(trained_teacher, (x[:40], y[:39]))
    with pytest.raises(FileNotFoundError, match="No teacher-logit cache"):
        kd.load_teacher_logits(tmp_path / "none.npy")
    with pytest.raises(ValueError, match="needs a teacher"):
        kd.cache_teacher_logits(None, (x[:4], y[:4]))


def test_teacher_logits_for_plain_teachers(trained_teacher, digits_data):
    (x, _), _ = digits_data
    logits = logit_cache.teacher_logits_for(trained_teacher, x[:37], batch_size=16)
    assert logits.dtype == np.float32 and logits.shape == (37, 10)
    np.testing.assert_allclose(logits, trained_teacher.predict(x[:37], verbose=0), rtol=1e-5, atol=1e-5)
    ens = [trained_teacher, trained_teacher]
    ens_logits = logit_cache.teacher_logits_for(ens, x[:8], 4, temperature=2.0)
    # Equal members: the ensemble's soft targets are the member's (logits up to a row shift).
    np.testing.assert_allclose(tf.nn.softmax(ens_logits / 2.0), tf.nn.softmax(logits[:8] / 2.0), atol=1e-5)
    with pytest.raises(ValueError, match=r"teacher_logits_for\(teachers, data, temperature=4.0\)"):
        logit_cache.teacher_logits_for(ens, x[:8], 4)
    with pytest.raises(ValueError, match="Received: batch_size=0"):
        logit_cache.teacher_logits_for(trained_teacher, x[:8], 0)
    with pytest.raises(ValueError, match="teacher_logits_for received no data"):
        logit_cache.teacher_logits_for(trained_teacher, x[:0], 4)
