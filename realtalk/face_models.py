"""The face-model factory: picks an implementation of realtalk.face_model.FaceModel by name.

It lives apart from the interface so the imports run one way (interface <- implementations <- factory);
with the factory inside face_model.py, the implementations imported the module that imported them.
"""
from __future__ import annotations

from realtalk.bfm import BFMFaceModel
from realtalk.face_model import FaceModel
from realtalk.landmark_face_model import LandmarkFaceModel


def load_default_face_model() -> FaceModel:
    """The offline default: the 68-landmark morphable model shipped in realtalk/assets (no build step)."""
    return LandmarkFaceModel.load_default()


def get_face_model(name: str = "landmark68") -> FaceModel:
    """'landmark68' (offline default, packaged) or 'bfm' (needs weights 'bfm_front')."""
    if name in ("landmark68", "landmarks", "default"):
        return load_default_face_model()
    if name == "bfm":
        return BFMFaceModel.from_weights()
    raise ValueError(f"unknown face model {name!r}: use 'landmark68' or 'bfm'")
