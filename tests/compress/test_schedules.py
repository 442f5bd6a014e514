"""Pruning schedules: registry names, values against numpy, step ranges, serialization."""

import json

import pytest
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from kdkeras.compress import prune, pruning_schedules
from kdkeras.compress._tfmot import PruneLowMagnitude
from kdkeras.compress.schedules import default_frequency, final_sparsity
from tests.compress.compress_models import build
from tests.helpers import run_serialization_test


def test_schedule_names_and_polynomial_values_match_numpy():
    assert pruning_schedules.names() == ["constant", "polynomial"]
    pruned = prune(build("mlp"), target_sparsity=0.8, schedule="polynomial", end_step=40)
    schedule = pruned.get_layer("prune_low_magnitude_hidden").pruning_schedule
    assert isinstance(schedule, tfmot.sparsity.keras.PolynomialDecay)
    assert schedule.frequency == 40
    for step in (0, 10, 20, 40, 50):
        _, value = schedule(step)
        p = min(step / 40, 1.0)
        assert float(value) == pytest.approx(0.8 * (1 - (1 - p) ** 3), abs=1e-6)
    constant = prune(build("mlp"), target_sparsity=0.3, schedule="constant")
    schedule = constant.get_layer("prune_low_magnitude_hidden").pruning_schedule
    assert isinstance(schedule, tfmot.sparsity.keras.ConstantSparsity)
    assert (schedule.target_sparsity, schedule.end_step, schedule.frequency) == (0.3, -1, 100)


def test_schedule_object_is_used_as_is():
    custom = tfmot.sparsity.keras.ConstantSparsity(0.25, begin_step=0, frequency=7)
    pruned = prune(build("mlp"), schedule=custom)
    assert pruned.get_layer("prune_low_magnitude_hidden").pruning_schedule is custom


def test_unknown_schedule_lists_known_names():
    with pytest.raises(ValueError, match="Unknown pruning schedule 'polynomal'.*polynomial.*"
                                         "Known: constant, polynomial"):
        prune(build("mlp"), schedule="polynomal", end_step=10)


def test_end_epoch_is_converted_with_steps_per_epoch():
    pruned = prune(build("mlp"), end_epoch=3, steps_per_epoch=25, begin_epoch=1)
    schedule = pruned.get_layer("prune_low_magnitude_hidden").pruning_schedule
    assert (schedule.begin_step, schedule.end_step, schedule.frequency) == (25, 75, 50)


def test_default_frequency_divides_the_pruning_span():
    assert default_frequency(0, 1875) == 75
    assert default_frequency(10, 50) == 40
    assert default_frequency(0, 101) == 1
    assert default_frequency(0, -1) == 100


def test_final_sparsity_of_each_schedule():
    assert final_sparsity(tfmot.sparsity.keras.PolynomialDecay(0.1, 0.7, 0, 10)) == \
        pytest.approx(0.7)
    assert final_sparsity(tfmot.sparsity.keras.ConstantSparsity(0.3, 0)) == pytest.approx(0.3)

    class Custom(tfmot.sparsity.keras.PruningSchedule):
        def __call__(self, step):
            return True, 0.5

        def get_config(self):
            return {}

    assert final_sparsity(Custom()) is None


# ------------------------------------------------------------------------- serialization

# TF-MOT's schedules are not registered Keras objects: name them when deserializing
SCHEDULE_CLASSES = {"ConstantSparsity": tfmot.sparsity.keras.ConstantSparsity,
                    "PolynomialDecay": tfmot.sparsity.keras.PolynomialDecay}


def _schedule(name):
    return pruning_schedules.get(name)(target_sparsity=0.6, begin_step=2, end_step=42,
                                       frequency=10)


@pytest.mark.parametrize("name", ["constant", "polynomial"])
def test_schedules_round_trip_their_config(name):
    """TF-MOT's form of the config (``get_config`` returns ``{"class_name", "config"}``, its
    ``from_config`` takes the inner ``config``) round-trips, and the clone gives the same
    sparsity at every step."""
    schedule = _schedule(name)
    config = json.loads(json.dumps(schedule.get_config()))  # JSON-serializable
    assert config["class_name"] == type(schedule).__name__
    clone = type(schedule).from_config(config["config"])
    assert type(clone) is type(schedule) and clone.get_config() == schedule.get_config()
    # what PruneLowMagnitude.from_config (a saved pruned model being loaded) does with it
    with keras.utils.custom_object_scope(SCHEDULE_CLASSES):
        restored = keras.utils.deserialize_keras_object(config)
    assert type(restored) is type(schedule) and restored.get_config() == schedule.get_config()
    for step in (0, 2, 12, 22, 42, 50):
        expected = [bool(v) if i == 0 else float(v) for i, v in enumerate(schedule(step))]
        got = [bool(v) if i == 0 else float(v) for i, v in enumerate(clone(step))]
        assert got == pytest.approx(expected), step


@pytest.mark.parametrize("name", ["constant", "polynomial"])
def test_schedule_survives_a_pruning_wrapper_round_trip(name):
    wrapper = PruneLowMagnitude(keras.layers.Dense(3), pruning_schedule=_schedule(name))
    config = json.loads(json.dumps(keras.layers.serialize(wrapper)))
    with tfmot.sparsity.keras.prune_scope():
        restored = keras.layers.deserialize(config)
    assert isinstance(restored, PruneLowMagnitude)
    assert restored.pruning_schedule.get_config() == wrapper.pruning_schedule.get_config()


@pytest.mark.parametrize("name", ["constant", "polynomial"])
def test_shared_serialization_helper_on_tfmot_schedules(name):
    clone = run_serialization_test(_schedule(name), custom_objects=SCHEDULE_CLASSES)
    assert clone.get_config() == _schedule(name).get_config()
