"""Hiding faces in a YUV 4:2:0 frame, in place, touching only the pixels around each face.

Each face box is grown by ``mask_scale`` around its centre; the ellipse inscribed in the
grown box is fully replaced, and a feather a few pixels wide outside it blends back to the
picture so no hard edge is drawn. Inside, ``blur`` keeps about six cells of colour across
the face (no feature survives), ``pixelate`` keeps eight blocks, ``solid`` paints it black.
"""

from __future__ import annotations

import cv2
import numpy as np

from steps.settings import Mode

#: Cells across the ellipse that survive the blur and pixelation: too few to recognise anyone.
BLUR_CELLS = 6
PIXEL_BLOCKS = 8
#: Feather width outside the ellipse, as a share of its radius.
FEATHER = 0.08
_BLACK = {0: 16, 1: 128, 2: 128}  # Y, U, V of black (limited range)
#: Blur kernels from this size up are applied at half size (see _hidden).
_LARGE_KERNEL = 9


def grow(box: np.ndarray, scale: float) -> tuple[float, float, float, float]:
    """Centre and half-axes of the ellipse that hides *box* (x1, y1, x2, y2)."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    return (x1 + x2) / 2, (y1 + y2) / 2, max(1.0, (x2 - x1) * scale / 2), max(1.0, (y2 - y1) * scale / 2)


def _alpha(shape: tuple[int, int], cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    """1 inside the ellipse, falling to 0 across the feather outside it (float32)."""
    h, w = shape
    feather = max(2.0, FEATHER * min(ax, ay))
    ys = ((np.arange(h, dtype=np.float32) + 0.5 - cy) / ay) ** 2
    xs = ((np.arange(w, dtype=np.float32) + 0.5 - cx) / ax) ** 2
    radius = np.sqrt(ys[:, None] + xs[None, :])
    return np.clip((1.0 + feather / min(ax, ay) - radius) * (min(ax, ay) / feather), 0.0, 1.0)


def _hidden(plane: np.ndarray, mode: Mode, plane_index: int, diameter: float) -> np.ndarray:
    """What replaces the region *plane* (uint8, 2-D)."""
    h, w = plane.shape
    if mode == Mode.solid:
        return np.full_like(plane, _BLACK[plane_index])
    cells = BLUR_CELLS if mode == Mode.blur else PIXEL_BLOCKS
    step = max(2.0, diameter / cells)
    small = cv2.resize(plane, (max(1, round(w / step)), max(1, round(h / step))), interpolation=cv2.INTER_AREA)
    if mode == Mode.pixelate:
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    k = int(step) | 1
    if k < _LARGE_KERNEL:
        smooth = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        return cv2.GaussianBlur(smooth, (k, k), 0) if k >= 3 else smooth
    # A large face: the cells are smoothed at half size in float32, then enlarged. That is within a few
    # grey levels of the Gaussian on the full-size uint8 region, for a third of the time (OpenCV's uint8
    # Gaussian is slow with large kernels: about 3 ms for a face 120 pixels wide).
    half = cv2.resize(small.astype(np.float32), (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_LINEAR)
    half = cv2.GaussianBlur(half, (k // 2 | 1, k // 2 | 1), 0)
    return cv2.resize(cv2.convertScaleAbs(half), (w, h), interpolation=cv2.INTER_LINEAR)


def hide(planes: tuple[np.ndarray, np.ndarray, np.ndarray], boxes: np.ndarray, mode: Mode, mask_scale: float) -> None:
    """Hide every box of *boxes* (N x >=4, full-frame pixels) in the Y, U and V planes, in place."""
    luma = planes[0]
    height, width = luma.shape
    for box in boxes:
        cx, cy, ax, ay = grow(box, mask_scale)
        pad = max(2.0, FEATHER * min(ax, ay)) + 1
        # The region, on even coordinates so the chroma region is exactly half of it.
        x0 = max(0, int(cx - ax - pad) & ~1)
        y0 = max(0, int(cy - ay - pad) & ~1)
        x1 = min(width, (int(np.ceil(cx + ax + pad)) + 1) & ~1)
        y1 = min(height, (int(np.ceil(cy + ay + pad)) + 1) & ~1)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        alpha = _alpha((y1 - y0, x1 - x0), cx - x0, cy - y0, ax, ay)
        alpha_c = cv2.resize(alpha, ((x1 - x0) // 2, (y1 - y0) // 2), interpolation=cv2.INTER_AREA)
        for index, plane in enumerate(planes):
            if index == 0:
                region, weight, diameter = plane[y0:y1, x0:x1], alpha, 2 * min(ax, ay)
            else:
                region, weight, diameter = plane[y0 // 2:y1 // 2, x0 // 2:x1 // 2], alpha_c, min(ax, ay)
            if region.shape != weight.shape:  # odd chroma edge at the frame border
                weight = weight[: region.shape[0], : region.shape[1]]
            hidden = _hidden(region, mode, index, diameter)
            region[:] = cv2.blendLinear(hidden, region, weight, 1.0 - weight)
