"""The audit pass: an independent face detector looks at the finished output for faces left visible.

MTCNN (``facenet-pytorch``; its weights ship in the wheel) is a different model from the
one that found the faces, so its misses are not the same. It runs on the output and, at the
same frames, on the input. Every face it finds in the output with a probability of at least
``PROBABILITY`` is a **suspect** (frame, time, box, probability), listed in the report for a
person to look at. A suspect that matches a face MTCNN also finds at the same place in the
input (IoU >= ``MATCH_IOU``) and where that face's box still carries the input's detail (less than
``steps.likeness.HIDDEN_SHARE`` of it changed beyond recognition, the quality harness's measure)
is a **leak**: most likely a real face left visible. A suspect found in the input whose detail is
gone is a hidden face whose blurred shape MTCNN still takes for one; a suspect not found in the
input is most likely a blur shape too. The goal, which the tests check on the shared clips: no
leaks.

MTCNN's false positives (backs of heads, a hand) can be leaks too, and no model that ships here
tells them from faces reliably (see the README). So, by default, a video with leaks gets a
**second pass** (steps.anonymize): it is anonymized again from its input with each leak's box
hidden too (``leak_boxes``: a few frames either side, as a track's pre- and post-roll), and those
frames are audited again (``leaks_left``). The first look's leaks stay in the report: they are
where the video's own detector missed something.

Both videos are decoded by the same code as the anonymizer's (steps.ffio), at a size whose
longest side is at most ``MAX_SIDE`` (MTCNN's smallest face is ``MIN_FACE`` pixels there).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
from pydantic import BaseModel

from steps.detectors.base import fit_size
from steps.ffio import Decoder, Frame
from steps.likeness import HIDDEN_SHARE, changed_share
from steps.probe import MediaInfo, probe
from steps.segments import Span
from steps.tracking import AUDITED, SOURCE, TRACK, iou_matrix

PROBABILITY = 0.9
MATCH_IOU = 0.3
MAX_SIDE = 1280
MIN_FACE = 20
BATCH = 8
#: Suspects other than leaks listed in a report (the count is always complete; every leak is listed).
LISTED = 200


class Suspect(BaseModel):
    frame: int
    time: Optional[float]
    box: list[float]  # x1, y1, x2, y2 in the output's pixels
    probability: float
    #: MTCNN also finds a face at the same place in the input.
    in_input: bool
    #: For a suspect found in the input: the share of that input face's box whose detail the output no longer carries.
    changed: Optional[float] = None
    #: Found in the input and not hidden in the output (changed below HIDDEN_SHARE): most likely left visible.
    leak: bool = False


class SecondPass(BaseModel):
    """The video anonymized again with the first look's leaks hidden too, and those frames audited again."""

    boxes: int = 0  # boxes added (each leak, a few frames either side)
    frames: int = 0  # frames they are in
    #: Leaks the audit still finds in those frames; None when the second pass failed (see error).
    leaks_left: Optional[int] = None
    seconds: float = 0.0
    error: Optional[str] = None


class AuditResult(BaseModel):
    detector: str = "mtcnn (facenet-pytorch)"
    every: int = 1
    frames_checked: int = 0
    input_faces: int = 0
    output_faces: int = 0
    suspects: int = 0  # faces found in the output
    suspect_frames: int = 0  # frames with at least one
    leaks: int = 0  # suspects also found at the same place in the input, with their detail kept
    listed: list[Suspect] = []
    seconds: float = 0.0
    error: Optional[str] = None
    second_pass: Optional[SecondPass] = None

    @property
    def leaks_left(self) -> int:
        """Leaks in the video as written: after a second pass that ran, what it still found."""
        if self.second_pass is not None and self.second_pass.leaks_left is not None:
            return self.second_pass.leaks_left
        return self.leaks

    def where_to_look(self, count: int = 5) -> str:
        """The first suspects as 'time (box)', leaks first, for the summary."""
        items = sorted(self.listed, key=lambda s: (not s.leak, s.frame))[:count]
        return ", ".join(f"{s.time:.2f}s" if s.time is not None else f"frame {s.frame}" for s in items)


def audit_line(result: AuditResult) -> str:
    """One line for people: the counts and where to look."""
    if result.error:
        return result.error
    line = (f"{result.suspects} suspect faces ({result.leaks} also found in the input, not hidden) in "
            f"{result.frames_checked} frames checked")
    second = result.second_pass
    if second is not None:
        line += (f"; second pass failed: {second.error}" if second.error else
                 f"; a second pass hid them ({second.boxes} boxes), {second.leaks_left} left")
    return line + (f"; look at {result.where_to_look()}" if result.suspects else "")


class _Mtcnn:
    def __init__(self) -> None:
        import torch
        from facenet_pytorch import MTCNN

        device = "cuda:0" if torch.cuda.is_available() else "cpu"
        self.model = MTCNN(keep_all=True, min_face_size=MIN_FACE, device=device)

    def faces(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """(N, 5) boxes with probability >= PROBABILITY for each RGB image (all one size)."""
        boxes, probs = self.model.detect(np.stack(images))
        found = []
        for b, p in zip(boxes, probs):
            if b is None:
                found.append(np.zeros((0, 5), np.float32))
                continue
            keep = np.asarray(p, np.float64) >= PROBABILITY
            found.append(np.column_stack([np.asarray(b)[keep], np.asarray(p)[keep]]).astype(np.float32))
        return found


def changed_in_box(before: np.ndarray, after: np.ndarray, box: np.ndarray) -> float:
    """The share of *box*'s detail (x1, y1, x2, y2 in these RGB pictures' pixels, clipped to them) that
    *after* no longer carries, by the quality harness's measure (steps.likeness)."""
    h, w = before.shape[:2]
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    grey_before, grey_after = (cv2.cvtColor(p, cv2.COLOR_RGB2GRAY) for p in (before, after))
    return changed_share(grey_before, grey_after, (x1, y1, x2, y2), float(box[3] - box[1]))


def _frames(info: MediaInfo, every: int, only: Optional[Collection[int]],
            span: Optional[Span] = None) -> Iterator[tuple[Frame, Optional[float]]]:
    decoder = Decoder(info, span=span)
    try:
        for frame in decoder.frames():
            if (frame.index in only) if only is not None else (frame.index % every == 0):
                seconds = float(frame.pts * decoder.time_base) if frame.pts is not None else None
                yield frame, seconds
        decoder.finish()
    finally:
        decoder.kill()


def audit(source: Path, output: Path, every: int = 1, only: Optional[Collection[int]] = None,
          span: Optional[Span] = None) -> AuditResult:
    """Look for faces left visible in *output*, compared with *source* (see the module doc), in every
    *every*-th frame or, when given, only in the frames numbered *only*. With a *span*, *output* is that
    segment of *source* (steps.segments): frames are numbered from the segment's first."""
    started = time.monotonic()
    result = AuditResult(every=every)
    out_info, in_info = probe(output), probe(source)
    width, height = out_info.video.display_size
    size = fit_size(width, height, MAX_SIDE)
    scale = np.array([width / size[0], height / size[1]] * 2, np.float32)
    detector = _Mtcnn()
    pairs = zip(_frames(in_info, every, only, span), _frames(out_info, every, only))
    batch: list[tuple[int, Optional[float], np.ndarray, np.ndarray]] = []
    others_listed = 0

    def flush() -> None:
        nonlocal others_listed
        faces_in = detector.faces([b[2] for b in batch])
        faces_out = detector.faces([b[3] for b in batch])
        for (index, seconds, before, after), found_in, found_out in zip(batch, faces_in, faces_out):
            result.frames_checked += 1
            result.input_faces += len(found_in)
            result.output_faces += len(found_out)
            overlap = iou_matrix(found_out, found_in) if len(found_in) else np.zeros((len(found_out), 1))
            result.suspect_frames += int(len(found_out) > 0)
            for box, overlaps in zip(found_out, overlap):
                in_input = bool(overlaps.max() >= MATCH_IOU)
                # Is the input's face there (its own box: MTCNN's box around a blur is wider) hidden?
                changed = changed_in_box(before, after, found_in[overlaps.argmax()]) if in_input else None
                leak = in_input and changed < HIDDEN_SHARE
                result.suspects += 1
                result.leaks += int(leak)
                if leak or others_listed < LISTED:
                    others_listed += not leak
                    result.listed.append(Suspect(frame=index, time=seconds,
                                                 box=[round(float(v), 1) for v in box[:4] * scale],
                                                 probability=round(float(box[4]), 3), in_input=in_input,
                                                 changed=None if changed is None else round(changed, 3), leak=leak))
        batch.clear()

    for (frame_in, _), (frame_out, seconds) in pairs:
        batch.append((frame_out.index, seconds, frame_in.picture(size), frame_out.picture(size)))
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    result.seconds = round(time.monotonic() - started, 3)
    return result


def joined(parts: Sequence[tuple[Optional[AuditResult], int]]) -> Optional[AuditResult]:
    """The audit of a video anonymized in segments, from each segment's audit and the number of frames
    before that segment (its suspects' frames are renumbered from the video's first). None when no segment
    was audited; a segment not audited, or whose audit or second pass failed, is named in the error."""
    audited = [(result, offset) for result, offset in parts if result is not None]
    if not audited:
        return None
    total = AuditResult(every=audited[0][0].every, seconds=round(sum(r.seconds for r, _ in audited), 3))
    errors = [f"segment {k + 1}: {result.error}" for k, (result, _) in enumerate(parts)
              if result is not None and result.error]
    errors += [f"segment {k + 1} was not audited" for k, (result, _) in enumerate(parts) if result is None]
    passes = [r.second_pass for r, _ in audited if r.second_pass is not None]
    if passes:
        failed = [p.error for p in passes if p.error]
        total.second_pass = SecondPass(
            boxes=sum(p.boxes for p in passes), frames=sum(p.frames for p in passes),
            leaks_left=None if failed else sum(p.leaks_left or 0 for p in passes),
            seconds=round(sum(p.seconds for p in passes), 3), error="; ".join(failed) or None)
        # A second pass ran only in segments with leaks: the others' leaks (none) count as left.
        if total.second_pass.leaks_left is not None:
            total.second_pass.leaks_left += sum(r.leaks for r, _ in audited if r.second_pass is None)
    others_listed = 0
    for result, offset in audited:
        for field in ("frames_checked", "input_faces", "output_faces", "suspects", "suspect_frames", "leaks"):
            setattr(total, field, getattr(total, field) + getattr(result, field))
        for suspect in result.listed:
            if suspect.leak or others_listed < LISTED:
                others_listed += not suspect.leak
                total.listed.append(suspect.model_copy(update={"frame": suspect.frame + offset}))
    total.error = "; ".join(errors) or None
    return total


def leak_boxes(result: AuditResult, before: int, after: int) -> dict[int, np.ndarray]:
    """Each leak's box (output pixels) in its frame and *before* / *after* frames around it, as the
    tracker's rows (steps.tracking; source AUDITED), by frame index: what the second pass hides."""
    rows: dict[int, list[np.ndarray]] = {}
    for suspect in result.listed:
        if not suspect.leak:
            continue
        row = np.zeros(7, np.float32)
        row[:4], row[4], row[TRACK], row[SOURCE] = suspect.box, suspect.probability, -1, AUDITED
        for index in range(max(0, suspect.frame - before), suspect.frame + after + 1):
            rows.setdefault(index, []).append(row)
    return {index: np.stack(boxes) for index, boxes in rows.items()}
