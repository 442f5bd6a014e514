"""``python -m kdkeras.export.mediapipe_setup {create [--force] [DIR] | check}``.

``create`` makes the MediaPipe environment
(:func:`~kdkeras.export.mediapipe_env.create_mediapipe_env`: a venv with
``mediapipe==0.10.21``, by default in
``~/.cache/kdkeras/mediapipe-0.10.21``; a ``DIR`` elsewhere is then used through
``$KDKERAS_MEDIAPIPE_PYTHON``); ``check`` says whether kdkeras can use it, and why not. Exit
status 0 when the environment is usable, 1 when not, 2 on bad arguments.

Example:

>>> main(["bogus"])
2
"""

from __future__ import annotations

import sys
from typing import List, Optional

from kdkeras.export.mediapipe_env import (ENV_VAR, MEDIAPIPE_VERSION, MediaPipeError,
                                          create_mediapipe_env, default_env_dir,
                                          mediapipe_status)

__all__ = ["main"]


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the command in ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("create", "check") or len(args) > 3:
        print(f"usage: python -m kdkeras.export.mediapipe_setup create [--force] [DIR] | check\n"
              f"  create: a venv with mediapipe=={MEDIAPIPE_VERSION} (default "
              f"{default_env_dir()})\n  check: is it usable?", file=sys.stderr)
        return 2
    if args[0] == "create":
        rest = [a for a in args[1:] if a != "--force"]
        try:
            python = create_mediapipe_env(rest[0] if rest else None, force="--force" in args)
        except MediaPipeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        if rest:
            print(f"Use it with: export {ENV_VAR}={python}")
        return 0
    status = mediapipe_status(refresh=True)
    print(f"MediaPipe {status['mediapipe_version']} at {status['python']}" if status["available"]
          else f"MediaPipe is not available: {status['reason']}")
    return 0 if status["available"] else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
