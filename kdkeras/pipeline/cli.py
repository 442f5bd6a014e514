"""``kdkeras run`` and ``kdkeras init`` behind the command line: flags in, the pipeline called,
the table and the paths printed. :mod:`kdkeras.cli` parses the flags and calls these."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from kdkeras._io import atomic_write_bytes
from kdkeras.distill import TrainingDivergedError
from kdkeras.pipeline import lm_report
from kdkeras.pipeline.config import CAUSAL_LM, CLASSIFICATION, RunConfig
from kdkeras.pipeline.report import print_table
from kdkeras.pipeline.runner import VerificationError, run
from kdkeras.pipeline.toml_format import default_toml


def progress_verbosity() -> int:
    """Keras progress bars only on a terminal and never under CI."""
    return 1 if sys.stdout.isatty() and not os.environ.get("CI") else 0


def run_from_cli(args) -> int:
    """``kdkeras run``: config file (or the default), ``--seed``, ``--quick``, ``--force``."""
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
    except TrainingDivergedError as e:  # one line; the stage is not recorded as finished
        print(f"kdkeras run: training diverged in {e}", file=sys.stderr)
        return 1
    lm = report.get("task") == CAUSAL_LM
    (lm_report.print_table if lm else print_table)(report)
    for warning in report.get("warnings") or []:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"report: {args.out}/report.md, report.json, report.png"
          + (f"; Android bundle: {args.out}/android/" if cfg.export.enabled and cfg.export.android
             else ""))
    return 0


def init_from_cli(args) -> int:
    """``kdkeras init [PATH] [--task causal_lm]``: writes the default config (of a causal-LM
    run on the State of the Union addresses with ``--task causal_lm``), commented; never
    overwrites silently."""
    path = Path(args.path)
    if path.exists() and not args.force:
        raise ValueError(f"{path} exists. Pass --force to overwrite it, or another path.")
    task = getattr(args, "task", CLASSIFICATION)
    cfg = RunConfig.from_dict({"task": task, "data": {"source": "sotu"}}) if task == CAUSAL_LM \
        else None
    atomic_write_bytes(path, default_toml(cfg).encode())
    print(f"wrote {path}: edit it, then `kdkeras run {path} --out DIR`")
    return 0
