"""The 'GENERATED' label of stored videos: a band added below each frame (never over it), so every crop of
the top HxW region is the method's own pixels. Written by the evaluator, read back by the report grids."""
from __future__ import annotations

import numpy as np

LABEL = "GENERATED"
LABEL_BAND = 24  # px of black band, below the (16-row aligned) frame, that holds LABEL in stored videos


def label_band_rows(height: int) -> int:
    """Rows label_frames adds below a frame of `height` rows: edge rows up to the next 16-row boundary
    (H.264 macroblocks then never mix frame and label), then LABEL_BAND rows of black holding the text."""
    return (-height) % 16 + LABEL_BAND


def label_frames(frames: np.ndarray, text: str = LABEL) -> np.ndarray:
    """Frames written to the store, with the 'GENERATED' label in a band added BELOW each frame: the
    frame's pixels and every crop-track coordinate are unchanged, so no face crop of the top HxW region
    can contain the label (burning it into the frame put it inside 256x256 face-crop clips' crops)."""
    import cv2

    frames = np.asarray(frames)
    t, h, w, c = frames.shape
    edge = (-h) % 16
    band = np.zeros((LABEL_BAND, w, c), dtype=np.uint8)
    font, thick = cv2.FONT_HERSHEY_SIMPLEX, 1
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, thick)
    scale = min((LABEL_BAND - 10) / th, (w - 8) / tw)
    cv2.putText(band, text, (4, LABEL_BAND - 6), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    out = np.empty((t, h + edge + LABEL_BAND, w, c), dtype=np.uint8)
    out[:, :h] = frames
    out[:, h:h + edge] = frames[:, h - 1:h]
    out[:, h + edge:] = band
    return out
