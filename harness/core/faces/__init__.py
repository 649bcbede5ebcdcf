"""Face detection, tracking, stable 256x256 crops and 68-point landmarks (see CONTRIBUTING.md)."""
