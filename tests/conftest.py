"""Shared fixtures: the real media in ../shared/data (skips locally when absent, fails under CI=true)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.core.paths import data_root as _data_root


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if not (root / "README.md").exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"real test media not found at {root} (CI must have ../shared/data)")
        pytest.skip(f"real test media not found at {root}; set REALTALK_BENCH_DATA")
    return root


@pytest.fixture(scope="module")
def real_train_clip(data_root):
    """(face model, small config for log-mel tokens, [the demo split's first train clip, 40 frames = 1.6 s],
    its split entry): a real batch for training tests. Module scope: tests may edit the config."""
    from harness.core.splits import load_split
    from realtalk.audio_features import get_featurizer
    from realtalk.config import small
    from realtalk.data import load_clip_data
    from realtalk.face_models import load_default_face_model

    fm = load_default_face_model()
    feat = get_featurizer("logmel")
    entry = next(c for c in load_split("demo").clips if c.role == "train")
    clip = load_clip_data(entry, data_root, fm, feat, max_frames=40)
    cfg = small().with_face_model(fm.n_id, fm.n_exp, fm.n_pose).with_audio_dim(feat.dim)
    return fm, cfg, [clip], entry


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


# ---------------------------------------------------------------------------------------------------------
# Ending the test process. CI once printed "415 passed" and then died with SIGSEGV (exit 139) while the
# interpreter tore down native extensions (Ray's core worker after ray.shutdown(), onnxruntime, dlib and
# torch thread pools all live in this one process). The suite's verdict is pytest's exit status, so after
# every plugin has reported (terminal summary, benchmark JSON) we run the atexit handlers, flush, and leave
# with that status without module teardown. faulthandler stays on so a crash in the handlers is traced.
# ---------------------------------------------------------------------------------------------------------
_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    import atexit
    import faulthandler
    import sys
    import threading

    if not _EXIT_STATUS or os.environ.get("RTB_PYTEST_NORMAL_EXIT") == "1":
        return  # collection-only runs, or someone debugging teardown itself
    alive = [t.name for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
    if alive:
        print(f"note: {len(alive)} thread(s) still alive at the end of the session: {', '.join(alive[:8])}",
              file=sys.stderr)
    faulthandler.enable(file=sys.__stderr__, all_threads=True)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS[-1])
