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

from harness.core.errors import MediaError
from harness.core.splits import load_drive_audio, load_split, resolve
from metrics.av_sync import (FEATURES, MAX_OFFSET, NULL_SEED, NULL_SURROGATES, AVSync, av_sync, band_rms, bandpass,
                             chance_peaks, cross_correlation, log_envelope, mouth_features, xcorr_many)
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
    """clip_id -> (crops [N,256,256,3] of frames [MARGIN, MARGIN+N), whole 16 kHz audio, entry, harness
    static_frame crops: frame MARGIN held and cut along the ground truth's (moving) crop track, exactly what
    baselines/reference.py's static_frame gives the metrics)."""
    from harness.core.faces.clip import clip_faces
    from harness.core.faces.crop import crop_frames
    from harness.core.media import read_audio, read_video

    out = {}
    for e in TEST_CLIPS:
        v = read_video(resolve(data_root, e.video), fps=25.0, max_frames=N_MAX + 2 * MARGIN)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = read_audio(resolve(data_root, e.audio_path()))
        T = min(len(v.frames), len(a) // SPF)
        faces = clip_faces(v, cache=False)
        held = crop_frames(np.repeat(v.frames[MARGIN:MARGIN + 1], len(v.frames), axis=0), faces.crop_track)
        out[e.clip_id] = (faces.crops[MARGIN:T - MARGIN], a, e, held[MARGIN:T - MARGIN])
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
    crops, audio, *_ = media[clip_id]
    n = len(crops)
    base = _score(metric, clip_id, crops, _shifted(audio, n, 0)).values["AV-offset"]
    got = {k: _score(metric, clip_id, crops, _shifted(audio, n, k)).values["AV-offset"] - base for k in SHIFTS}
    print(f"{clip_id}: N={n} unshifted offset {base:+.0f}; recovered shift", got)
    room = MAX_OFFSET - max(map(abs, SHIFTS))
    assert abs(base) <= room, f"unshifted offset {base:+.0f} leaves no room in +-{MAX_OFFSET} for the shifts"
    assert all(abs(got[k] - k) <= 1 for k in got), got


def _table(media, metric, data_root, n_max):
    """{clip_id: {condition: ClipResult}} on the first n_max scored frames (fewer where the other speech is
    shorter): own audio, another speaker's audio (the split's drive_audio), a truly static crop (frame 0
    repeated), the harness static_frame (frame 0 cut along the moving crop track)."""
    out = {}
    for cid in CLIP_IDS:
        crops, audio, entry, held = media[cid]
        drive = load_drive_audio(entry, data_root)
        n = min(len(crops), len(drive) // SPF, n_max)
        out[cid] = {"own": _score(metric, cid, crops[:n], _shifted(audio, n, 0)),
                    "other": _score(metric, cid, crops[:n], drive[:n * SPF]),
                    "static": _score(metric, cid, np.repeat(crops[:1], n, axis=0), _shifted(audio, n, 0)),
                    "harness_static": _score(metric, cid, held[:n], _shifted(audio, n, 0))}
    return out


def _print_table(title, table):
    print(f"\n{title}\nclip            N   own    other  static harness_static | own peak  chance(median q95)  p   offset")
    for cid, r in table.items():
        o = r["own"]
        print(f"{cid:14s} {o.extra[FRAMES_TOTAL]:3d} " + " ".join(f"{r[k].values['AV-corr']:+.3f}" for k in
              ("own", "other", "static", "harness_static")) + f"         | {o.extra['corr_peak']:.3f}     "
              f"{o.extra['chance_median']:.3f} {o.extra['chance_q95']:.3f}       {o.extra['p_chance']:.3f} "
              f"{o.values['AV-offset']:+.0f}")


def test_own_audio_beats_static_and_other_speech(media, metric, data_root):
    """On every test clip (up to 200 frames): own audio > another speaker's audio, > the harness
    static_frame, > a truly static crop (0: no motion, no evidence). The chance correction is checked
    against the clip's own null: the other speech and the harness static_frame lie within 3 standard
    deviations of the surrogate peak distribution of 0 (without the correction they sit ~0.3 above it,
    ~5 of those deviations: measured chance medians 0.26-0.43, deviations 0.04-0.07)."""
    table = _table(media, metric, data_root, N_MAX)
    _print_table(f"AV-corr, demo test clips, frames [{MARGIN}, {MARGIN}+N) at 25 fps", table)
    _print_table("same, first 100 of those frames (the demo's clip length; printed, not asserted)",
                 _table(media, metric, data_root, 100))
    bad = []
    for cid, r in table.items():
        own, other, static, held = (r[k] for k in ("own", "other", "static", "harness_static"))
        v = {k: r[k].values["AV-corr"] for k in r}
        assert static.values["AV-corr"] == 0.0 and math.isnan(static.values["AV-offset"])
        assert static.extra["static_mouth"] and not own.extra["static_mouth"] and not held.extra["static_mouth"]
        assert own.extra[FRAMES_USED] == own.extra[FRAMES_TOTAL] == len(own.per_frame["envelope"])
        assert len(own.extra["corr_by_offset"]) == 2 * MAX_OFFSET + 1
        if not v["own"] > max(v["other"], v["harness_static"], v["static"]):
            bad.append(f"{cid}: own not above the rest {v}")
        for k in ("other", "harness_static"):
            x = r[k]
            if abs(x.values["AV-corr"]) > 3 * x.extra["chance_std"]:
                bad.append(f"{cid}: {k} {x.values['AV-corr']:+.3f} beyond 3 x chance std {x.extra['chance_std']:.3f}")
        # the score is the peak minus the null median, to the rounding of one subtraction
        assert own.values["AV-corr"] == own.extra["corr_peak"] - own.extra["chance_median"]
    assert not bad, bad


def test_frames_without_face_are_excluded_and_counted(media, metric):
    crops, audio, *_ = media["andrew_clip_2"]
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
    _, audio, *_ = media["feifeili_clip3"]
    n, lag = 150, 6
    env = log_envelope(band_rms(audio[:n * SPF], n))
    mouth = np.r_[np.full(lag, env[0]), env[:-lag]]
    r = av_sync(mouth, audio[:n * SPF])
    assert r["offset"] == lag
    assert r["peak"] > 0.9  # same series; only the lag's 6 unmatched edge frames (and filter edges) differ
    assert r["corr"] > 3 * r["chance_std"] and r["p_chance"] == 1 / (1 + NULL_SURROGATES)  # beats every surrogate


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
    _, audio, *_ = media["feifeili_clip3"]
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
    _, audio, *_ = media["feifeili_clip3"]
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
    assert p.settings["null_surrogates"] == NULL_SURROGATES and "median" in p.settings["score"]
    assert "ours" in p.settings["follows"] and "Chung & Zisserman" in p.settings["follows"]
    fewer = get_metric("av_sync", null_surrogates=50)
    assert fewer.config()["null_surrogates"] == 50 and fewer.protocol() != get_metric("av_sync").protocol()
    with pytest.raises(ValueError):
        get_metric("av_sync", null_surrogates=0)


def _plain_chance_corrected(mouth: np.ndarray, e: np.ndarray, K: int, n_sur: int) -> tuple[float, float]:
    """(peak, AV-corr) written out from the definition with loops: z-score, c(k) = sum m[t] e[t-k] / n,
    surrogates by an explicit inverse DFT of |E_f| exp(i phi_f) with phi from default_rng(NULL_SEED + T)."""
    T = len(mouth)

    def z(x):
        return (x - x.mean()) / x.std()

    def peak(m, x):
        return max(sum(m[t] * x[t - k] for t in range(max(k, 0), min(T, T + k))) / T for k in range(-K, K + 1))

    m, ez = z(mouth), z(e)
    amp = np.abs(np.fft.rfft(ez))
    rng = np.random.default_rng(NULL_SEED + T)
    phi = rng.uniform(0.0, 2.0 * np.pi, (n_sur, len(amp)))
    nulls = []
    for j in range(n_sur):
        ph = phi[j].copy()
        ph[0] = 0.0
        if T % 2 == 0:
            ph[-1] = 0.0
        x = np.zeros(T)
        for f in range(len(amp)):  # real inverse DFT: DC and Nyquist once, the rest twice (conjugate pair)
            w = 1.0 if f == 0 or (T % 2 == 0 and f == len(amp) - 1) else 2.0
            x += w * amp[f] * np.cos(2 * np.pi * f * np.arange(T) / T + ph[f]) / T
        nulls.append(peak(m, z(x)))
    p = peak(m, ez)
    return p, p - float(np.median(nulls))


def test_chance_correction_matches_plain_definition(media):
    """AV-corr on a real envelope and a noisy delayed copy of it equals the loop-by-loop definition.
    Tolerance: every quantity is a sum of <= T O(1) terms (DFT, dot products) in float64, each adding
    <= T eps relative error, about 6 such sums chained: 6 T eps."""
    _, audio, *_ = media["feifeili_clip3"]
    T, lag, K, n_sur = 120, 4, 15, 40
    e = bandpass(log_envelope(band_rms(audio[:T * SPF], T)), 25.0)
    rng = np.random.default_rng(7)
    mouth = np.r_[np.zeros(lag), e[:-lag]] + 0.8 * e.std() * rng.standard_normal(T)
    mouth = bandpass(mouth, 25.0)
    valid = np.ones(T, bool)
    ez = (e - e.mean()) / e.std()
    mz = (mouth - mouth.mean()) / mouth.std()
    got_null = chance_peaks(mz, ez, valid, K, n_sur)
    got_peak = cross_correlation(mz, ez, valid, K).max()
    want_peak, want_corr = _plain_chance_corrected(mouth, e, K, n_sur)
    tol = 6 * T * np.finfo(np.float64).eps
    assert abs(got_peak - want_peak) <= tol
    assert abs((got_peak - np.median(got_null)) - want_corr) <= tol
    many = xcorr_many(mz, np.stack([ez, ez[::-1]]), valid, K)
    assert np.abs(many - np.stack([cross_correlation(mz, x, valid, K) for x in (ez, ez[::-1])])).max() <= tol


def test_chance_level_is_zero_and_deterministic(media):
    """Unrelated mouths (seeded band-passed noise) against real speech score 0 on average: the mean of 40
    lies within 3 standard errors of 0 (the raw peak sits ~0.3 above, tens of standard errors). The value
    does not depend on the global RNG state."""
    _, audio, *_ = media["andrew_clip_2"]
    T = 100
    a = audio[:T * SPF]
    rng = np.random.default_rng(11)
    vals = np.array([av_sync(rng.standard_normal(T), a)["corr"] for _ in range(40)])
    se = vals.std(ddof=1) / np.sqrt(len(vals))
    print(f"chance: mean AV-corr {vals.mean():+.4f}, std {vals.std(ddof=1):.4f}, 3 se {3 * se:.4f}")
    assert abs(vals.mean()) <= 3 * se
    mouth = rng.standard_normal(T)
    np.random.seed(1)
    first = av_sync(mouth, a)
    np.random.seed(2)
    second = av_sync(mouth, a)
    assert first["corr"] == second["corr"] and first["chance_median"] == second["chance_median"]
