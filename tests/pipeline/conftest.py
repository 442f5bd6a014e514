"""Shared fixtures of the pipeline tests: one tiny run of the whole pipeline per session."""

import pytest

from kdkeras.pipeline import run
from tests.pipeline.runs import Log, tiny


@pytest.fixture(scope="session")
def first_run(tmp_path_factory):
    """``(out folder, report, log)`` of :func:`tiny` run once; copy the folder to change it."""
    out = tmp_path_factory.mktemp("run")
    log = Log()
    report = run(tiny(), out, log=log)
    return out, report, log
