"""`realtalk-bench weights ...` and `realtalk-bench metrics ...` end to end."""
from __future__ import annotations


import pytest

from harness.core import weights
from harness.cli import main


def test_weights_status_lists_every_entry(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    from harness.commands.weights import status_rows

    rows = status_rows()
    assert [r["key"] for r in rows] == list(weights.REGISTRY)
    assert {r["state"] for r in rows} <= {"found", "missing", "bad checksum", "unverified", "package missing"}
    assert next(r for r in rows if r["key"] == "fid_inception_torchscript")["state"] == "found"
    assert main(["weights", "status"]) == 0
    out = capsys.readouterr().out
    assert "dlib_landmarks68" in out and "alexnet" in out


def test_weights_verify_and_import(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert main(["weights", "verify"]) == 0
    src = tmp_path / "incoming"
    src.mkdir()
    (src / weights.REGISTRY["alexnet"].filename).write_bytes(b"not the real alexnet")
    assert main(["weights", "import", str(src)]) == 0
    assert weights.check("alexnet")[0] == "bad checksum"
    assert main(["weights", "verify"]) == 1
    assert "bad checksum" in capsys.readouterr().out


def test_weights_fetch_offline_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import urllib.request

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlretrieve", offline)
    assert main(["weights", "fetch", "alexnet"]) == 1
    assert "offline" in capsys.readouterr().out
    assert main(["weights", "fetch", "no_such_key"]) == 1


def test_metrics_real_clip_vs_itself(data_root):
    from harness.core.media import read_video
    from metrics.compute import aligned_crops, compute_pair

    v = read_video(data_root / "video-retalking" / "face" / "2.mp4", fps=25.0, max_frames=10)
    gen, gt = aligned_crops(v, v)
    assert gen.shape == gt.shape == (10, 256, 256, 3)
    res = compute_pair(gen, gt, names=["lmd", "ssim", "psnr", "lpips"])
    assert res.values["lmd"] == {"LMD": 0.0, "M-LMD": 0.0, "F-LMD": 0.0, "FaceCov": 1.0}
    assert res.values["ssim"]["SSIM"] == pytest.approx(1.0)
    assert res.values["psnr"]["PSNR"] == 100.0  # capped (metrics/psnr.py)
    if not weights.available("alexnet"):
        assert res.unavailable["lpips"].startswith("alexnet-owt-7be5be79.pth not at ")


def test_metrics_cli_frame_folder(data_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    from PIL import Image

    from harness.core.media import read_video

    v = read_video(data_root / "video-retalking" / "face" / "5.mp4", fps=25.0, max_frames=6)
    for i, f in enumerate(v.frames):
        Image.fromarray(f).save(tmp_path / f"{i:04d}.png")
    assert main(["metrics", "--gen", str(tmp_path), "--gt", str(tmp_path), "--metrics", "ssim,psnr"]) == 0
    out = capsys.readouterr().out
    assert "SSIM" in out and "100.0000" in out  # PSNR of identical frames: the 100 dB cap


def test_metrics_named_but_unavailable_exits_1(data_root, capsys, monkeypatch):
    """As `run`: a metric named in --metrics that cannot be computed fails the command with one line saying which
    and why; the metrics that could be computed are still shown. styletalk videos carry no audio track."""
    monkeypatch.setenv("COLUMNS", "300")
    clip = str(data_root / "styletalk" / "video" / "Obama_clip3.mp4")
    code = main(["metrics", "--gen", clip, "--gt", clip, "--metrics", "ssim,av_sync", "--max-frames", "60"])
    cap = capsys.readouterr()
    errors = [ln for ln in cap.err.splitlines() if ln.startswith("error: ")]
    assert code == 1 and errors == ["error: metric av_sync unavailable: needs the driving audio (--audio, or a "
                                    "ground-truth video with sound)"], cap.err
    assert "SSIM" in cap.out
    wav = str(data_root / "styletalk" / "wav" / "Obama_clip3.wav")  # with its speech the same pair passes
    assert main(["metrics", "--gen", clip, "--gt", clip, "--metrics", "ssim,av_sync", "--max-frames", "60",
                 "--audio", wav]) == 0
    assert "error:" not in capsys.readouterr().err


def test_named_unavailable_rule():
    """Only metrics named explicitly count (the default 'all' lists what this machine lacks), and a sync metric
    skipped for silent driving audio does not (run skips it per clip and exits 0)."""
    import numpy as np

    from harness.commands.metrics import named_unavailable

    why = {"lpips": "alexnet-owt-7be5be79.pth not at /x", "av_sync": "needs speech: the driving audio is silent"}
    assert named_unavailable(why, None, None) == []
    assert named_unavailable(why, ["ssim", "lpips"], None) == ["lpips"]
    assert named_unavailable(why, ["lpips", "av_sync"], np.zeros(16000, np.float32)) == ["lpips"]
