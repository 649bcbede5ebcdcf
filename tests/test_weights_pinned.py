"""The weights table's pins: every entry has a full sha256 with its source, or says why it is unpinned;
wrong files are rejected; random test weights load only through the explicit override; unpinned files
in use are reported (status, protocols, run-start warning)."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from harness.core import weights
from harness.core.errors import WeightsMissingError

HEX64 = re.compile(r"[0-9a-f]{64}")


def test_every_entry_pinned_or_says_why() -> None:
    for key, w in weights.REGISTRY.items():
        if w.sha256 is None:
            assert w.sha256_source.startswith("unpinned:") and len(w.sha256_source) > 20, key
            assert not weights.pinned(key)
        else:
            assert HEX64.fullmatch(w.sha256), key
            assert w.sha256_source and not w.sha256_source.startswith("unpinned"), key
            assert weights.pinned(key)
        if w.sha256 and w.sha256_prefix:
            assert w.sha256.startswith(w.sha256_prefix), key  # the published name prefix agrees with the pin
    # the reference-protocol files the issue names are pinned
    for key in ("syncnet_v2", "s3fd", "fan_2d", "fan_2d_pth", "fid_inception_torchscript", "alexnet"):
        assert weights.pinned(key), key


def test_installed_bundled_files_match_their_pins() -> None:
    """The digests computed from installed package files are what the table says (the pins are real)."""
    for key in ("fid_inception_torchscript", "dlib_landmarks68", "dlib_face_recognition", "dlib_landmarks5"):
        state, path, digest = weights.check(key)
        if state == "package missing":
            pytest.skip(f"{key}: its package is not installed")
        assert state == "found" and digest == weights.REGISTRY[key].sha256, (key, path)
        assert path.stat().st_size == weights.REGISTRY[key].size


def _random_syncnet(root: Path) -> Path:
    from metrics.syncnet_model import SyncNetV2

    torch.manual_seed(1)
    p = root / "syncnet" / "syncnet_v2.model"
    p.parent.mkdir(parents=True)
    torch.save({k: v for k, v in SyncNetV2().state_dict().items() if not k.endswith("num_batches_tracked")}, p)
    return p


def test_random_syncnet_is_bad_checksum_and_override_is_explicit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.commands.weights import status_rows
    from metrics.syncnet_model import load_syncnet

    monkeypatch.setenv("REALTALK_BENCH_WEIGHTS", str(tmp_path))
    monkeypatch.delenv("REALTALK_BENCH_UNVERIFIED_WEIGHTS", raising=False)
    p = _random_syncnet(tmp_path)
    state, path, digest = weights.check("syncnet_v2")
    assert (state, path) == ("bad checksum", p) and digest == weights.file_sha256(p)
    assert not weights.available("syncnet_v2")
    with pytest.raises(WeightsMissingError, match=weights.REGISTRY["syncnet_v2"].sha256) as e:
        weights.require("syncnet_v2")
    assert str(p) in str(e.value) and digest in str(e.value)
    row = next(r for r in status_rows() if r["key"] == "syncnet_v2")
    assert row["state"] == "bad checksum" and row["pin"] == "pinned" and "download_model.sh" in row["sha256_source"]
    # the documented override: the real loader still runs, the state says 'unverified'
    monkeypatch.setenv("REALTALK_BENCH_UNVERIFIED_WEIGHTS", "1")
    assert weights.check("syncnet_v2")[0] == "unverified"
    with pytest.warns(UserWarning, match="UNVERIFIED"):
        net = load_syncnet(weights.require("syncnet_v2"))
    assert not net.training
    assert weights.state_label("syncnet_v2") == "unverified"


def test_unpinned_file_in_use_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.commands.weights import status_rows

    f = tmp_path / "wav2lip.pth"
    f.write_bytes(b"not a real checkpoint, but present")
    monkeypatch.setitem(weights.REGISTRY, "wav2lip", dataclasses.replace(weights.REGISTRY["wav2lip"], locate=lambda: f))
    assert weights.check("wav2lip")[0] == "found"
    assert weights.state_label("wav2lip") == "found (unpinned)"
    assert "SharePoint" in weights.REGISTRY["wav2lip"].sha256_source  # why it is unpinned, shown by status
    row = next(r for r in status_rows() if r["key"] == "wav2lip")
    assert row["pin"] == "unpinned" and row["sha256_source"].startswith("unpinned:")
    # a pinned file present and correct is not reported
    assert weights.state_label("fid_inception_torchscript") in ("found", "package missing")


def test_wrong_content_at_a_pinned_place_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("REALTALK_BENCH_UNVERIFIED_WEIGHTS", raising=False)
    dst = weights.REGISTRY["s3fd"].path()
    dst.parent.mkdir(parents=True)
    dst.write_bytes(b"truncated download")
    assert weights.check("s3fd")[0] == "bad checksum"
    with pytest.raises(WeightsMissingError, match="619a31681264d3f7"):
        weights.require("s3fd")


def test_run_start_warns_for_each_metric_on_an_unpinned_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's start-of-run warning follows the metric's own protocol: the bundled dlib landmark file
    unpinned -> LMD and AV-sync warn and their protocols say so; pinned (as shipped) -> no warning."""
    from harness.runner import unpinned_warnings
    from metrics.base import get_metric

    metrics = {n: get_metric(n) for n in ("lmd", "av_sync", "psnr")}
    assert unpinned_warnings({n: m.protocol() for n, m in metrics.items()}) == []
    w = weights.REGISTRY["dlib_landmarks68"]
    monkeypatch.setitem(weights.REGISTRY, "dlib_landmarks68", dataclasses.replace(w, sha256=None,
                                                                                 sha256_source="unpinned: test"))
    lines = unpinned_warnings({n: m.protocol() for n, m in metrics.items()})
    assert [ln.split()[2] for ln in lines] == ["lmd", "av_sync"]
    assert metrics["lmd"].protocol().settings["weights_state"] == "found (unpinned)"
