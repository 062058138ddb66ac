"""Face detectors behind one interface (see base.Detector); ``load`` picks one from the settings."""

from __future__ import annotations

from steps.detectors.base import Boxes, Detector, Resolution
from steps.settings import DetectorName, Settings

__all__ = ["Boxes", "Detector", "Resolution", "load"]


def detection_threshold(settings: Settings) -> float:
    """The lowest score the detector must report: with tracking, weak boxes may still continue a track."""
    return min(settings.threshold, settings.keep_threshold) if settings.tracking else settings.threshold


def resolution(settings: Settings) -> Resolution:
    return Resolution(min_face=settings.min_face, max_side=settings.det_max_side, tiles=settings.det_tiles)


def load(settings: Settings, threads: int = 0) -> Detector:
    """The detector the settings ask for, ready to run."""
    if settings.detector == DetectorName.centerface:
        from steps.detectors.centerface import CenterFace

        return CenterFace(threshold=detection_threshold(settings), resolution=resolution(settings), threads=threads,
                          int8=settings.int8)
    from steps.detectors.yolo import Yolo

    return Yolo(settings.model, threshold=detection_threshold(settings), resolution=resolution(settings),
                target=settings.target.value, whole_person=settings.whole_person)
