"""``kdkeras run``: the whole pipeline from one TOML config.

data → teacher (train or load) → teacher-logit cache → student from scratch (the baseline) →
distill → prune → QAT → export → verify the ``.tflite`` → Android bundle → report. Each stage
is a plain function in :mod:`kdkeras.pipeline.stages`; :mod:`kdkeras.pipeline.runner`
composes them, saves every artifact into the output folder and reuses finished stages.

Example (Python; the CLI is ``kdkeras run [CONFIG.toml] --out DIR``):

>>> from kdkeras.pipeline import RunConfig
>>> RunConfig().quick().data.n_train
3000
"""

from kdkeras.pipeline.config import RunConfig, default_toml
from kdkeras.pipeline.report import markdown as report_markdown
from kdkeras.pipeline.runner import STAGE_NAMES, VerificationError, run, stage_keys

__all__ = ["RunConfig", "default_toml", "run", "report_markdown", "STAGE_NAMES",
           "VerificationError", "stage_keys", "run_from_cli", "init_from_cli"]


def run_from_cli(args) -> int:
    """``kdkeras run``: config file (or the default), ``--seed``, ``--quick``, ``--force``."""
    import dataclasses
    import sys

    from kdkeras.pipeline.report import print_table
    from kdkeras.pipeline.runner import progress_verbosity

    cfg = RunConfig.from_toml(args.config) if args.config else RunConfig()
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, seed=args.seed)
    if args.quick:
        cfg = cfg.quick()
    try:
        report = run(cfg, args.out, force=args.force or (), verbose=progress_verbosity(),
                     log=lambda s: print(s, flush=True))
    except VerificationError as e:
        print(f"kdkeras run: verification failed: {e}", file=sys.stderr)
        return 1
    print_table(report)
    print(f"report: {args.out}/report.md, report.json, report.png"
          + (f"; Android bundle: {args.out}/android/" if cfg.export.enabled and cfg.export.android
             else ""))
    return 0


def init_from_cli(args) -> int:
    """``kdkeras init [PATH]``: writes the default config, commented; never overwrites silently."""
    from pathlib import Path

    from kdkeras._io import atomic_write_bytes

    path = Path(args.path)
    if path.exists() and not args.force:
        raise ValueError(f"{path} exists. Pass --force to overwrite it, or another path.")
    atomic_write_bytes(path, default_toml().encode())
    print(f"wrote {path}: edit it, then `kdkeras run {path} --out DIR`")
    return 0
