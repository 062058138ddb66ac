"""How much of a face's detail a picture still carries: the one definition of "hidden".

The quality harness (workflows.evaluate) counts a face as hidden with it, and the audit pass
(steps.audit) uses it to tell a face left visible from a blurred face an independent detector
still takes for one.

Definitions (on luma; the decoded input is the reference, so the input's own compression does
not count):

- **Detail** is what a Gaussian blur of sigma = face height / 24 removes: structure finer than
  about 4 cycles per face height (eyes, brows, nostrils, mouth, hairline). Recognising a face
  relies on 8 to 16 cycles per face width (Costen, Parker & Craw 1996; Näsänen 1999), which
  this band contains.
- A pixel of a face box is **changed beyond recognition** when the output no longer carries the
  input's detail there: SSIM's contrast-structure term between the two detail images, over a
  Gaussian window of sigma = face height / 12 (about an eye), ``(2 cov + C) / (var_in + var_out
  + C)`` with C = (0.01 * 255)^2, is below ``HIDDEN_SSIM`` (0.5). Pixels where the input has no
  detail (local RMS under ``DETAIL_FLOOR``, 2 grey levels: flat skin, a plain wall) are left out:
  there is nothing to recognise there, and a blur leaves a flat area flat.
- A face is **hidden** when at least ``HIDDEN_SHARE`` (80 %) of the rest of its box is changed
  beyond recognition; **fully visible** when less than ``VISIBLE_SHARE`` (20 %) is. Measured: an
  untouched face scores 0 % after x264 at the default quality, a face under the default blur
  85 to 100 % (the corners of its box lie outside the ellipse).
"""

from __future__ import annotations

import cv2
import numpy as np

HIDDEN_SSIM = 0.5
HIDDEN_SHARE = 0.8
VISIBLE_SHARE = 0.2
#: Detail is what a Gaussian blur of this sigma (share of the face height) removes: eyes, nostrils, mouth.
DETAIL_SIGMA = 1 / 24
#: The window over which detail is compared: a Gaussian of this sigma (share of the face height), about an eye.
WINDOW_SIGMA = 1 / 12
#: Places whose detail varies by less than this (grey levels, RMS) hold nothing to recognise: left out.
DETAIL_FLOOR = 2.0

_C_DETAIL = (0.01 * 255) ** 2


def changed_share(before: np.ndarray, after: np.ndarray, box: tuple[int, int, int, int], size: float) -> float:
    """Share of *box* whose fine detail is changed beyond recognition in *after* (see the module doc)."""
    detail_sigma, window_sigma = max(0.7, size * DETAIL_SIGMA), max(1.0, size * WINDOW_SIGMA)
    x1, y1, x2, y2 = box
    if x2 <= x1 or y2 <= y1:
        return 1.0
    pad = int(3 * (detail_sigma + window_sigma)) + 1
    h, w = before.shape
    px1, py1, px2, py2 = max(0, x1 - pad), max(0, y1 - pad), min(w, x2 + pad), min(h, y2 + pad)

    def fine(grey: np.ndarray) -> np.ndarray:
        region = grey[py1:py2, px1:px2].astype(np.float32)
        return region - cv2.GaussianBlur(region, (0, 0), detail_sigma)

    def local(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (0, 0), window_sigma)[y1 - py1:y2 - py1, x1 - px1:x2 - px1]

    a, b = fine(before), fine(after)
    energy_a, energy_b, cov = local(a * a), local(b * b), local(a * b)
    similar = (2 * cov + _C_DETAIL) / (energy_a + energy_b + _C_DETAIL)
    detailed = energy_a >= DETAIL_FLOOR ** 2
    if not detailed.any():
        return 1.0
    return float((similar[detailed] < HIDDEN_SSIM).mean())
