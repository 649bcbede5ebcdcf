"""Shared fixtures: the real media in ../shared/data (skips locally when absent, fails under CI=true)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.paths import data_root as _data_root


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if not (root / "README.md").exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"real test media not found at {root} (CI must have ../shared/data)")
        pytest.skip(f"real test media not found at {root}; set REALTALK_BENCH_DATA")
    return root


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never touch the user's cache: REALTALK_BENCH_HOME points at a session temp folder
    unless the caller set it (CI sets it to reuse the cache between runs)."""
    if "REALTALK_BENCH_HOME" not in os.environ:
        os.environ["REALTALK_BENCH_HOME"] = str(tmp_path_factory.mktemp("rtb-home"))


@pytest.fixture
def standins():
    """The runner's stand-in methods and metrics (tests/test_runner_support.py), registered for one test."""
    import test_runner_support as sup

    sup.register_standins()
    yield
    sup.unregister_standins()
