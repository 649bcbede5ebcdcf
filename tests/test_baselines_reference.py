"""Reference methods: ground truth (sanity line) and a frozen first frame (lip-sync floor)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.core.methods import MethodInput, get_method


@pytest.fixture(scope="module")
def clip(data_root: Path):
    from harness.core.media import read_video

    return read_video(data_root / "video-retalking/face/3.mp4", fps=25.0, max_frames=25)


def _inp(v, n: int, setting: str = "reconstruction") -> MethodInput:
    return MethodInput(clip_id="3", setting=setting, source_video=v.path, source_frames=v.frames,
                       audio=np.zeros(n * 640, np.float32), n_frames=n)


def test_ground_truth(clip):
    m = get_method("ground_truth")
    assert m.kind == "reference" and m.availability() == (True, "")
    out = m.generate(_inp(clip, 25))
    assert np.array_equal(out, clip.frames)
    out = m.generate(_inp(clip, 30, "cross_audio"))  # longer audio: last frame held
    assert out.shape[0] == 30 and np.array_equal(out[25:], np.repeat(clip.frames[-1:], 5, axis=0))
    assert np.array_equal(m.generate(_inp(clip, 10))[:10], clip.frames[:10])
    assert "NOT driven" in m.describe()["label"]["cross_audio"]


def test_static_frame(clip):
    m = get_method("static_frame")
    out = m.generate(_inp(clip, 40))
    assert out.shape == (40,) + clip.frames.shape[1:]
    assert all(np.array_equal(f, clip.frames[0]) for f in out)


def test_copy_reference_pastes_first_frame_into_mask_region(clip):
    """Outside the face box: the source frame, exactly. Inside RealTalk's generated region (eroded, away
    from the feathered edge): the first crop's pixels (up to one crop->frame->crop resampling), not frame i's."""
    import cv2
    import dataclasses

    from harness.core.faces.clip import clip_faces
    from harness.core.faces.crop import crop_frames
    from realtalk.coefficients import clip_coefficients
    from realtalk.face_models import load_default_face_model
    from realtalk.mask import lower_face_mask

    m = get_method("copy_reference")
    assert m.kind == "reference"
    n = len(clip.frames)
    out = m.generate(_inp(clip, n))
    assert out.shape == clip.frames.shape and out.dtype == np.uint8
    faces = clip_faces(clip)
    fm = load_default_face_model()
    co = clip_coefficients(faces, fm)
    boxes = np.asarray(faces.crop_track.boxes)
    (x1, y1), (x2, y2) = boxes[:, :2].min(0), boxes[:, 2:].max(0)
    outside = np.ones(clip.frames.shape[1:3], bool)
    outside[max(0, int(y1) - 2):int(np.ceil(y2)) + 2, max(0, int(x1) - 2):int(np.ceil(x2)) + 2] = False
    assert np.array_equal(out[:, outside], clip.frames[:, outside])
    gen_crops = crop_frames(out, faces.crop_track)
    ref = faces.crops[0].astype(np.float32)
    to_ref, to_own = [], []
    for i in range(1, n):
        import torch

        mk = lower_face_mask(fm, torch.as_tensor(co.alpha)[None].float(), torch.as_tensor(co.beta[i:i + 1]).float(),
                             torch.as_tensor(co.rho[i:i + 1]).float())[0, 0].numpy()
        core = cv2.erode((mk < 0.5).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        g = gen_crops[i].astype(np.float32)[core]
        to_ref.append(np.abs(g - ref[core]).mean())
        to_own.append(np.abs(g - faces.crops[i].astype(np.float32)[core]).mean())
    # the pasted region is the first crop: closer to it than to the frame's own crop on average
    assert np.mean(to_ref) < np.mean(to_own), (np.mean(to_ref), np.mean(to_own))
    assert "first frame" in m.describe()["label"]
    longer = m.generate(_inp(clip, n + 5, "cross_audio"))  # ping-pong past the end, like realtalk
    assert longer.shape[0] == n + 5 and np.array_equal(longer[n], out[n - 2])
    _ = dataclasses
