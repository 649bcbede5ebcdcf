"""Subprocess baselines on a long clip (issue 15 item 5): generate_chunks writes the inputs from a source that
decodes in chunks (StreamedFrames) and reads the command's output chunk by chunk (the folder method's reader),
and gives generate()'s frames and notes bit for bit: full frames with a panel picked, face crops pasted back,
PC-AVS's lead frames and panel layout. Stand-in commands (tests/standin_talking_face.py, the fault fixture)
on a real clip, a couple of seconds."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from baselines.subprocess_adapter import SubprocessMethod
from harness.core.media import open_video, read_audio, read_video
from harness.core.methods import MethodInput

SRC = "styletalk/video/Obama_clip1.mp4"  # 256x256
WAV = "styletalk/wav/Obama_clip1.wav"


def _inp(data_root: Path, frames: Any, n: int, workdir: Path | None, n_src: int) -> MethodInput:
    audio = read_audio(data_root / WAV, 16000, duration_s=n / 25)
    return MethodInput(clip_id="Obama_clip1", setting="reconstruction", source_video=data_root / SRC,
                       source_frames=frames, audio=np.pad(audio, (0, max(0, n * 640 - len(audio))))[: n * 640],
                       n_frames=n, workdir=workdir)


def _both(m: SubprocessMethod, data_root: Path, tmp_path: Path, n: int, n_src: int, size: int
          ) -> tuple[np.ndarray, dict, np.ndarray, dict, list[np.ndarray]]:
    """(generate() on the source in memory, its notes, generate_chunks() on the source decoding in chunks, its
    notes, the chunks)."""
    src = read_video(data_root / SRC, fps=25, max_frames=n_src)
    whole = m.generate(_inp(data_root, src.frames, n, tmp_path / "whole", n_src))
    notes = dict(m.last_notes)
    m.last_notes = {}
    streamed = open_video(data_root / SRC, fps=25, max_frames=n_src).frames
    chunks = list(m.generate_chunks(_inp(data_root, streamed, n, None, n_src), size))
    return whole, notes, np.concatenate(chunks), dict(m.last_notes), chunks


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """StreamedFrames chunks of 7 frames of 256x256 (the source is decoded in several chunks for the inputs)."""
    import harness.core.media

    monkeypatch.setattr(harness.core.media, "STREAM_CHUNK_BYTES", 7 * 256 * 256 * 3)


@pytest.mark.parametrize("region,panels", [("full", 2), ("crop", 1)])
def test_standin_chunks_equal_whole(data_root: Path, tmp_path: Path, small_chunks: None, region: str,
                                    panels: int) -> None:
    from test_baselines_subprocess import _config

    m = SubprocessMethod(config=_config(tmp_path, region=region, panels=panels))
    n = 40
    whole, notes, got, got_notes, chunks = _both(m, data_root, tmp_path, n, n, 6)
    assert whole.shape == (n, 256, 256, 3) and all(0 < len(c) <= 6 for c in chunks)
    assert np.array_equal(got, whole)
    assert got_notes == notes and notes["frames_in_output"] != n  # the stand-in writes 30 fps: resampled


def test_standin_longer_than_source_chunks_equal_whole(data_root: Path, tmp_path: Path, small_chunks: None) -> None:
    """More frames asked for than the source has (cross-audio lengths): crops pasted on the source looped."""
    from test_baselines_subprocess import _config

    m = SubprocessMethod(config=_config(tmp_path, region="crop"))
    whole, notes, got, got_notes, _ = _both(m, data_root, tmp_path, 45, 30, 8)
    assert np.array_equal(got, whole) and got_notes == notes


@pytest.mark.parametrize("panels,gen_panel", [(3, 1), (5, 2)])
def test_pcavs_lead_frames_chunks_equal_whole(data_root: Path, tmp_path: Path, small_chunks: None, panels: int,
                                              gen_panel: int) -> None:
    import textwrap

    from test_baselines_faults import FAULT_ENTRY, _pcavs_cfg

    repo = tmp_path / "fault_fixture_repo"
    repo.mkdir()
    (repo / "fault_entry.py").write_text(textwrap.dedent(FAULT_ENTRY))
    m = SubprocessMethod(config=_pcavs_cfg(repo, panels, gen_panel))
    whole, notes, got, got_notes, _ = _both(m, data_root, tmp_path, 30, 30, 4)  # lead 2: held in the first chunk
    assert np.array_equal(got, whole) and got_notes == notes
    assert notes["lead_frames_held"] == 2 and notes["panels"] == panels


def test_led_chunks() -> None:
    """_Led: `lead` copies of the first frame, then the frames, for any start / stop / size."""
    from baselines.subprocess_adapter import _Led

    frames = np.arange(5, dtype=np.uint8).reshape(5, 1, 1, 1).repeat(3, axis=3)

    class Chunked:
        shape = frames.shape

        def __len__(self) -> int:
            return 5

        def chunks(self, size: int, start: int = 0, stop: int | None = None) -> Any:
            stop = 5 if stop is None else stop
            for i in range(start, stop, size):
                yield frames[i:min(i + size, stop)]

    want = np.concatenate([frames[:1], frames[:1], frames])
    led = _Led(Chunked(), 2)
    assert len(led) == 7
    for size in (1, 2, 3, 7):
        for a, b in ((0, 7), (0, 1), (1, 5), (2, 7), (3, 6)):
            parts = list(led.chunks(size, a, b))
            assert all(len(p) <= size for p in parts)
            assert np.array_equal(np.concatenate(parts), want[a:b]), (size, a, b)
