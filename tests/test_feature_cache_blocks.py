"""metrics.feature_cache on a long clip's arrays (issue 15 item 5): the content digest and the "generated is the
ground truth" test work block by block (no whole-array copy or bool temporary: 1.5 GB each for 7500 crops) and
give what the whole-array definitions give, so every cache key is unchanged."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from metrics.base import ClipInput
from metrics.feature_cache import DIGEST_BLOCK, array_digest, generated_is_ground_truth


def _whole_digest(a: np.ndarray) -> str:
    """The definition: sha256 over dtype, shape and the C-order bytes of the whole array."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def test_blockwise_digest_is_the_whole_array_digest(data_root: Path) -> None:
    from harness.core.media import read_audio, read_video

    crops = read_video(data_root / "styletalk/video/Obama_clip3.mp4", fps=25, max_frames=12).frames
    tall = np.concatenate([crops] * (DIGEST_BLOCK // 12 + 2))  # more than one block, a partial last one
    audio = read_audio(data_root / "styletalk/wav/Obama_clip3.wav", 16000, duration_s=1.0)
    for a in (tall, crops[:, ::2, 1::3], crops.transpose(0, 2, 1, 3), audio, np.float32(0.5)):
        assert array_digest(a) == _whole_digest(a)
    changed = tall.copy()
    changed[-1, -1, -1, -1] ^= 1  # one bit in the last block
    assert array_digest(changed) != array_digest(tall)


def test_generated_is_ground_truth_blockwise(data_root: Path) -> None:
    from harness.core.media import read_video

    crops = read_video(data_root / "styletalk/video/Obama_clip3.mp4", fps=25, max_frames=12).frames
    tall = np.concatenate([crops] * 30)  # 360 frames: two blocks of frames_equal
    assert generated_is_ground_truth(ClipInput("c", generated=tall.copy(), ground_truth=tall))
    other = tall.copy()
    other[-1, 0, 0, 0] ^= 1
    assert not generated_is_ground_truth(ClipInput("c", generated=other, ground_truth=tall))
    assert not generated_is_ground_truth(ClipInput("c", generated=tall[:-1], ground_truth=tall))
    assert not generated_is_ground_truth(ClipInput("c", generated=tall, ground_truth=None))
