"""The ground truth's tracking detector, as `run --face-detector dlib|mtcnn|s3fd` chooses it.

The ground-truth face track fixes every crop the metrics see, so the choice is part of the run's identity,
of every metric's protocol (its crop field, `with_tracking`) and of the face-track cache key (clip_faces keys on
the detector's describe(), which for mtcnn / s3fd carries the device type: boxes found on a GPU are never
served to a CPU run). dlib (HOG, CPU only) is the default and leaves protocols as they always were, so runs
made before the option existed keep their fingerprints. mtcnn (facenet_pytorch, weights in the package) and
s3fd (face-alignment's network, official file `s3fd` in harness.core.weights) run on the run's device.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from harness.core.errors import BenchError, WeightsMissingError

DEFAULT = "dlib"
CHOICES: dict[str, str] = {"dlib": "dlib_hog", "mtcnn": "mtcnn", "s3fd": "s3fd"}  # option -> detect.DETECTORS name
ON_DEVICE = frozenset({"mtcnn", "s3fd"})  # torch networks: built on the run's device


class TrackingWeightsMissing(WeightsMissingError):
    """--face-detector s3fd without its model file: a usage problem (exit 2), said in one line."""


def check_tracking_detector(choice: str) -> None:
    """Fail before any work: an unknown choice (BenchError) or s3fd's missing file (TrackingWeightsMissing, one
    line naming the file, where to put it and how to get it)."""
    if choice not in CHOICES:
        raise BenchError(f"--face-detector {choice!r}: expected one of {', '.join(CHOICES)}")
    if choice == "s3fd":
        from harness.core import weights

        try:
            weights.require("s3fd")
        except WeightsMissingError as exc:
            more = f" ({exc.hint})" if exc.hint else ""
            raise TrackingWeightsMissing(f"--face-detector s3fd: {exc.problem}{more}") from None


def tracking_detector(choice: str = DEFAULT, device: str = "cpu") -> Any:
    """The shared FaceDetector for a --face-detector choice on `device` (dlib always on the CPU)."""
    from harness.core.faces.detect import get_detector

    check_tracking_detector(choice)
    name = CHOICES[choice]
    return get_detector(name, device=device) if choice in ON_DEVICE else get_detector(name)


def with_tracking(protocol: Any, choice: str = DEFAULT) -> Any:
    """A metric's Protocol with the tracking detector in its crop field (unchanged for the default dlib)."""
    if choice == DEFAULT:
        return protocol
    return dataclasses.replace(protocol, crop=f"{protocol.crop}; ground-truth face track: {choice} detector")
