"""Face detection, tracking, stable 256x256 crops and 68-point landmarks (see CONTRIBUTING.md).

get_detector / get_landmarker return one shared model per settings per process (harness.core.faces.models);
reset_face_models() forgets them (what a fresh process starts with).
"""
from harness.core.faces.models import reset_face_models

__all__ = ["reset_face_models"]
