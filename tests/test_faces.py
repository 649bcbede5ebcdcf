"""harness.core.faces on the real clips: detection, tracking, crops/paste, landmarks, caching, loaders."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from harness.core import weights
from harness.core.cache import Cache
from harness.core.errors import NoFaceError, WeightsMissingError
from harness.core.faces.clip import clip_faces, landmarks_on_crops
from harness.core.faces.crop import CropTrack, crop_frames, make_crop_track, paste_frames
from harness.core.faces.detect import box_iou, get_detector
from harness.core.faces.landmarks import get_landmarker
from harness.core.faces.track import track_faces
from harness.core.media import read_video

STYLETALK = ["Obama_clip1", "Obama_clip2", "Obama_clip3", "andrew_clip_1", "andrew_clip_2",
             "feifeili_clip1", "feifeili_clip2_short", "feifeili_clip3"]


@pytest.fixture(scope="module")
def hog():
    return get_detector("dlib_hog")


@pytest.fixture(scope="module")
def dlib_lm():
    return get_landmarker("dlib")


@pytest.fixture()
def torch_one_thread():
    """FAN(4) on CPU with one intra-op thread: on the shared 2-core machine under load, two threads made a
    256 px forward ~10x slower (measured 9.4 s vs 0.7 s)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _video(root: Path, rel: str, n: int, start: int = 0):
    return read_video(root / rel, fps=25.0, start=start, max_frames=n)


@pytest.mark.parametrize("clip", STYLETALK)
def test_landmarks_on_every_frame_styletalk(data_root, clip, hog, dlib_lm):
    """2 s (50 frames at 25 fps) of each styletalk clip: a face track, crops and 68 landmarks on every frame."""
    v = _video(data_root, f"styletalk/video/{clip}.mp4", 50, start=25)
    cf = clip_faces(v, hog, dlib_lm, cache=False)
    assert cf.crops.shape == (50, 256, 256, 3) and cf.landmarks.shape == (50, 68, 2)
    assert cf.found.all(), f"no landmarks on frames {np.flatnonzero(~cf.found)}"
    assert cf.track.detected.mean() > 0.9
    lm = cf.landmarks
    assert (lm > -10).all() and (lm < 266).all()
    jaw = lm[:, 16, 0] - lm[:, 0, 0]  # iBUG: 0 and 16 are the jaw ends, 8 the chin, 27-35 nose
    assert (jaw > 80).all() and (jaw < 230).all()
    assert (lm[:, 8, 1] > lm[:, 33, 1]).all() and (lm[:, 33, 1] > lm[:, 27, 1]).all()
    assert cf.landmarker_sha256 == dlib_lm.weights_sha256 and len(cf.landmarker_sha256 or "") == 64
    # generated-crop path (no boxes: prior box confirmed by a detector on the crop) agrees
    again = landmarks_on_crops(cf.crops[::5], dlib_lm)
    assert not np.isnan(again).any()
    assert np.abs(again - lm[::5]).mean() < 4.0


def test_crop_paste_round_trip(data_root, hog):
    """Full 590x590 frames: outside the crop box bit-identical; inside mean abs error < 3 gray levels."""
    v = _video(data_root, "video-retalking/face/3.mp4", 12)
    track = track_faces(v.frames, hog, every=3)
    ct = make_crop_track(track, v.frames.shape[1:3])
    crops = crop_frames(v.frames, ct)
    assert crops.shape == (12, 256, 256, 3) and crops.dtype == np.uint8
    for feather in (0, 12):
        back = paste_frames(v.frames, crops, ct, feather=feather)
        for t in range(len(back)):
            x1, y1, x2, y2 = ct.boxes[t].astype(int)
            inside = np.zeros(back.shape[1:3], bool)
            inside[max(y1, 0):y2, max(x1, 0):x2] = True
            assert np.array_equal(back[t][~inside], v.frames[t][~inside])
            err = np.abs(back[t].astype(int) - v.frames[t].astype(int))[inside].mean()
            assert err < 3.0, err
    # a crop box that leaves the frame: edge padding, the visible part still round-trips
    shifted = CropTrack(boxes=ct.boxes[:2] - [200, 0, 200, 0], size=256)
    c2 = crop_frames(v.frames[:2], shifted, pad="zeros")
    assert (c2[:, :, :10] == 0).all()
    b2 = paste_frames(v.frames[:2], c2, shifted)
    x2 = int(shifted.boxes[0, 2])
    assert np.array_equal(b2[0][:, x2:], v.frames[0][:, x2:])


def test_no_face_raises_with_name(data_root, hog):
    flat = np.full((4, 256, 256, 3), 128, np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (4, 256, 256, 3), dtype=np.uint8)
    bg = _video(data_root, "video-retalking/face/5.mp4", 2).frames[:, :110, :110]
    bg = np.stack([cv2.resize(f, (256, 256)) for f in bg])
    for frames, name in ((flat, "flat.png"), (noise, "noise.png"), (bg, "background.mp4")):
        with pytest.raises(NoFaceError, match=name):
            track_faces(frames, hog, name=name)
    with pytest.raises(NoFaceError, match="noise.png"):
        clip_faces(type("V", (), {"path": "noise.png", "frames": noise, "fps": 25.0,
                                  "source_timestamps": np.arange(4) / 25})(), hog, cache=False)
    assert np.isnan(landmarks_on_crops(flat[:2], "dlib")).all()


def test_gaps_short_interpolated_long_raise(data_root, hog):
    frames = _video(data_root, "styletalk/video/andrew_clip_1.mp4", 40).frames.copy()
    short = frames.copy()
    short[10:13] = 128
    tr = track_faces(short, hog, max_gap=5)
    assert not tr.detected[10:13].any() and tr.detected[:10].all()
    assert np.all(np.isfinite(tr.boxes))
    long = frames.copy()
    long[15:] = 128
    with pytest.raises(NoFaceError, match=r"15-39") as e:
        track_faces(long, hog, max_gap=10, name="andrew_clip_1.mp4")
    assert "andrew_clip_1.mp4" in str(e.value)


def test_two_faces_largest_wins(data_root, hog):
    a = _video(data_root, "video-retalking/face/2.mp4", 3).frames  # 844 px
    b = _video(data_root, "video-retalking/face/3.mp4", 3).frames  # 590 px
    big = np.stack([cv2.resize(f, (420, 420), interpolation=cv2.INTER_AREA) for f in a])
    small = np.stack([cv2.resize(f, (240, 240), interpolation=cv2.INTER_AREA) for f in b])
    canvas = np.zeros((3, 420, 680, 3), np.uint8)
    canvas[:, :240, :240] = small  # small face on the left, appears "first" left-to-right
    canvas[:, :, 260:] = big
    tr = track_faces(canvas, hog, pick="largest", smooth=1)
    assert tr.n_tracks == 2
    assert (tr.boxes[:, 0] >= 260).all()
    tr_small = track_faces(canvas, hog, pick=0, smooth=1)  # index: order of appearance (frame, then x)
    assert (tr_small.boxes[:, 2] <= 240).all()


def test_mtcnn_and_dlib_agree(data_root, hog):
    mtcnn = get_detector("mtcnn")
    ious = []
    for rel in ["video-retalking/face/1.mp4", "video-retalking/face/4.mp4", "styletalk/video/Obama_clip2.mp4"]:
        for f in _video(data_root, rel, 2).frames:
            d, m = hog.detect(f), mtcnn.detect(f)
            assert d.shape[1] == 5 and m.shape[1] == 5 and len(d) >= 1 and len(m) >= 1
            ious.append(box_iou(d[:1], m[:1])[0, 0])
    assert min(ious) > 0.5, ious


def test_smoothing_reduces_jitter(data_root, hog):
    v = _video(data_root, "video-retalking/face/2.mp4", 50)
    raw = track_faces(v.frames, hog, smooth=1)
    sm = track_faces(v.frames, hog, smooth=7)
    def jitter(b):
        return np.diff((b[:, :2] + b[:, 2:]) / 2, axis=0).std()
    assert jitter(sm.boxes) < jitter(raw.boxes)
    assert np.allclose(sm.raw_boxes, raw.boxes)


def test_clip_faces_cached(data_root, tmp_path, hog, dlib_lm, monkeypatch):
    v = _video(data_root, "video-retalking/face/5.mp4", 8)
    cache = Cache(tmp_path / "cache")
    first = clip_faces(v, hog, dlib_lm, cache=cache)
    assert cache.info()["faces"]["entries"] == 1
    import harness.core.faces.clip as clip_mod

    monkeypatch.setattr(clip_mod, "track_faces", lambda *a, **k: pytest.fail("cache miss"))
    second = clip_faces(v, hog, dlib_lm, cache=cache)
    assert np.array_equal(first.crops, second.crops)
    np.testing.assert_array_equal(first.landmarks, second.landmarks)
    v2 = _video(data_root, "video-retalking/face/5.mp4", 8, start=1)  # other frames: other key
    with pytest.raises(pytest.fail.Exception):
        clip_faces(v2, hog, dlib_lm, cache=cache)


def test_unknown_names_and_missing_weights(tmp_path, monkeypatch):
    with pytest.raises(KeyError):
        get_detector("nope")
    with pytest.raises(KeyError):
        get_landmarker("nope")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(WeightsMissingError, match="s3fd"):
        get_detector("s3fd")
    with pytest.raises(WeightsMissingError, match="2DFAN4"):
        get_landmarker("fan")


def test_s3fd_loads_official_format(data_root, tmp_path, monkeypatch):
    """Random S3FD weights saved as the official file (torch.save of s3fd().state_dict()) at the torch
    hub path, loaded through face-alignment's SFDDetector. Detections are meaningless: shapes only."""
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("REALTALK_BENCH_UNVERIFIED_WEIGHTS", "1")  # random weights: pinned digest differs
    dst = weights.REGISTRY["s3fd"].path()
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(s3fd().state_dict(), dst)
    assert weights.available("s3fd")
    det = get_detector("s3fd", max_side=128, threshold=0.99)
    assert det.weights_sha256 == weights.file_sha256(dst)
    out = det.detect(_video(data_root, "video-retalking/face/5.mp4", 1).frames[0])
    assert out.ndim == 2 and out.shape[1] == 5 and out.dtype == np.float32


def test_fan_loads_official_format(data_root, tmp_path, monkeypatch, torch_one_thread):
    """Random FAN(4) weights saved as face-alignment 1.5's file (a torch.save'd state dict,
    2DFAN4-11f355bf06.pth.tar) and loaded through its loading code; landmarks are meaningless: shapes only."""
    import torch
    from face_alignment.models import FAN

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("REALTALK_BENCH_UNVERIFIED_WEIGHTS", "1")  # random weights: pinned digest differs
    dst = weights.REGISTRY["fan_2d_pth"].path()
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(FAN(4).state_dict(), dst)
    lm = get_landmarker("fan", flip_input=False)
    assert lm.weights_sha256 == weights.file_sha256(dst)
    frame = _video(data_root, "styletalk/video/Obama_clip1.mp4", 1).frames[0]
    pts = lm.landmarks(frame, np.array([60, 60, 200, 200], np.float32))
    assert pts.shape == (68, 2) and pts.dtype == np.float32 and np.isfinite(pts).all()


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_fan_loads_torchscript_zip(data_root, tmp_path, monkeypatch, torch_one_thread):
    """face-alignment 1.3/1.4's file: FAN(4) traced to a TorchScript archive (2DFAN4-cd938726ad.zip,
    returning the last stack's heatmaps as the official one does). With only the zip at the hub path the
    landmarker picks it up, and its heatmaps/landmarks match the state-dict path on the same random weights
    (measured: identical, 0.0 px and 0.0 heatmap difference on CPU)."""
    import torch
    from face_alignment.models import FAN

    class LastStack(torch.nn.Module):
        def __init__(self, net: torch.nn.Module):
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)[-1]

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("REALTALK_BENCH_UNVERIFIED_WEIGHTS", "1")  # random weights: pinned digest differs
    torch.manual_seed(0)
    net = FAN(4).eval()
    sd_path = tmp_path / "2DFAN4-11f355bf06.pth.tar"  # outside the hub: the default must pick the zip
    torch.save(net.state_dict(), sd_path)
    zip_path = weights.REGISTRY["fan_2d"].path()
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        traced = torch.jit.trace(LastStack(net), torch.rand(1, 3, 256, 256), check_trace=False)
    torch.jit.save(traced, str(zip_path))
    assert zip_path.suffix == ".zip" and not weights.available("fan_2d_pth")

    lm_zip = get_landmarker("fan", flip_input=False)
    lm_sd = get_landmarker("fan", path=sd_path, flip_input=False)
    assert lm_zip.path == zip_path and lm_zip.weights_sha256 == weights.file_sha256(zip_path)
    assert isinstance(lm_zip._net, torch.jit.ScriptModule) and not lm_zip._net.training
    frame = _video(data_root, "styletalk/video/Obama_clip1.mp4", 1).frames[0]
    box = np.array([60, 60, 200, 200], np.float32)
    a, b = lm_zip.landmarks(frame, box), lm_sd.landmarks(frame, box)
    assert a.shape == (68, 2) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_allclose(a, b, atol=1e-3)
    x = torch.from_numpy(frame[None, :256, :256].transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    with torch.no_grad():
        hz, hs = lm_zip._net(x), lm_sd._net(x)[-1]
    assert hz.shape == hs.shape == (1, 68, 64, 64)
    torch.testing.assert_close(hz, hs, atol=1e-5, rtol=0)
