"""paste_frames_alpha: the alpha-blended inverse of crop_frames that RealTalk's paste uses."""
from __future__ import annotations

import numpy as np

from harness.core.faces.crop import CropTrack, crop_frames, paste_frames, paste_frames_alpha
from harness.core.media import read_video


def test_alpha_paste_matches_full_frame_blend(data_root):
    """Equals the full-frame formula a*paste(crop) + (1-a)*frame (alpha pasted the same way), touches only
    the box, and reduces to paste_frames at alpha 255 and to the frame at alpha 0; a box leaving the frame works."""
    v = read_video(data_root / "video-retalking" / "face" / "3.mp4", fps=25.0, max_frames=3)
    h, w = v.frames.shape[1:3]
    boxes = np.array([[150, 100, 450, 400], [140, 110, 440, 410], [-60, 300, 240, 600]], np.float64)
    ct = CropTrack(boxes=boxes, size=256)
    crops = 255 - crop_frames(v.frames, ct)  # visibly different content
    yy, xx = np.mgrid[0:256, 0:256]
    alpha = np.clip((yy - 96) * 2, 0, 255).astype(np.uint8)[None].repeat(3, 0)  # ramp: 0 on top, 255 below
    out = paste_frames_alpha(v.frames, crops, alpha, ct)
    a_full = paste_frames(np.zeros_like(v.frames), np.repeat(alpha[..., None], 3, -1), ct)[..., :1] / 255.0
    ref = np.clip(np.rint(a_full * paste_frames(v.frames, crops, ct) + (1 - a_full) * v.frames), 0, 255)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1
    for t in range(3):
        x1, y1, x2, y2 = boxes[t].astype(int)
        outside = np.ones((h, w), bool)
        outside[max(y1, 0):y2, max(x1, 0):x2] = False
        assert np.array_equal(out[t][outside], v.frames[t][outside])
    assert np.array_equal(paste_frames_alpha(v.frames, crops, np.full((3, 256, 256), 255, np.uint8), ct),
                          paste_frames(v.frames, crops, ct))
    assert np.array_equal(paste_frames_alpha(v.frames, crops, np.zeros((3, 256, 256), np.float32), ct), v.frames)
