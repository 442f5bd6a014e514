"""``kdkeras run``: the whole pipeline from one TOML config.

data → teacher (train or load) → the teacher's float32 ``.tflite`` (to compare file to file) →
teacher-logit cache → student from scratch (the baseline) → distill → prune → QAT → export →
verify the ``.tflite`` → Android bundle → report. Each stage
is a plain function in :mod:`kdkeras.pipeline.stages`, declared once in
:mod:`kdkeras.pipeline.graph`; :mod:`kdkeras.pipeline.runner` walks the graph, saves every
artifact into the output folder and reuses finished stages; :mod:`kdkeras.pipeline.measure`
measures the models and :mod:`kdkeras.pipeline.report` writes the report. ``task =
"causal_lm"`` distils a GPT on plain text through the same runner
(:mod:`kdkeras.pipeline.lm_stages`, :mod:`kdkeras.pipeline.lm_steps`, ``lm_report``).

Example (Python; the CLI is ``kdkeras run [CONFIG.toml] --out DIR``):

>>> from kdkeras.pipeline import RunConfig
>>> RunConfig().quick().data.n_train
3000
"""

from kdkeras.pipeline.cli import init_from_cli, run_from_cli
from kdkeras.pipeline.config import RunConfig
from kdkeras.pipeline.graph import STAGE_NAMES, stage_keys
from kdkeras.pipeline.report import markdown as report_markdown
from kdkeras.pipeline.runner import VerificationError, run
from kdkeras.pipeline.toml_format import default_toml

__all__ = ["RunConfig", "default_toml", "run", "report_markdown", "STAGE_NAMES",
           "VerificationError", "stage_keys", "run_from_cli", "init_from_cli"]
