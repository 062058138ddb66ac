"""The privacy targets, measured by the quality harness on its fixed quick clips: a regression fails here.

The harness (workflows.evaluate) renders labelled clips, anonymizes them with the default
settings and compares input and output where the faces are (recall per face size, frames
with a face left fully visible) and away from them (over-blur). The targets are the ones in
README.md.
"""

from __future__ import annotations

import subprocess

import pytest

from steps.settings import Settings
from workflows.evaluate import bucket_rows, measure, over_blur, quick_suite, run_eval
from workflows.synthetic import render_scene


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    return run_eval(Settings(), "quick", tmp_path_factory.mktemp("eval"))


def test_recall_targets_per_face_size(evaluation):
    rows = {r.bucket: r for r in evaluation.rows}
    assert all(r.faces >= 50 for r in rows.values()), "each size bucket needs enough faces to mean something"
    assert rows["<32"].recall >= 0.95, evaluation.markdown()
    assert rows["32-96"].recall >= 0.995, evaluation.markdown()
    assert rows[">96"].recall >= 0.995, evaluation.markdown()


def test_no_frame_shows_a_face_of_32_px_or_more(evaluation):
    rows = {r.bucket: r for r in evaluation.rows}
    assert rows["32-96"].frames_fully_visible == 0 and rows[">96"].frames_fully_visible == 0, evaluation.markdown()


def test_over_blur_target(evaluation):
    assert evaluation.over_blur <= 0.03, evaluation.markdown()


def test_the_measure_tells_visible_faces_from_hidden_ones(tmp_path):
    """The harness's own check: an untouched output shows every face; a blurred-out one hides all and over-blurs."""
    scene = quick_suite()[0]
    source, blurred = tmp_path / "in.mp4", tmp_path / "blurred.mp4"
    truth = render_scene(scene, source)
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(source), "-vf", "boxblur=12:2", "-c:v", "libx264", "-crf",
                    "18", str(blurred)], check=True)
    untouched = measure(truth, source, source)
    assert untouched.faces and not any(f.hidden for f in untouched.faces)
    assert all(f.fully_visible for f in untouched.faces)
    assert untouched.away_changed == 0
    everything = measure(truth, source, blurred)
    assert all(f.hidden for f in everything.faces)
    assert over_blur([everything]) > 0.5
    rows = {r.bucket: r for r in bucket_rows([untouched])}
    assert rows["32-96"].recall == 0 and rows["32-96"].frames_fully_visible > 0
