"""The foundation subcommands through harness.cli.main: splits, cache, doctor."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.cli import main


def test_splits_list_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["splits", "list"]) == 0
    out = capsys.readouterr().out
    assert "demo" in out and "hdtf-test" in out
    assert main(["splits", "show", "demo"]) == 0
    assert "Obama_clip3" in capsys.readouterr().out
    assert main(["splits", "show", "voxceleb1-test", "--root", "/nonexistent"]) == 0


def test_splits_verify_demo(data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["splits", "verify", "demo", "--root", str(data_root)]) == 0
    assert "23/23 files ok" in capsys.readouterr().out


def test_splits_verify_fails_on_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["splits", "verify", "demo", "--root", str(tmp_path), "--no-hash"]) == 1
    assert main(["splits", "verify", "mead-test", "--root", str(tmp_path)]) == 1


def test_splits_fetch_without_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["splits", "fetch", "hdtf-test", "--root", str(tmp_path)]) == 1
    assert "no pinned URL" in capsys.readouterr().err


def test_cache_info_and_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("REALTALK_BENCH_CACHE", str(tmp_path / "cache"))
    from harness.core.cache import Cache

    c = Cache()
    c.put_arrays("faces-a", {"x": np.zeros(3)})
    c.put_json("coeffs-b", {"y": 1})
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert "faces" in out and "coeffs" in out
    assert main(["cache", "clear", "--kind", "faces"]) == 0
    assert set(Cache().info()) == {"coeffs"}
    assert main(["cache", "clear"]) == 0
    assert Cache().info() == {}


def test_doctor(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "weights:dlib_landmarks68" in out and "backend:dlib" in out
