"""The rendered workflow's own container commands, run locally in DAG order (tests/argo_emulator.py).

A mismatch between the YAML and the step CLIs (an option renamed, a path, the fan-out list's
format, the depends rule) fails here, without a cluster.
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from steps.settings import Settings
from tests import helpers as h
from tests.argo_emulator import Emulator
from tests.conftest import MEDIA, needs_media
from tests.helpers import decoded_frames
from workflows.argo import ClusterConfig, render_documents

ARGO_RESULT_LIMIT = 256 * 1024  # Argo keeps the last 256 kB of a step's printed result
OBJECT_LIMIT = 1024 * 1024  # etcd's object size limit is about 1.5 MB; Argo warns well before


def volumes(base):
    folders = {name: base / name for name in ("input", "output", "tmp")}
    for folder in folders.values():
        folder.mkdir()
    return folders


def snapshot(folder):
    return sorted((p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in folder.rglob("*"))


@needs_media
def test_rendered_workflow_runs_on_real_clips(tmp_path):
    folders = volumes(tmp_path)
    (folders["input"] / "street").mkdir()
    shutil.copyfile(MEDIA / "carphone_qcif.mp4", folders["input"] / "street" / "carphone_qcif.mp4")
    shutil.copyfile(MEDIA / "rotated_noface.mov", folders["input"] / "rotated_noface.mov")
    (folders["input"] / "broken.mp4").write_text("not a video")
    before = snapshot(folders["input"])
    doc = yaml.safe_load(render_documents(ClusterConfig(), Settings(mode="pixelate"), "WorkflowTemplate"))

    run = Emulator(doc, folders).run()

    discover = run.nodes_of("discover")[0]
    # longest first (frames x pixels): rotated_noface.mov (66 x 568x320), street/carphone_qcif.mp4 (120 x 176x144),
    # broken.mp4 (unreadable)
    assert json.loads(discover.attempts[-1].stdout) == [1, 2, 0]
    by_index = {node.item: node for node in run.nodes_of("anonymize")}
    assert sorted(by_index) == ["0", "1", "2"]
    assert [a.exit_code for a in by_index["0"].attempts] == [3]  # permanent: not retried
    assert by_index["1"].phase == by_index["2"].phase == "Succeeded"
    summarize = run.nodes_of("summarize")[0]
    assert [a.exit_code for a in summarize.attempts] == [1]  # ran after a failed child, reported it, not retried
    assert run.task_phases == {"discover": "Succeeded", "anonymize": "Failed", "join": "Succeeded",
                               "summarize": "Failed"}
    assert run.phase == "Failed"  # so that `argo retry` re-runs the failed pod, then summarize

    out = folders["output"]
    summary = json.loads((out / "summary.json").read_text())
    assert {k: summary["totals"][k] for k in ("discovered", "done", "failed")} == {"discovered": 3, "done": 2,
                                                                                   "failed": 1}
    for name, frames in (("street/carphone_qcif.mp4", 120), ("rotated_noface.mov", 66)):
        assert decoded_frames(out / name) == frames
        report = json.loads((out / (name + ".report.json")).read_text())
        assert report["status"] == "done" and report["settings"]["mode"] == "pixelate"  # settings came by env
    assert not (out / "broken.mp4").exists()
    assert (out / ".workflows" / "emulated-run" / "manifest.json").is_file()  # this workflow's own manifest
    assert snapshot(folders["input"]) == before  # the input volume is only read
    check_metrics_and_message(run, summary, out)

    again = Emulator(doc, folders).run()  # a resubmission (or argo retry) redoes nothing that is done
    assert json.loads(again.nodes_of("discover")[0].attempts[-1].stdout) == [0]  # only the failed one is left
    statuses = {row["path"]: row["status"] for row in json.loads((out / "summary.json").read_text())["rows"]}
    assert statuses == {"broken.mp4": "failed", "rotated_noface.mov": "skipped", "street/carphone_qcif.mp4": "skipped"}
    assert again.phase == "Failed"
    assert sum(m.value for m in emitted(again, "anonymize", "frames_total")) == 0  # skipped videos: no new work


def emitted(run, task: str, name: str) -> list:
    return [m for node in run.nodes_of(task) for a in node.attempts for m in a.metrics
            if m.name == "video_anonymizer_" + name]


def check_metrics_and_message(run, summary: dict, out) -> None:
    """The metrics the controller would emit, from the pods' real output parameters, agree with the summary."""
    t = summary["totals"]
    done = [r for r in summary["rows"] if r["status"] == "done"]
    pods = emitted(run, "anonymize", "pods_total")
    assert sorted(m.labels["status"] for m in pods) == ["Failed", "Succeeded", "Succeeded"]
    assert all(m.kind == "counter" and m.value == 1 for m in pods)
    assert sum(m.value for m in emitted(run, "anonymize", "frames_total")) == t["frames"] == 186
    assert sum(m.value for m in emitted(run, "anonymize", "video_seconds_total")) == pytest.approx(
        sum(r["duration"] for r in done), abs=0.01)
    seconds = emitted(run, "anonymize", "pod_seconds_total")
    assert len(seconds) == 3 and all(m.labels == {"gpu_mode": "nvidia"} and m.value > 0 for m in seconds)
    assert len(emitted(run, "anonymize", "pod_duration_seconds")) == 2  # successful pods only
    gauges = {m.labels.get("state", m.name): m.value for m in emitted(run, "summarize", "run_videos")}
    assert gauges == {"done": 2, "skipped": 0, "failed": 1, "retried": 0}
    assert [m.value for m in emitted(run, "summarize", "run_frames")] == [186]
    assert [m.value for m in emitted(run, "summarize", "run_worker_seconds_per_video_hour")] == [
        t["worker_seconds_per_video_hour"]]
    # Where the report is: the step's printed result and the workflow's global output `summary`.
    line = f"3 videos: 2 done, 0 skipped, 1 failed. Report: {out / 'summary.html'} (also summary.md, summary.json)."
    assert run.outputs == {"summary": line}
    assert run.nodes_of("summarize")[0].attempts[-1].stdout.strip() == line
    assert (out / "summary.html").is_file()


@needs_media
def test_a_retried_pod_records_its_attempt(tmp_path):
    """Argo's {{retries}} reaches the report: a pod that failed once (a transient error) and then succeeded."""
    folders = volumes(tmp_path)
    (folders["input"] / "street").mkdir()
    shutil.copyfile(MEDIA / "carphone_qcif.mp4", folders["input"] / "street" / "carphone_qcif.mp4")
    blocker = folders["output"] / "street"
    blocker.write_text("a file where the output folder must go: the first try fails")

    def fault(node) -> None:
        if node.task == "anonymize" and len(node.attempts) == 1:
            blocker.unlink()  # the cause goes away before the retry

    doc = yaml.safe_load(render_documents(ClusterConfig(), Settings(), "WorkflowTemplate"))
    run = Emulator(doc, folders, before_attempt=fault).run()

    anonymize = run.nodes_of("anonymize")[0]
    assert [a.exit_code != 0 for a in anonymize.attempts] == [True, False]
    assert [m.labels["status"] for m in emitted(run, "anonymize", "pods_total")] == ["Failed", "Succeeded"]
    report = json.loads((folders["output"] / "street" / "carphone_qcif.mp4.report.json").read_text())
    assert report["status"] == "done" and report["attempt"] == 2
    summary = json.loads((folders["output"] / "summary.json").read_text())
    assert summary["totals"]["retried"] == 1 and summary["rows"][0]["attempts"] == 2
    assert run.phase == "Succeeded"


@needs_media
def test_rendered_workflow_runs_long_videos_in_segments_and_resumes(tmp_path):
    folders = volumes(tmp_path)
    (folders["input"] / "street").mkdir()
    clips = {"rotated_noface.mov": "rotated_noface.mov", "street/carphone_qcif.mp4": "carphone_qcif.mp4"}
    for name, source in clips.items():
        shutil.copyfile(MEDIA / source, folders["input"] / name)
    doc = yaml.safe_load(render_documents(ClusterConfig(segment_seconds=2), Settings(mode="pixelate"),
                                          "WorkflowTemplate"))
    emulator = Emulator(doc, folders)
    # A first attempt that stopped early: discover ran, one segment of the 4 s clip was anonymized.
    first = emulator.run_template("discover")
    # longest first: 2 x 33 frames of 568x320, then 3 x 40 frames of 176x144
    assert json.loads(first.attempts[-1].stdout) == ["0:0", "0:1", "1:0", "1:1", "1:2"]
    assert emulator.run_template("anonymize", {"index": "1:1"}).phase == "Succeeded"

    run = emulator.run()  # the resubmission does only what is missing

    discover = run.nodes_of("discover")[0]
    assert json.loads(discover.attempts[-1].stdout) == ["0:0", "0:1", "1:0", "1:2"]
    assert run.phase == "Succeeded", [n.attempts[-1].stderr for n in run.nodes if n.phase != "Succeeded"]
    # the pod that finished each video's last segment joined it (the emulator runs them one after the
    # other, in list order); the join step found nothing left
    joined_by = [n.item for n in run.nodes_of("anonymize") if "segments, joined)" in n.attempts[-1].stderr]
    assert joined_by == ["0:1", "1:2"]
    assert "joined)" not in run.nodes_of("join")[0].attempts[-1].stderr
    out = folders["output"]
    for name in clips:
        original, joined = folders["input"] / name, out / name
        assert h.frame_times(joined) == pytest.approx(h.frame_times(original), abs=0.0015)
        assert h.audio_packet_hashes(joined) == h.audio_packet_hashes(original)
        report = json.loads((out / (name + ".report.json")).read_text())
        assert report["status"] == "done" and report["segments"] == {"rotated_noface.mov": 2}.get(name, 3)
        assert report["frames_out"] == decoded_frames(joined) == decoded_frames(original)
        assert report["settings"]["mode"] == "pixelate"
    assert not [p for p in out.rglob("*") if p.name.startswith((".segments-", ".partial-"))], "left behind"
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["totals"]["done"], summary["totals"]["failed"]) == (2, 0)

    again = Emulator(doc, folders).run()
    assert json.loads(again.nodes_of("discover")[0].attempts[-1].stdout) == []
    assert again.task_phases == {"discover": "Succeeded", "anonymize": "Skipped", "join": "Succeeded",
                                 "summarize": "Succeeded"}
    forced = yaml.safe_load(render_documents(ClusterConfig(segment_seconds=2, force=True), Settings(mode="pixelate"),
                                             "WorkflowTemplate"))
    listed = Emulator(forced, folders).run_template("discover")  # --force lists everything again
    assert json.loads(listed.attempts[-1].stdout) == ["0:0", "0:1", "1:0", "1:1", "1:2"]


def test_ten_thousand_videos_fit_argo_limits(tmp_path):
    folders = volumes(tmp_path)
    for folder in range(100):
        sub = folders["input"] / f"camera{folder:03d}"
        sub.mkdir()
        for clip in range(100):  # empty files: discover lists videos by extension, without decoding them
            (sub / f"clip-{clip:03d}-a-rather-long-descriptive-file-name-as-cameras-write-them.mp4").touch()
    documents = {kind: render_documents(ClusterConfig(), Settings(), kind) for kind in ("WorkflowTemplate", "Workflow")}
    doc = yaml.safe_load(documents["WorkflowTemplate"])

    node = Emulator(doc, folders).run_template("discover")

    assert node.phase == "Succeeded", node.attempts[-1].stderr
    printed = node.attempts[-1].stdout
    assert json.loads(printed) == list(range(10_000))  # empty files: no length, path order
    assert len(printed.encode()) < ARGO_RESULT_LIMIT / 4, len(printed.encode())
    manifest = json.loads((folders["output"] / ".workflows" / "emulated-run" / "manifest.json").read_text())
    assert len(manifest["items"]) == 10_000
    for kind, text in documents.items():
        size = len(json.dumps(yaml.safe_load(text)).encode())
        assert size < OBJECT_LIMIT / 50, (kind, size)  # the spec does not grow with the number of videos
