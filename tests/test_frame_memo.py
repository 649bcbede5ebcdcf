"""The per-frame content memo computes each distinct frame once and keeps order."""
from __future__ import annotations

import numpy as np

from metrics.frame_memo import FrameMemo


def test_memo_computes_each_distinct_frame_once() -> None:
    memo = FrameMemo(max_entries=100)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 255, (2, 8, 8, 3), dtype=np.uint8)
    seen: list[int] = []

    def compute(frames: np.ndarray) -> list[float]:
        seen.append(len(frames))
        return [float(f.mean()) for f in frames]

    out = memo.map("ns", np.stack([a, b, a, a, b]), compute)
    assert seen == [2] and out == [a.mean(), b.mean(), a.mean(), a.mean(), b.mean()]
    memo.map("ns", np.stack([b, a]), compute)
    assert seen == [2]  # all known
    memo.map("other", np.stack([a]), compute)
    assert seen == [2, 1]  # namespaces are separate (e.g. backend, weights)


def test_memo_is_bounded() -> None:
    memo = FrameMemo(max_entries=3)
    frames = np.arange(5 * 12, dtype=np.uint8).reshape(5, 2, 2, 3)
    memo.map("ns", frames, lambda f: list(range(len(f))))
    assert len(memo) == 3


def test_face_models_load_once_per_process() -> None:
    """The detector / landmarker every clip_faces call and LMD instance used to rebuild: one per settings per
    process, shared in harness.core.faces (counted in PASSES.loads), forgotten by clear_all like the networks."""
    from harness.core.faces import reset_face_models
    from harness.core.faces.detect import get_detector
    from harness.core.faces.landmarks import get_landmarker
    from metrics.frame_memo import clear_all
    from metrics.passes import PASSES

    clear_all()
    PASSES.reset()
    lm = get_landmarker("dlib")
    assert get_landmarker("dlib") is lm and PASSES.loads["landmarker:dlib"] == 1
    det = get_detector("dlib_hog")
    assert get_detector("dlib_hog") is det
    other = get_detector("dlib_hog", max_side=160)
    assert other is not det and other.max_side == 160 and PASSES.loads["detector:dlib_hog"] == 2
    clear_all()  # a fresh process loads again
    assert get_landmarker("dlib") is not lm and PASSES.loads["landmarker:dlib"] == 2
    reset_face_models()  # the core's own reset, for callers below the metrics layer
    get_landmarker("dlib")
    assert PASSES.loads["landmarker:dlib"] == 3


def test_clip_faces_and_metrics_share_one_landmarker(data_root) -> None:
    """clip_faces (string names, as every caller passes them), the crop verifier and LMD's landmarks on a real
    clip: one dlib landmarker and one detector per settings for all of them, however often each is called."""
    from harness.core.faces.clip import clip_faces
    from harness.core.media import read_video
    from metrics.frame_memo import clear_all
    from metrics.lmd import LMD
    from metrics.passes import PASSES

    video = read_video(data_root / "styletalk/video/Obama_clip1.mp4", max_frames=4)
    clear_all()
    PASSES.reset()
    faces = clip_faces(video, cache=False)
    clip_faces(video, cache=False)
    a, b = LMD(), LMD()
    a.landmarks(faces.crops)  # the verifier (dlib_hog at max_side=160) + the landmarker
    b.landmarks(faces.crops[::-1].copy())
    assert PASSES.loads["landmarker:dlib"] == 1
    assert PASSES.loads["detector:dlib_hog"] == 2  # clip_faces' tracker + the crop verifier (other settings)


def test_other_weights_file_builds_another_landmarker(data_root, tmp_path, monkeypatch) -> None:
    """The key holds the weights file the backend would load: another file at the default place (a replaced
    download, a test's random network) gets its own model, never the stale one."""
    import dataclasses

    from harness.core import weights
    from harness.core.faces.landmarks import get_landmarker

    first = get_landmarker("dlib")
    link = tmp_path / "shape_predictor_68_face_landmarks.dat"
    link.symlink_to(first.path)  # the real file under another path: a different file to the memo
    w = weights.REGISTRY["dlib_landmarks68"]
    monkeypatch.setitem(weights.REGISTRY, "dlib_landmarks68", dataclasses.replace(w, locate=lambda: link))
    moved = get_landmarker("dlib")
    assert moved is not first and moved.path == link and get_landmarker("dlib") is moved
    monkeypatch.undo()
    assert get_landmarker("dlib") is first


def test_clear_all_forgets_every_network_memo() -> None:
    """Every module-level memo of the metrics layer (a dict of loaded networks, a FrameMemo) is registered with
    clear_all, so a simulated fresh process (tests/_process_state.py) needs no private names; a new memo that
    forgets to register fails here."""
    import importlib

    from metrics import METRIC_MODULES
    from metrics.base import load_all
    from metrics.frame_memo import MEMOS, FrameMemo, clear_all

    load_all()
    mods = [importlib.import_module(m) for m in
            [*METRIC_MODULES, "metrics.landmark_source", "metrics.feature_cache", "metrics.frame_memo"]]
    memos = {f"{m.__name__}.{k}": v for m in mods for k, v in vars(m).items()
             if k.startswith("_") and k[1:2].isupper() and isinstance(v, (dict, FrameMemo))}
    assert {"metrics.fid._NETS", "metrics.csim._EMBEDDERS", "metrics.syncnet_lse._NETS",
            "metrics.lpips_metric._NETS"} <= set(memos)
    unregistered = [k for k, v in memos.items() if not any(v is r for r in MEMOS)]
    assert unregistered == []
    sentinel = object()
    for k, v in memos.items():
        if isinstance(v, dict):
            v[("sentinel", k)] = sentinel
    clear_all()
    assert [k for k, v in memos.items() if isinstance(v, dict) and ("sentinel", k) in v] == []
