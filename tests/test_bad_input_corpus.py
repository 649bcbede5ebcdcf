"""Bad-input corpus (issue 15 item 1): broken files, wrong content, broken manifests, bad model files and a
failing disk, each built at test time from ../shared/data and run through the real commands (`metrics`, `run`
with one manifest holding every clip case + one good clip, `splits verify`, `weights verify`). Every case
must end with its exit code and one line that names the file and the problem, never a traceback.

Set CORPUS_TABLE=PATH to write the table of every case (case, command, exit code, message) as markdown.
"""
from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import _corpus_media as cm  # noqa: E402

from harness.cli import main  # noqa: E402

N = 30  # frames of the short clips (1.2 s at 25 fps)
TABLE: list[tuple[str, str, int, str]] = []


def _record(case: str, command: str, code: int, message: str) -> None:
    TABLE.append((case, command, code, message))


@pytest.fixture(scope="module", autouse=True)
def _write_table():
    yield
    cm.write_case_table("CORPUS_TABLE", ["case", "command", "exit", "message"],
                        [(c, f"`{cmd}`", str(code), msg) for c, cmd, code, msg in TABLE])


@pytest.fixture(scope="module")
def corpus(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus folder (also the data root of the manifests below): every file of every case."""
    d = tmp_path_factory.mktemp("corpus")
    frames = cm.base_frames(data_root, 2 * N)
    speech = cm.read_audio(data_root / cm.BASE_WAV, cm.SR, duration_s=2 * N / cm.FPS)
    rng = np.random.default_rng(0)
    cm.write_video(d / "good.mp4", frames[:N], cm.FPS, audio=speech[: N * 640])
    cm.write_wav(d / "speech.wav", speech)
    (d / "zero.mp4").write_bytes(b"")
    (d / "random.mp4").write_bytes(rng.integers(0, 256, 20000, dtype=np.uint8).tobytes())
    real = (data_root / "video-retalking/face/5.mp4").read_bytes()  # moov atom at the end: cut, it is lost
    (d / "trunc_moov.mp4").write_bytes(real[: len(real) // 2])
    full = cm.write_video(d / "faststart.mp4", frames[:N])  # moov first: cut mid-stream, the header is intact
    data = full.read_bytes()
    (d / "trunc_mid.mp4").write_bytes(data[: int(len(data) * 0.4)])
    intra = cm.encode(d / "intra.mp4", frames[:N], options={"g": "1", "crf": "18"})
    cm.corrupt_middle(intra, d / "corrupt_frame.mp4")
    wav = bytearray((d / "speech.wav").read_bytes())
    wav[22:24] = (0).to_bytes(2, "little")  # channels = 0
    wav[24:28] = (0).to_bytes(4, "little")  # sample rate = 0
    (d / "bad_header.wav").write_bytes(bytes(wav))
    cm.write_video(d / "no_audio.mp4", frames[:N])
    blank = np.stack([np.full((256, 256, 3), 90 + (i % 3), np.uint8) for i in range(2 * N)])
    cm.write_video(d / "no_face.mp4", blank[:N])
    cm.write_video(d / "face_first_half.mp4", np.concatenate([frames[:N], blank[:N]]),
                   audio=speech[: 2 * N * 640])
    gap = frames[:N].copy()
    gap[10:18] = blank[10:18]
    cm.write_video(d / "face_gap_8.mp4", gap)
    cm.write_video(d / "two_frames.mp4", frames[:2])
    cm.write_video(d / "gen_half.mp4", frames[: N // 2])
    cm.write_video(d / "gen_128.mp4", np.stack([_resize(f, 128, 128) for f in frames[:N]]))
    cm.write_video(d / "gen_wide.mp4", frames[:N, 64:192])
    return d


def _resize(f: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    return cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA)


def _cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err + cap.out
    return code, cap.out, cap.err


def _one_error_line(err: str) -> str:
    """The command's one `error:` line (the BenchError hint, when any, follows on its own line)."""
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


# ---- metrics: one pair per case ---------------------------------------------------------------------------
# (case, --gt, --gen, --audio, exit, what the message must say, the file it must name)
METRIC_CASES = [
    ("zero bytes", "zero.mp4", "good.mp4", None, 1, "empty file (0 bytes)", "zero.mp4"),
    ("random bytes named .mp4", "random.mp4", "good.mp4", None, 1, "cannot open as media", "random.mp4"),
    ("truncated mp4, moov missing", "trunc_moov.mp4", "good.mp4", None, 1, "cannot open as media", "trunc_moov.mp4"),
    ("truncated mid-stream, moov present", "good.mp4", "trunc_mid.mp4", None, 1, "truncated video", "trunc_mid.mp4"),
    ("wav with a bad header (--audio)", "good.mp4", "good.mp4", "bad_header.wav", 1, "cannot open as media",
     "bad_header.wav"),
    ("audio-only file as the video", "speech.wav", "good.mp4", None, 1, "no video stream", "speech.wav"),
    ("no face in any frame", "no_face.mp4", "no_face.mp4", None, 1, "no face found in any of the 30 frames",
     "no_face.mp4"),
    ("face in only the first half (30 of 60 frames)", "face_first_half.mp4", "face_first_half.mp4", None, 1,
     "face missing for more than 25 frames at frames 30-59", "face_first_half.mp4"),
    ("generated video with fewer than 3 frames", "good.mp4", "two_frames.mp4", None, 1,
     "generated video has 2 frame(s); at least 3", "two_frames.mp4"),
    ("generated shorter than ground truth by 50%", "good.mp4", "gen_half.mp4", None, 1,
     "generated video has 15 frames, the ground truth 30: 15 (50%) missing", "gen_half.mp4"),
    ("generated of another aspect ratio", "good.mp4", "gen_wide.mp4", None, 1, "another aspect ratio",
     "gen_wide.mp4"),
    ("missing file", "good.mp4", "not_there.mp4", None, 1, "file does not exist", "not_there.mp4"),
    # scored, with a warning line naming the file
    ("corrupt frame in the middle (decodes the rest)", "corrupt_frame.mp4", "corrupt_frame.mp4", "speech.wav", 0,
     "1 corrupt video frame(s) at 0.60s", "corrupt_frame.mp4"),  # packet 15 of 30 at 25 fps (cm.corrupt_middle)
    ("generated of another resolution, same aspect", "good.mp4", "gen_128.mp4", None, 0,
     "generated frames 128x128 resized to the ground truth's 256x256", "gen_128.mp4"),
    ("face missing on 8 frames (within the 25-frame gap rule)", "face_gap_8.mp4", "face_gap_8.mp4", None, 0,
     "no face detected on 8 of 30 frames (10-17)", "face_gap_8.mp4"),
    # a metric named in --metrics that cannot be computed: exit 1 with one error line, as `run`
    ("video without audio, no --audio", "no_audio.mp4", "no_audio.mp4", None, 1,
     "error: metric av_sync unavailable: needs the driving audio", None),
]


@pytest.mark.parametrize("gop", ["intra", "gop12-bframes"])
def test_corrupt_frame_found_whatever_the_decoder_threads(data_root: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch, gop: str) -> None:
    """The same corrupt packet, decoded with 1 and with 3 threads: FFmpeg raises a few packets late with frame
    threads and, on one thread, conceals an intra frame and flags it instead of raising. Either way the file
    reads as the same frames, with 1 corrupt frame at the corrupted packet's own time, whole or streamed."""
    import warnings

    import harness.core.media as media

    opts = {"g": "1", "crf": "18"} if gop == "intra" else {"g": "12", "crf": "18"}
    frames = cm.base_frames(data_root, N)
    src = cm.encode(tmp_path / "src.mp4", frames, options=opts)
    bad = tmp_path / "bad.mp4"
    k = cm.corrupt_middle(src, bad)  # index in decode order
    import av

    with av.open(str(src)) as c:
        v = c.streams.video[0]
        pts = sorted(float(pk.pts * v.time_base) for pk in c.demux(v) if pk.size)
        c.seek(0)
        decode_order = [float(pk.pts * v.time_base) for pk in c.demux(v) if pk.size]
    want = decode_order[k]
    assert want in pts
    seen = {}
    for threads in (1, 3):
        monkeypatch.setattr(media, "DECODE_THREADS", threads)
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            whole = media.read_video(bad)
            native = media.read_video(bad, fps=None)
            streamed = media.open_video(bad)
            chunks = np.concatenate(list(streamed.frames.chunks(size=7)))
        assert whole.corrupt_frames == native.corrupt_frames == streamed.frames.corrupt_frames == 1, threads
        np.testing.assert_array_equal(chunks, whole.frames)
        msgs = [str(w.message) for w in said if "corrupt" in str(w.message)]
        assert msgs and all(f"1 corrupt video frame(s) at {want:.2f}s" in m for m in msgs), (threads, msgs)
        assert len(native.frames) == N - 1  # native frames: the corrupt one is not there
        seen[threads] = whole.frames
    np.testing.assert_array_equal(seen[1], seen[3])


@pytest.mark.parametrize("case,gt,gen,audio,code,says,names", METRIC_CASES, ids=[c[0] for c in METRIC_CASES])
def test_metrics_command(corpus: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                         case: str, gt: str, gen: str, audio: str | None, code: int, says: str,
                         names: str | None) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    metrics = "ssim,psnr,av_sync" if names is None else "ssim,psnr"
    argv = ["metrics", "--gt", str(corpus / gt), "--gen", str(corpus / gen), "--metrics", metrics]
    if audio:
        argv += ["--audio", str(corpus / audio)]
    got, out, err = _cli(capsys, argv)
    line = next((ln for ln in (err + out).splitlines() if says in ln), None)
    assert line is not None, f"{case}: {says!r} not in\n{out}\n{err}"
    if names:
        assert str(corpus / names) in line, line
    if code:
        assert line == _one_error_line(err)
    else:
        assert "SSIM" in out  # scored
    assert got == code, err
    _record(case, f"metrics --gt {gt} --gen {gen}" + (f" --audio {audio}" if audio else ""), got,
            line.replace(str(corpus) + "/", ""))


# ---- run: one manifest, every clip case + one good clip ---------------------------------------------------
# clip_id -> (video, audio, what the failure must say, file named) ; None = must finish
RUN_CLIPS: dict[str, tuple[str, str | None, str | None, str | None]] = {
    "good": ("good.mp4", None, None, None),
    "corrupt_frame": ("corrupt_frame.mp4", "speech.wav", None, "1 corrupt video frame(s)"),  # decodes the rest
    "face_gap_8": ("face_gap_8.mp4", "speech.wav", None, "no face detected on 8 of 30 frames (10-17)"),
    "zero_bytes": ("zero.mp4", "speech.wav", "empty file (0 bytes)", "zero.mp4"),
    "random_bytes": ("random.mp4", "speech.wav", "cannot open as media", "random.mp4"),
    "truncated_moov": ("trunc_moov.mp4", "speech.wav", "cannot open as media", "trunc_moov.mp4"),
    "truncated_mid": ("trunc_mid.mp4", "speech.wav", "truncated video", "trunc_mid.mp4"),
    "bad_header_wav": ("no_audio.mp4", "bad_header.wav", "cannot open as media", "bad_header.wav"),
    "audio_only_as_video": ("speech.wav", None, "no video stream", "speech.wav"),
    "no_audio_no_speech_file": ("no_audio.mp4", None, "no audio stream", "no_audio.mp4"),
    "no_face": ("no_face.mp4", "speech.wav", "no face found in any of the 30 frames", "no_face.mp4"),
    "face_first_half": ("face_first_half.mp4", None, "face missing for more than 25 frames at frames 30-59",
                        "face_first_half.mp4"),
    "fewer_than_3_frames": ("two_frames.mp4", "speech.wav", "at least 3", "two_frames.mp4"),
    "missing_file": ("not_there.mp4", "speech.wav", "file does not exist", "not_there.mp4"),
}


def _manifest(path: Path, clips: list[dict], files: dict | None = None) -> Path:
    doc = {"name": path.stem, "description": "bad-input corpus", "selection_rule": "test cases", "clips": clips}
    if files:
        doc["files"] = files
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_run_records_every_bad_clip_and_finishes_the_good_ones(corpus: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    clips = [{"clip_id": cid, "identity": cid, "video": v, **({"audio": a} if a else {})}
             for cid, (v, a, _s, _n) in RUN_CLIPS.items()]
    man = _manifest(tmp_path / "corpus.yaml", clips)
    out = tmp_path / "run"
    argv = ["run", "--split", str(man), "--root", str(corpus), "--methods", "ground_truth", "--settings",
            "reconstruction", "--metrics", "ssim,psnr", "--out", str(out), "--no-videos", "--no-progress",
            "--n-boot", "50"]
    code, stdout, _ = _cli(capsys, argv)
    assert code == 1  # clips failed
    summary = json.loads((out / "summary.json").read_text())
    failed = {f["clip_id"]: f["error"] for f in summary["failures"]}
    for cid, (_v, _a, says, names) in RUN_CLIPS.items():
        rec = json.loads((out / "clips/ground_truth/reconstruction" / f"{cid}.json").read_text())
        if says is None:
            assert rec["status"] == "ok", (cid, rec.get("error"))
            assert cid in summary["clip_set"]["reconstruction"]["common"]
            said = rec.get("input_warnings", [])
            if names:  # finished, and the record says what was held / interpolated
                assert len(said) == 1 and names in said[0] and str(corpus / RUN_CLIPS[cid][0]) in said[0], said
            _record(f"run: {cid}", "run --split corpus.yaml", code,
                    "finished (status ok)" + (f"; record input_warnings: {said[0]}" if said else "").replace(
                        str(corpus) + "/", ""))
            continue
        err = failed[cid]
        assert rec["status"] == "failed" and rec["error"] == err
        assert "\n" not in err and says in err and str(corpus / names) in err, (cid, err)
        assert f"[failed] ground_truth/reconstruction/{cid}: {err}" in stdout.replace("\n", "") or cid in stdout
        _record(f"run: {cid}", "run --split corpus.yaml", code, err.replace(str(corpus) + "/", ""))
    ok = summary["results"]["reconstruction"]["ground_truth"]["SSIM"]
    assert ok["n_clips"] == 3 and ok["mean"] == pytest.approx(1.0)


# ---- manifests: splits verify (and run, which refuses the same manifest) ------------------------------------
def _good_clip(**kw) -> dict:
    return {"clip_id": "good", "identity": "a", "video": "good.mp4", **kw}


MANIFEST_CASES = {
    "missing file": ([_good_clip(), {"clip_id": "gone", "identity": "b", "video": "not_there.mp4"}], None,
                     "not_there.mp4", "missing"),
    "checksum that does not match": ([_good_clip()], {"good.mp4": {"sha256": "0" * 64}}, "good.mp4",
                                     "sha256"),
    "broken media file": ([_good_clip(), {"clip_id": "trunc", "identity": "b", "video": "trunc_moov.mp4"}], None,
                          "trunc_moov.mp4", "unreadable: cannot open as media"),
    "duplicate clip_id": ([_good_clip(), _good_clip()], None, None, "duplicate clip_id in manifest: 'good'"),
    "drive_clip that does not exist": ([_good_clip(drive_clip="nobody")], None, None,
                                       "drive_clip 'nobody' is not in the split"),
    "path that escapes the root": ([_good_clip(video="../../etc/passwd")], None, None,
                                   "escapes the data root"),
}


@pytest.mark.parametrize("case", list(MANIFEST_CASES))
def test_splits_verify_and_run_on_bad_manifests(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    clips, files, row_file, says = MANIFEST_CASES[case]
    man = _manifest(tmp_path / "m.yaml", clips, files)
    code, out, err = _cli(capsys, ["splits", "verify", str(man), "--root", str(corpus)])
    assert code == 1
    if row_file is None:  # the manifest itself is refused
        line = _one_error_line(err)
        assert says in line and str(man) in line, line
    else:
        line = next(ln for ln in out.splitlines() if row_file in ln and "FAIL" in ln)
        assert says in line, line
    _record(f"manifest: {case}", "splits verify m.yaml", code, line.replace(str(tmp_path) + "/", ""))
    if row_file is None:
        code, _, err = _cli(capsys, ["run", "--split", str(man), "--root", str(corpus), "--methods", "ground_truth",
                                     "--settings", "reconstruction", "--metrics", "ssim", "--out",
                                     str(tmp_path / "run"), "--no-progress", "--no-videos"])
        assert code == 1 and says in _one_error_line(err)
        _record(f"manifest: {case}", "run --split m.yaml", code, _one_error_line(err).replace(str(tmp_path) + "/", ""))


def test_bad_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    man = tmp_path / "bad.yaml"
    man.write_text("name: x\nclips: [ {clip_id: a, video: a.mp4\n  - oops: [\n")
    for argv in (["splits", "verify", str(man)], ["run", "--split", str(man), "--methods", "ground_truth",
                                                  "--out", str(tmp_path / "r"), "--no-progress"]):
        code, _, err = _cli(capsys, argv)
        line = _one_error_line(err)
        assert code == 1 and str(man) in line and "cannot read manifest" in line, err
        assert len(err.strip().splitlines()) == 1
        _record("manifest: bad YAML", f"{argv[0]} ... bad.yaml", code, line.replace(str(tmp_path) + "/", ""))


# ---- model files -------------------------------------------------------------------------------------------
def _realtalk_run(corpus: Path, tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    man = _manifest(tmp_path / "one.yaml", [_good_clip()])
    code, _, err = _cli(capsys, ["run", "--split", str(man), "--root", str(corpus), "--methods", "realtalk",
                                 "--method-arg", f"realtalk.checkpoint={ckpt}", "--settings", "reconstruction",
                                 "--metrics", "ssim", "--out", str(tmp_path / "run"), "--no-progress", "--no-videos"])
    return code, _one_error_line(err)


def test_corrupt_checkpoint(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "realtalk.pt"
    ckpt.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    code, line = _realtalk_run(corpus, tmp_path, ckpt, capsys)
    assert code == 1 and str(ckpt) in line and "not a loadable checkpoint" in line, line
    _record("model: corrupt checkpoint (random bytes)", "run --methods realtalk --method-arg realtalk.checkpoint=X",
            code, line.replace(str(tmp_path) + "/", ""))


def test_checkpoint_of_another_architecture(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A real RealTalk checkpoint whose renderer weights come from another network: refused before any clip."""
    import torch

    from realtalk.a2e import AudioToExpression
    from realtalk.audio_features import get_featurizer
    from realtalk.config import small
    from realtalk.face_models import load_default_face_model

    fm = load_default_face_model()
    cfg = small().with_face_model(fm.n_id, fm.n_exp, fm.n_pose).with_audio_dim(get_featurizer("logmel").dim)
    a2e = AudioToExpression(cfg.a2e)
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 3))
    ckpt = tmp_path / "other_arch.pt"
    torch.save({"format": 1, "kind": "realtalk", "config": cfg.to_dict(), "a2e": a2e.state_dict(),
                "renderer": other.state_dict(), "face_model": f"{fm.name}:{fm.fingerprint()}",
                "featurizer": "logmel"}, ckpt)
    code, line = _realtalk_run(corpus, tmp_path, ckpt, capsys)
    assert code == 1 and str(ckpt) in line and "do not fit" in line, line
    _record("model: checkpoint of another architecture", "run --methods realtalk --method-arg realtalk.checkpoint=X",
            code, line.replace(str(tmp_path) + "/", ""))


def test_weights_file_with_bad_sha256(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A model file of the table (harness.core.weights) with the wrong bytes: `weights verify` exits 1 naming it, and the
    metric that needs it is unavailable with the same reason instead of loading it."""
    from harness.core import weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("REALTALK_BENCH_UNVERIFIED_WEIGHTS", raising=False)
    p = weights.REGISTRY["alexnet"].path()
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"\0" * 1000)
    code, out, _ = _cli(capsys, ["weights", "verify"])
    line = next(ln for ln in out.splitlines() if "alexnet" in ln)
    assert code == 1 and "bad checksum" in line and str(p) in line.replace("\n", ""), out
    _record("model: weights file with a bad sha256", "weights verify", code, line.replace(str(tmp_path) + "/", ""))
    with pytest.raises(weights.WeightsMissingError, match="has sha256") as e:
        weights.require("alexnet")
    assert str(p) in str(e.value)
    code, out, err = _cli(capsys, ["metrics", "--gt", str(corpus / "good.mp4"), "--gen", str(corpus / "good.mp4"),
                                   "--metrics", "lpips,ssim"])
    line = _one_error_line(err)
    assert code == 1 and line.startswith("error: metric lpips unavailable:") and "bad checksum" in line, err
    assert str(p) in line and "SSIM" in out, out  # the other named metric is still scored and shown
    _record("model: weights file with a bad sha256", "metrics --metrics lpips,ssim", code, line.replace(str(tmp_path) + "/", ""))


def test_half_written_cache_file_is_never_visible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash between write and rename (os.replace never happens) leaves nothing a reader takes for the entry; a
    truncated entry written by something else is a miss, not a crash."""
    import harness.core.fsutil as fsutil
    from harness.core.cache import Cache

    cache = Cache(tmp_path / "cache")
    arrays = {"x": np.arange(10000, dtype=np.float32)}

    def crash(src, dst):
        raise KeyboardInterrupt("killed between write and rename")

    monkeypatch.setattr(fsutil.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        cache.put_arrays("k1", arrays)
    monkeypatch.undo()
    assert cache.get_arrays("k1") is None
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # the temp file was removed too
    cache.put_arrays("k2", arrays)
    entry = next(p for p in (tmp_path / "cache").rglob("*") if p.is_file())
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # half an entry on disk
    assert cache.get_arrays("k2") is None
    _record("model: half-written cache file", "harness.core.cache.Cache (os.replace interrupted)", 0,
            "nothing visible to readers; a truncated entry reads as a miss")


# ---- environment -------------------------------------------------------------------------------------------
def test_full_disk_while_writing_a_record_then_resume(corpus: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC on the second clip record: one-line error, exit 1; the store stays readable and a rerun finishes
    with the numbers of an uninterrupted run."""
    import harness.store as store_mod

    man = _manifest(tmp_path / "two.yaml", [_good_clip(), {"clip_id": "good2", "identity": "b",
                                                           "video": "face_gap_8.mp4", "audio": "speech.wav"}])
    argv = ["run", "--split", str(man), "--root", str(corpus), "--methods", "ground_truth", "--settings",
            "reconstruction", "--metrics", "ssim,psnr", "--no-progress", "--no-videos", "--n-boot", "50"]
    real = store_mod.atomic_write_bytes  # the store's one writer of clip records (and states, videos)
    calls = {"n": 0}

    def full_disk(path, data, *a, **kw):
        if "clips" in Path(path).parts and Path(path).suffix == ".json":
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data, *a, **kw)

    monkeypatch.setattr(store_mod, "atomic_write_bytes", full_disk)
    code, _, err = _cli(capsys, argv + ["--out", str(tmp_path / "run")])
    line = _one_error_line(err)
    assert code == 1 and "No space left on device" in line and "good2.json" in line, err
    _record("environment: disk full (ENOSPC) writing a record", "run", code, line.replace(str(tmp_path) + "/", ""))
    monkeypatch.undo()
    recs = list((tmp_path / "run").rglob("clips/**/*.json"))
    assert len(recs) == 1 and json.loads(recs[0].read_text())["status"] == "ok"  # readable, no partial file
    assert _cli(capsys, argv + ["--out", str(tmp_path / "run")])[0] == 0  # resumes
    assert _cli(capsys, argv + ["--out", str(tmp_path / "clean")])[0] == 0
    a = (tmp_path / "run/per_clip.csv").read_bytes()
    assert a == (tmp_path / "clean/per_clip.csv").read_bytes()


def test_read_only_output_folder(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """EROFS from the store's writer (what a read-only mount raises; chmod does not stop root): a clear error."""
    import harness.core.fsutil as fsutil

    man = _manifest(tmp_path / "one.yaml", [_good_clip()])

    def read_only(path, data):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(fsutil, "atomic_write_bytes", read_only)
    code, _, err = _cli(capsys, ["run", "--split", str(man), "--root", str(corpus), "--methods", "ground_truth",
                                 "--settings", "reconstruction", "--metrics", "ssim", "--out", str(tmp_path / "ro"),
                                 "--no-progress", "--no-videos"])
    line = _one_error_line(err)
    assert code == 1 and "Read-only file system" in line and str(tmp_path / "ro") in line, err
    _record("environment: read-only output folder (EROFS)", "run", code, line.replace(str(tmp_path) + "/", ""))


# ---- train: a manifest whose train clip is corrupt ---------------------------------------------------------
TRAIN_CASES = {  # case -> (video, what the one error line says)
    "zero bytes": ("zero.mp4", "empty file (0 bytes)"),
    "truncated mid-stream": ("trunc_mid.mp4", "truncated video"),
    "random bytes named .mp4": ("random.mp4", "cannot open as media"),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_train_on_a_corrupt_clip(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    """`train` loads every train clip before the first step: a corrupt one stops it with one line naming the file
    (nothing is trained on a split that silently lost a clip), and no checkpoint is written."""
    video, says = TRAIN_CASES[case]
    man = _manifest(tmp_path / "train.yaml", [
        {"clip_id": "bad", "identity": "b", "video": video, "audio": "speech.wav", "role": "train"},
        _good_clip(role="train", audio="speech.wav")])
    out = tmp_path / "train"
    code, _, err = _cli(capsys, ["train", "a2e", "--split", str(man), "--root", str(corpus), "--steps", "1",
                                 "--out", str(out), "--no-progress"])
    line = _one_error_line(err)
    assert code == 1 and says in line and str(corpus / video) in line, err
    assert not list(out.glob("*.pt")) if out.exists() else True
    _record(f"train: {case}", "train a2e --split m.yaml", code, line.replace(str(corpus) + "/", ""))


# ---- report: a run folder that is partial or corrupt -------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real finished run store (one good clip, ground_truth, SSIM) to break in the report cases."""
    import contextlib
    import io

    d = tmp_path_factory.mktemp("run")
    man = _manifest(d / "one.yaml", [_good_clip()])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(["run", "--split", str(man), "--root", str(corpus), "--methods", "ground_truth", "--settings",
                     "reconstruction", "--metrics", "ssim", "--out", str(d / "run"), "--no-progress", "--n-boot", "20"])
    assert code == 0
    return d / "run"


def _break_none(run: Path) -> None:
    pass


def _no_summary(run: Path) -> None:  # killed after the clip records, before the summary
    (run / "summary.json").unlink()


def _truncated_summary(run: Path) -> None:
    data = (run / "summary.json").read_bytes()
    (run / "summary.json").write_bytes(data[: len(data) // 2])


def _summary_not_an_object(run: Path) -> None:
    (run / "summary.json").write_text("[1, 2, 3]\n")


def _results_not_a_mapping(run: Path) -> None:
    s = json.loads((run / "summary.json").read_text())
    s["results"] = ["reconstruction"]
    (run / "summary.json").write_text(json.dumps(s))


def _truncated_per_clip(run: Path) -> None:
    data = (run / "per_clip.csv").read_bytes()
    (run / "per_clip.csv").write_bytes(data[: data.index(b"\n") // 2])  # half a header line


def _binary_per_clip(run: Path) -> None:
    (run / "per_clip.csv").write_bytes(np.random.default_rng(2).integers(0, 256, 3000, dtype=np.uint8).tobytes())


def _corrupt_clip_record(run: Path) -> None:
    rec = next((run / "clips").rglob("*.json"))
    rec.write_text('{"method": "ground_truth", "sett')


REPORT_CASES = {  # case -> (how the folder is broken, what the one error line says, the file it names)
    "no summary.json (a killed run)": (_no_summary, "no summary.json", ""),
    "summary.json cut in half": (_truncated_summary, "summary.json is not valid JSON", "summary.json"),
    "summary.json not an object": (_summary_not_an_object, "summary.json", "summary.json"),
    "summary.json results not a mapping": (_results_not_a_mapping, "summary.json", "summary.json"),
    "per_clip.csv cut mid-header": (_truncated_per_clip, "per_clip.csv", "per_clip.csv"),
    "per_clip.csv random bytes": (_binary_per_clip, "per_clip.csv", "per_clip.csv"),
}


@pytest.mark.parametrize("case", list(REPORT_CASES))
def test_report_on_a_broken_run_folder(finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       case: str) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    brk, says, names = REPORT_CASES[case]
    brk(run)
    code, _, err = _cli(capsys, ["report", str(run), "--out", str(tmp_path / "report"), "--no-videos"])
    line = _one_error_line(err)
    assert code == 1 and says in line and str(run / names).rstrip("/") in line, err
    _record(f"report: {case}", "report RUN --out DIR", code, line.replace(str(tmp_path) + "/", ""))


def test_report_on_intact_and_record_damaged_run(finished_run: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The gate above can pass: the intact folder reports (exit 0); a damaged clip record (the summary and the
    table are what the report reads) still reports, without a traceback."""
    import shutil

    for brk in (_break_none, _corrupt_clip_record):
        run = tmp_path / brk.__name__
        shutil.copytree(finished_run, run)
        brk(run)
        code, out, err = _cli(capsys, ["report", str(run), "--out", str(tmp_path / f"rep{brk.__name__}"),
                                       "--no-videos"])
        assert code == 0 and "report:" in out, err
