"""AV-corr / AV-offset (metrics/av_sync.py) on the demo split's real test clips.

Each clip is read once (up to 200 + 2*MARGIN frames at 25 fps, whole audio); the metric scores frames
[MARGIN, MARGIN+N) against audio windows taken from the real track, so a shift of k frames is real
speech on both sides (no zero padding). Landmarks are memoised per frame, so re-scoring the same
frames with other audio costs only the correlation.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from harness.errors import MediaError
from harness.splits import load_drive_audio, load_split, resolve
from metrics.av_sync import (FEATURES, MAX_OFFSET, AVSync, av_sync, band_rms, cross_correlation, log_envelope,
                             mouth_features)
from metrics.base import FRAMES_TOTAL, FRAMES_USED, ClipInput, get_metric

MARGIN = 8  # largest shift tested: audio windows stay inside the real track
N_MAX = 200
SPF = 640
TEST_CLIPS = [c for c in load_split("demo").clips if c.role == "test"]
SHIFTS = (-8, -4, 4, 8)
# vr_face4 (166 frames at 25 fps, 164 with audio, 148 scored) was a strict xfail under the inner-lip
# 2-6 Hz definition: peak at -8 (a syllable-rhythm alias; +1 on the whole clip), so a further -8 left
# +-15, and another speaker's audio scored higher (0.409 vs 0.377). Lip area + jaw in 2-7 Hz passes it.
CLIP_IDS = [c.clip_id for c in TEST_CLIPS]


@pytest.fixture(scope="module")
def media(data_root):
    """clip_id -> (crops [N,256,256,3] of frames [MARGIN, MARGIN+N), whole 16 kHz audio, entry)."""
    from harness.faces.clip import clip_faces
    from harness.media import read_audio, read_video

    out = {}
    for e in TEST_CLIPS:
        v = read_video(resolve(data_root, e.video), fps=25.0, max_frames=N_MAX + 2 * MARGIN)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = read_audio(resolve(data_root, e.audio_path()))
        T = min(len(v.frames), len(a) // SPF)
        crops = clip_faces(v, cache=False).crops[MARGIN:T - MARGIN]
        out[e.clip_id] = (crops, a, e)
    return out


@pytest.fixture(scope="module")
def metric():
    return get_metric("av_sync")


def _score(metric, clip_id, frames, audio):
    return metric.compute_clip(ClipInput(clip_id, generated=frames, audio=audio))


def _shifted(audio, n, k):
    """Audio for frames [MARGIN, MARGIN+n) advanced by k frames: the video then lags it by k."""
    return audio[(MARGIN + k) * SPF:(MARGIN + k + n) * SPF]


@pytest.mark.parametrize("clip_id", CLIP_IDS)
def test_recovers_audio_shift(media, metric, clip_id):
    """Shift k is recovered relative to the clip's own (real, non-zero) lag. That needs the shifted peak
    inside the searched window, so the unshifted lag must leave room for the largest shift: asserted, not
    assumed (a clip whose own lag is beyond +-7 cannot test +-8 and must say so here)."""
    crops, audio, _ = media[clip_id]
    n = len(crops)
    base = _score(metric, clip_id, crops, _shifted(audio, n, 0)).values["AV-offset"]
    got = {k: _score(metric, clip_id, crops, _shifted(audio, n, k)).values["AV-offset"] - base for k in SHIFTS}
    print(f"{clip_id}: N={n} unshifted offset {base:+.0f}; recovered shift", got)
    room = MAX_OFFSET - max(map(abs, SHIFTS))
    assert abs(base) <= room, f"unshifted offset {base:+.0f} leaves no room in +-{MAX_OFFSET} for the shifts"
    assert all(abs(got[k] - k) <= 1 for k in got), got


@pytest.mark.parametrize("clip_id", CLIP_IDS)
def test_own_audio_beats_static_and_other_speech(media, metric, data_root, clip_id):
    crops, audio, entry = media[clip_id]
    drive = load_drive_audio(entry, data_root)
    n = min(len(crops), len(drive) // SPF)
    own = _score(metric, clip_id, crops[:n], _shifted(audio, n, 0))
    other = _score(metric, clip_id, crops[:n], drive[:n * SPF])
    static = _score(metric, clip_id, np.repeat(crops[:1], n, axis=0), _shifted(audio, n, 0))
    print(f"{clip_id}: N={n} AV-corr own {own.values['AV-corr']:.3f} other {other.values['AV-corr']:.3f} "
          f"static {static.values['AV-corr']:.3f}")
    assert static.values["AV-corr"] == 0.0 and math.isnan(static.values["AV-offset"])
    assert static.extra["static_mouth"] and not own.extra["static_mouth"]
    assert own.values["AV-corr"] > other.values["AV-corr"] > static.values["AV-corr"]
    assert own.extra[FRAMES_USED] == own.extra[FRAMES_TOTAL] == n
    assert len(own.extra["corr_by_offset"]) == 2 * MAX_OFFSET + 1


def test_frames_without_face_are_excluded_and_counted(media, metric):
    crops, audio, _ = media["andrew_clip_2"]
    n = len(crops)
    full = _score(metric, "andrew_clip_2", crops, _shifted(audio, n, 0))
    holed = crops.copy()
    gone = np.r_[20:26, 90:96]
    holed[gone] = 128  # flat grey: no face, no landmarks
    r = _score(metric, "andrew_clip_2", holed, _shifted(audio, n, 0))
    assert r.extra[FRAMES_TOTAL] == n and r.extra[FRAMES_USED] == n - len(gone)
    for f in FEATURES:
        assert np.isnan(r.per_frame[f][gone]).all()
        assert np.isfinite(np.delete(r.per_frame[f], gone)).all()
    assert abs(r.values["AV-offset"] - full.values["AV-offset"]) <= 1


def test_sign_convention_on_real_envelope(media):
    """A 'mouth' that is the clip's own log envelope delayed by 6 frames lags the audio: offset +6."""
    _, audio, _ = media["feifeili_clip3"]
    n, lag = 150, 6
    env = log_envelope(band_rms(audio[:n * SPF], n))
    mouth = np.r_[np.full(lag, env[0]), env[:-lag]]
    r = av_sync(mouth, audio[:n * SPF])
    assert r["offset"] == lag
    assert r["corr"] > 0.9  # same series; only the lag's 6 unmatched edge frames (and filter edges) differ


def test_cross_correlation_definition():
    rng = np.random.default_rng(0)
    T, lag = 120, 5
    e = rng.standard_normal(T)
    m = np.r_[rng.standard_normal(lag), e[:-lag]]  # m[t] = e[t-lag]
    valid = np.ones(T, bool)
    valid[[3, 50, 51]] = False
    c = cross_correlation(m, e, valid, max_offset=10)
    assert int(np.argmax(c)) - 10 == lag
    want = sum(m[t] * e[t - lag] for t in range(lag, T) if valid[t]) / valid.sum()
    assert abs(c[10 + lag] - want) <= 1e-12 * T  # T products of O(1) numbers


def test_mouth_features_are_scale_free():
    lm = np.zeros((2, 68, 2))
    lm[:, 36], lm[:, 45] = [0, 0], [100, 0]
    lm[:, 33], lm[:, 8] = [50, 60], [50, 130]  # nose tip -> chin 70
    # outer lip 48..59 as a 40 x 20 axis-aligned rectangle traced in order (corners 48, 51, 54, 57)
    xs = [30, 43, 57, 70, 70, 70, 70, 57, 43, 30, 30, 30]
    ys = [80, 80, 80, 80, 87, 93, 100, 100, 100, 100, 93, 87]
    lm[:, 48:60, 0], lm[:, 48:60, 1] = xs, ys
    lm[1] *= 3
    lm[1, 62, 0] = np.nan  # an inner-lip point: unused, so the row stays valid
    got = mouth_features(lm)
    assert got.shape == (2, len(FEATURES))
    assert got[0] == pytest.approx([40 * 20 / 100 ** 2, 0.7], abs=1e-15)
    assert got[1] == pytest.approx(got[0], abs=1e-15)
    lm[1, 8, 1] = np.nan
    assert np.isnan(mouth_features(lm)[1]).all()  # any feature missing: the whole frame has no mouth


def test_features_are_averaged_and_a_still_one_is_left_out(media):
    """Two copies of one moving feature score like it alone; a constant second feature adds nothing;
    both constant is the static case."""
    _, audio, _ = media["feifeili_clip3"]
    n, lag = 150, 3
    env = log_envelope(band_rms(audio[:n * SPF], n))
    moving = np.r_[np.full(lag, env[0]), env[:-lag]]
    one = av_sync(moving, audio[:n * SPF])
    for second in (2.0 * moving + 1.0, np.full(n, 0.7)):
        two = av_sync(np.c_[moving, second], audio[:n * SPF])
        assert two["offset"] == one["offset"] == lag and two["corr"] == pytest.approx(one["corr"], abs=1e-12)
    still = av_sync(np.c_[np.full(n, 0.1), np.full(n, 0.7)], audio[:n * SPF])
    assert still["static"] and still["corr"] == 0.0 and math.isnan(still["offset"])


def test_bad_input_raises_media_error(media):
    _, audio, _ = media["feifeili_clip3"]
    rng = np.random.default_rng(1)
    mouth = 0.2 + 0.05 * rng.standard_normal(100)
    with pytest.raises(MediaError, match="silent"):
        av_sync(mouth, np.zeros(100 * SPF, np.float32))
    with pytest.raises(MediaError, match="at least"):
        av_sync(mouth[:40], audio[:40 * SPF])
    holes = mouth.copy()
    holes[::2] = np.nan  # 50 of 100 frames have a mouth, min_frames=60
    with pytest.raises(MediaError, match="got 50 of 100"):
        av_sync(holes, audio[:100 * SPF], min_frames=60)
    m = AVSync(landmarks_fn=lambda c: np.zeros((len(c), 68, 2)))
    with pytest.raises(MediaError, match="no driving audio"):
        m.compute_clip(ClipInput("x", generated=np.zeros((60, 8, 8, 3), np.uint8)))


def test_registry_protocol_and_config():
    m = get_metric("av_sync", max_offset=12)
    assert m.higher_is_better == {"AV-corr": True, "AV-offset": None}
    assert m.needs == {"generated", "audio"}
    again = get_metric("av_sync", **m.config())
    assert again.protocol() == m.protocol() and again.protocol() != get_metric("av_sync").protocol()
    p = m.protocol()
    assert "LSE" not in p.metric and p.settings["max_offset"] == 12 and p.settings["band_hz"] == [1000.0, 4000.0]
