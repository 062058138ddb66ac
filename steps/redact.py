"""Hiding faces in a YUV 4:2:0 frame, in place, touching only the pixels around each face.

Each face box is grown by ``mask_scale`` around its centre; the ellipse inscribed in the
grown box is fully replaced, and a feather a few pixels wide outside it blends back to the
picture so no hard edge is drawn. Inside, ``blur`` keeps about three cells of colour across
the face (no feature survives), ``pixelate`` keeps eight blocks, ``solid`` paints it black.
``boxes`` hides nothing: it draws each box and the outline of its mask, for review (green:
detected in this frame, yellow: filled between detections, red: held before, after or
across undetected frames, magenta: added by the audit's second pass), with the track number and score.
"""

from __future__ import annotations

import cv2
import numpy as np

from steps.settings import Mode

#: Cells across the ellipse that survive the blur and pixelation: too few to recognise anyone. With
#: four or six, an independent face detector (MTCNN) still took some blurred heads for faces.
BLUR_CELLS = 3
PIXEL_BLOCKS = 8
#: Feather width outside the ellipse, as a share of its radius.
FEATHER = 0.08
_BLACK = {0: 16, 1: 128, 2: 128}  # Y, U, V of black (limited range)
#: Blur kernels from this size up are applied at a reduced size, where the kernel is about this size (see _hidden).
_LARGE_KERNEL = 9
#: A cell is averaged over at most about this many samples a side (see _cell_means).
_CELL_SAMPLES = 16
#: Y, U, V (BT.601, limited range) of the review colours, by box source (steps.tracking).
_REVIEW_COLOURS = {0: (145, 54, 34), 1: (210, 16, 146), 2: (81, 90, 240), 3: (107, 202, 222)}


def grow(box: np.ndarray, scale: float) -> tuple[float, float, float, float]:
    """Centre and half-axes of the ellipse that hides *box* (x1, y1, x2, y2)."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    return (x1 + x2) / 2, (y1 + y2) / 2, max(1.0, (x2 - x1) * scale / 2), max(1.0, (y2 - y1) * scale / 2)


def _alpha(shape: tuple[int, int], cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    """1 inside the ellipse, falling to 0 across the feather outside it (float32).

    Computed in one array, in place: a new temporary per step cost four times as much for a large
    face (0.8 ms for a 420x412 region, 0.2 ms now)."""
    h, w = shape
    feather = max(2.0, FEATHER * min(ax, ay))
    ys = ((np.arange(h, dtype=np.float32) + 0.5 - cy) / ay) ** 2
    xs = ((np.arange(w, dtype=np.float32) + 0.5 - cx) / ax) ** 2
    weight = np.sqrt(np.add.outer(ys, xs))  # the radius, 1 on the ellipse
    gain = min(ax, ay) / feather
    weight *= -gain
    weight += (1.0 + feather / min(ax, ay)) * gain
    return np.clip(weight, 0.0, 1.0, out=weight)


def _cell_means(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    """*plane* (uint8) shrunk to width x height cells, each the mean of the pixels it covers.

    A large face's cells are thousands of pixels each, and OpenCV's area shrink reads every one of
    them (about 3 ns a pixel at factors that are not whole numbers: 0.1 to 0.3 ms per plane of a
    300 to 600 pixel region). A bilinear shrink first, to about _CELL_SAMPLES samples across a cell
    (each sample the mean of its 2 x 2 neighbours), leaves the means within 2 grey levels of all the
    pixels' (measured on crowd_walk's 1080p frames and a photo, regions of 40 to 700 pixels) at
    about 15 us a plane whatever the size."""
    h, w = plane.shape
    stride = int(min(h / height, w / width) // _CELL_SAMPLES)
    if stride > 1:
        plane = cv2.resize(plane, (w // stride, h // stride), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(plane, (width, height), interpolation=cv2.INTER_AREA)


def _hidden(plane: np.ndarray, mode: Mode, plane_index: int, diameter: float) -> np.ndarray:
    """What replaces the region *plane* (uint8, 2-D)."""
    h, w = plane.shape
    if mode == Mode.solid:
        return np.full_like(plane, _BLACK[plane_index])
    cells = BLUR_CELLS if mode == Mode.blur else PIXEL_BLOCKS
    step = max(2.0, diameter / cells)
    small = _cell_means(plane, max(1, round(w / step)), max(1, round(h / step)))
    if mode == Mode.pixelate:
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    k = int(step) | 1
    if k < _LARGE_KERNEL:
        smooth = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        return cv2.GaussianBlur(smooth, (k, k), 0) if k >= 3 else smooth
    # A large face: the cells are smoothed in float32 at a size reduced so that the kernel is about
    # _LARGE_KERNEL pixels (at least half size), then enlarged. That is within 2 grey levels of the
    # Gaussian on the full-size uint8 region (OpenCV's uint8 Gaussian is slow with large kernels: about
    # 3 ms for a face 120 pixels wide), and costs about the same whatever the face's size.
    shrink = max(2, k // _LARGE_KERNEL)
    low = cv2.resize(small.astype(np.float32), (max(1, w // shrink), max(1, h // shrink)),
                     interpolation=cv2.INTER_LINEAR)
    low = cv2.GaussianBlur(low, (k // shrink | 1, k // shrink | 1), 0)
    return cv2.resize(cv2.convertScaleAbs(low), (w, h), interpolation=cv2.INTER_LINEAR)


def draw(planes: tuple[np.ndarray, np.ndarray, np.ndarray], boxes: np.ndarray, mask_scale: float) -> None:
    """Draw each box (and the ellipse its mask would fill) in the Y, U and V planes, in place (review mode)."""
    height = planes[0].shape[0]
    thickness = max(1, round(height / 360))
    for box in boxes:
        source = int(box[6]) if len(box) > 6 else 0
        colour = _REVIEW_COLOURS.get(source, _REVIEW_COLOURS[0])
        x1, y1, x2, y2 = (int(round(float(v))) for v in box[:4])
        cx, cy, ax, ay = grow(box, mask_scale)
        for index, plane in enumerate(planes):
            k = 1 if index == 0 else 2  # chroma planes are half size
            t = max(1, thickness // k)
            cv2.rectangle(plane, (x1 // k, y1 // k), (x2 // k, y2 // k), colour[index], t)
            cv2.ellipse(plane, (round(cx / k), round(cy / k)), (round(ax / k), round(ay / k)), 0, 0, 360,
                        colour[index], t)
        label = f"{int(box[5])} {box[4]:.2f}" if len(box) > 5 else f"{box[4]:.2f}"
        cv2.putText(planes[0], label, (x1, max(10, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.35 * thickness, 235,
                    thickness)


def hide(planes: tuple[np.ndarray, np.ndarray, np.ndarray], boxes: np.ndarray, mode: Mode, mask_scale: float) -> None:
    """Hide every box of *boxes* (N x >=4, full-frame pixels) in the Y, U and V planes, in place."""
    if mode == Mode.boxes:
        draw(planes, boxes, mask_scale)
        return
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
