"""One ``kdkeras run`` per output folder at a time.

Two runs writing one ``--out`` would interleave their artifacts (one run's model next to the
other's report). :func:`lock_output` takes ``<out>/.kdkeras/lock`` (created exclusively, holding
the process id, host and start time) for the whole run; a second run refuses in one line naming
the holder. A lock left by a run that died (its process is gone) is taken over, and the
temporary files that run left are then removed by the runner.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional

__all__ = ["OutputLocked", "lock_output"]


class OutputLocked(ValueError):
    """Another live run holds the output folder."""


def _holder(path: Path) -> Optional[Dict[str, object]]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _alive(holder: Dict[str, object]) -> bool:
    """True unless the holder is a process of this host that no longer exists."""
    if holder.get("host") != socket.gethostname():
        return True  # another machine's process: cannot be checked from here
    try:
        os.kill(int(holder.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True
    return True


@contextlib.contextmanager
def lock_output(out: Path, log: Callable[[str], None] = print) -> Iterator[bool]:
    """Holds ``out``'s lock for the duration of the block; yields True when a dead run's lock
    was taken over (its temporary files should be removed).

    Raises:
        OutputLocked: a live run holds ``out`` (its pid, host and start time are named).
    """
    path = Path(out) / ".kdkeras" / "lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    took_over = False
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder is None:  # being written by a run that is starting: give it a moment
                time.sleep(0.2)
                holder = _holder(path) or {}
            if holder and _alive(holder):
                raise OutputLocked(
                    f"--out {out} is in use by another kdkeras run (pid {holder.get('pid')} on "
                    f"{holder.get('host')}, started {holder.get('started')}). Wait for it to "
                    f"finish, or choose another --out. If no such run exists, delete {path}.")
            log(f"taking over the lock of a run that ended without releasing it "
                f"(pid {holder.get('pid')}, started {holder.get('started')})")
            path.unlink(missing_ok=True)
            took_over = True
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:  # pragma: no cover - three races lost in a row
        raise OutputLocked(f"--out {out}: could not take {path}; another run keeps taking it.")
    try:
        yield took_over
    finally:
        if _holder(path) == me:
            path.unlink(missing_ok=True)
