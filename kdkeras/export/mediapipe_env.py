"""The second Python environment that holds MediaPipe, and the calls kdkeras makes into it.

``mediapipe`` 0.10.21 (the release whose metadata writers import; 1.2.x's fail with "No
module named 'mediapipe.tasks.cc'") pins ``numpy<2`` and ``absl-py`` 2.x, against the
``absl-py~=1.2`` of TF-MOT: installed beside kdkeras it pulls TensorFlow down to 2.19. So
kdkeras keeps it in a small virtual environment of its own and runs
:mod:`kdkeras.export.mediapipe_worker` there by subprocess (JSON in, JSON out); mediapipe is
never imported in kdkeras's own environment.

Which Python runs the worker:

1. ``$KDKERAS_MEDIAPIPE_PYTHON``, if set (any Python with ``mediapipe==0.10.21``);
2. else the virtual environment :func:`create_mediapipe_env` makes, by default in
   ``$XDG_CACHE_HOME/kdkeras/mediapipe-0.10.21`` (``~/.cache/kdkeras/...``).

Create it once with::

    python -m kdkeras.export.mediapipe_setup create     # about 1 minute, ~430 MB

It installs ``mediapipe==0.10.21`` without its ``jax``, ``jaxlib``, ``sounddevice`` and
``sentencepiece`` requirements (MediaPipe's LLM converter and audio use them; its metadata
writers and vision / text Tasks do not, and leaving them out halves the size and avoids pip's
long backtracking over jaxlib releases for one that takes ``numpy<2``).
``python -m kdkeras.export.mediapipe_setup check`` says whether it is usable and why not.

Example:

>>> "mediapipe_setup create" in SETUP_COMMAND
True
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

__all__ = ["ENV_VAR", "MEDIAPIPE_VERSION", "REQUIREMENTS", "SETUP_COMMAND", "MediaPipeError",
           "MediaPipeUnavailable", "create_mediapipe_env", "default_env_dir", "find_python",
           "mediapipe_status", "run_worker"]

MEDIAPIPE_VERSION = "0.10.21"
ENV_VAR = "KDKERAS_MEDIAPIPE_PYTHON"
SETUP_COMMAND = "python -m kdkeras.export.mediapipe_setup create"
#: What the environment holds besides ``mediapipe`` itself (installed ``--no-deps``): its
#: runtime requirements but those of its LLM converter and audio (jax, jaxlib, sounddevice,
#: sentencepiece). ``import mediapipe`` loads cv2 and matplotlib.
REQUIREMENTS = ("absl-py", "attrs>=19.1.0", "flatbuffers>=2.0", "numpy<2",
                "protobuf>=4.25.3,<5", "opencv-contrib-python-headless<4.12", "matplotlib")
WORKER = Path(__file__).with_name("mediapipe_worker.py")
READY_FILE = "kdkeras-mediapipe.json"  # written last by create_mediapipe_env: env complete


class MediaPipeUnavailable(RuntimeError):
    """No usable MediaPipe environment; the message says how to create one."""


class MediaPipeError(RuntimeError):
    """The MediaPipe worker failed or timed out; the message holds its stderr."""


def default_env_dir() -> Path:
    """``$XDG_CACHE_HOME/kdkeras/mediapipe-<version>`` (``~/.cache`` when unset)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "kdkeras" / f"mediapipe-{MEDIAPIPE_VERSION}"


def _env_python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def find_python() -> Tuple[Optional[str], str]:
    """``(python, where)``: the MediaPipe environment's Python (None: there is none) and where
    kdkeras looked, for messages."""
    given = os.environ.get(ENV_VAR)
    if given:
        ok = os.path.isfile(given) and os.access(given, os.X_OK)
        return (given if ok else None), f"${ENV_VAR}={given}"
    env_dir = default_env_dir()
    python = _env_python(env_dir)
    ready = python.is_file() and (env_dir / READY_FILE).is_file()
    return (str(python) if ready else None), str(env_dir)


_STATUS: Dict[str, Dict[str, Any]] = {}


def mediapipe_status(refresh: bool = False) -> Dict[str, Any]:
    """Whether MediaPipe can be called: ``{"available", "python", "mediapipe_version",
    "reason"}`` (``reason``: why not, with the command that fixes it). Probed once per process
    and Python (``refresh`` probes again)."""
    python, where = find_python()
    if python is None:
        return {"available": False, "python": None, "mediapipe_version": None,
                "reason": (f"no MediaPipe environment at {where}; create it with "
                           f"`{SETUP_COMMAND}` (or set ${ENV_VAR} to a Python with "
                           f"mediapipe=={MEDIAPIPE_VERSION})")}
    if refresh or python not in _STATUS:
        try:
            found = run_worker({"command": "probe"}, timeout=180, python=python)
            version = found["mediapipe"]
            reason = None if version == MEDIAPIPE_VERSION else (
                f"{python} has mediapipe {version}; kdkeras needs {MEDIAPIPE_VERSION} (its "
                f"metadata writers import). Recreate it with `{SETUP_COMMAND} --force`")
            _STATUS[python] = {"available": reason is None, "python": python,
                               "mediapipe_version": version, "reason": reason}
        except MediaPipeError as e:
            _STATUS[python] = {"available": False, "python": python, "mediapipe_version": None,
                               "reason": (f"the MediaPipe environment ({where}) does not work: "
                                          f"{e}. Recreate it with `{SETUP_COMMAND} --force`")}
    return dict(_STATUS[python])


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_worker(request: Dict[str, Any], timeout: float = 600,
               python: Optional[str] = None) -> Dict[str, Any]:
    """Runs :mod:`kdkeras.export.mediapipe_worker` on ``request`` in the MediaPipe environment.

    Args:
        request: dict. The worker's request (``{"command": ..., ...}``, see the worker).
        timeout: float. Seconds before the worker is killed.
        python: str. The environment's Python (default: :func:`find_python`).

    Returns:
        The worker's result dict.

    Raises:
        MediaPipeUnavailable: there is no MediaPipe environment (the message says how to make
            one).
        MediaPipeError: the worker exited with an error (its stderr is in the message) or ran
            longer than ``timeout``.
    """
    if python is None:
        python, where = find_python()
        if python is None:
            raise MediaPipeUnavailable(
                f"No MediaPipe environment at {where}. Create it with `{SETUP_COMMAND}` or set "
                f"${ENV_VAR} to a Python with mediapipe=={MEDIAPIPE_VERSION}.")
    command = request.get("command")
    with tempfile.TemporaryDirectory(prefix="kdkeras-mediapipe-") as tmp:
        req, res = os.path.join(tmp, "request.json"), os.path.join(tmp, "result.json")
        with open(req, "w", encoding="utf-8") as f:
            json.dump(request, f)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        # A Jupyter kernel's MPLBACKEND (module://matplotlib_inline...) names a backend the
        # worker's matplotlib lacks.
        env["MPLBACKEND"] = "agg"
        env.setdefault("GLOG_minloglevel", "2")
        try:
            proc = subprocess.run([python, "-I", str(WORKER), req, res], capture_output=True,
                                  text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired as e:
            err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
            raise MediaPipeError(f"The MediaPipe worker ({command}) ran longer than {timeout:g} "
                                 f"s and was stopped. Its stderr:\n{_tail(err or '')}") from None
        except OSError as e:
            raise MediaPipeError(f"Cannot run the MediaPipe Python {python!r}: {e.strerror}. "
                                 f"Recreate it with `{SETUP_COMMAND} --force`.") from None
        if proc.returncode != 0 or not os.path.isfile(res):
            raise MediaPipeError(f"The MediaPipe worker ({command}) failed with exit status "
                                 f"{proc.returncode}. Its stderr:\n{_tail(proc.stderr)}")
        with open(res, encoding="utf-8") as f:
            return json.load(f)


def _run(args, log: Callable[[str], None]) -> None:
    log("  $ " + " ".join(str(a) for a in args))
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise MediaPipeError(f"`{' '.join(str(a) for a in args)}` failed with exit status "
                             f"{proc.returncode}:\n{_tail(proc.stderr or proc.stdout)}")


def create_mediapipe_env(env_dir: Optional[str] = None, *, force: bool = False,
               base_python: Optional[str] = None,
               log: Callable[[str], None] = print) -> str:
    """Creates the MediaPipe environment (a venv with ``mediapipe==0.10.21``) and checks it.

    Args:
        env_dir: str. Where (default :func:`default_env_dir`; a directory other than the
            default is then used through ``$KDKERAS_MEDIAPIPE_PYTHON``).
        force: bool. Recreate an existing environment.
        base_python: str. The Python that makes the venv (default: this one's base).
        log: where progress lines go.

    Returns:
        The environment's Python.

    Raises:
        MediaPipeError: ``venv`` or ``pip`` failed (their output is in the message), or the new
            environment cannot import MediaPipe's metadata writers and Tasks.
    """
    target = Path(env_dir) if env_dir else default_env_dir()
    python = _env_python(target)
    if (target / READY_FILE).is_file() and python.is_file() and not force:
        log(f"MediaPipe environment already at {target} (use --force to recreate it)")
        return str(python)
    start = time.time()
    (target / READY_FILE).unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    base = base_python or sys.executable  # venv makes it from the base interpreter
    log(f"Creating the MediaPipe environment in {target}")
    _run([base, "-m", "venv", "--clear", target], log)
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run(pip + ["--no-deps", f"mediapipe=={MEDIAPIPE_VERSION}"], log)
    _run(pip + list(REQUIREMENTS), log)
    found = run_worker({"command": "probe"}, timeout=300, python=str(python))
    seconds = round(time.time() - start, 1)
    info = {"mediapipe": found["mediapipe"], "numpy": found["numpy"],
            "python": found["python"], "seconds": seconds}
    (target / READY_FILE).write_text(json.dumps(info, indent=2) + "\n")
    _STATUS.pop(str(python), None)
    log(f"MediaPipe {found['mediapipe']} ready in {seconds:.0f} s: {python}")
    return str(python)
