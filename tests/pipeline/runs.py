"""Helpers of the pipeline tests: a tiny config on digits and a log that collects lines."""

from kdkeras.pipeline import RunConfig

NAMES = ["teacher", "teacher_tflite_float32", "student_scratch", "student_distilled",
         "student_pruned", "student_qat", "student_tflite_int8"]
#: The rows of Keras models, each saved as a file named after it.
KERAS = ["teacher", "student_scratch", "student_distilled", "student_pruned", "student_qat"]
CACHED = ["teacher", "teacher_tflite", "logits", "scratch", "distill", "prune", "qat", "export",
          "verify", "android"]


def tiny(**changes) -> RunConfig:
    """The whole pipeline on digits in about a minute; ``changes`` merge into the sections."""
    base = {"batch_size": 64, "min_steps": 0, "data": {"source": "digits", "labels": 1},
            "teacher": {"epochs": 3},
            "distill": {"epochs": 2, "learning_rate": 3e-3}, "prune": {"epochs": 1},
            "qat": {"epochs": 1}, "verify": {"latency_runs": 5}}
    for key, value in changes.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return RunConfig.from_dict(base)


class Log(list):
    """A ``log`` callable that keeps the lines; ``reused()`` names the stages reused."""

    def __call__(self, line):
        self.append(line)

    def reused(self):
        return [line.split("]", 1)[1].split(":")[0].strip() for line in self if ": reused" in line]
