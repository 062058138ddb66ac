"""What the rendered workflow shows people: Prometheus metrics, output parameters, the summary's location.

Whether the metrics' values are right is checked by running the rendered commands
(tests/test_argo_wiring.py, the emulator evaluates each metric from the pods' real outputs).
"""

from __future__ import annotations

import copy

import pytest
import yaml

from steps.settings import Settings
from steps.summarize import METRIC_TOTALS
from tests.argo_emulator import eval_when
from workflows.argo import OUTPUTS_IN_POD, TMP_MOUNT, ClusterConfig, render_documents
from workflows.lint import lint_documents


def rendered(**cluster) -> dict:
    return yaml.safe_load(render_documents(ClusterConfig(**cluster), Settings(), "WorkflowTemplate"))


def template(doc: dict, name: str) -> dict:
    return next(t for t in doc["spec"]["templates"] if t["name"] == name)


def metrics(doc: dict, name: str) -> dict[tuple[str, str], dict]:
    """(metric name, state label or '') -> metric."""
    found = {}
    for metric in template(doc, name)["metrics"]["prometheus"]:
        state = next((label["value"] for label in metric.get("labels") or [] if label["key"] == "state"), "")
        found[(metric["name"], state)] = metric
    return found


def test_anonymize_emits_failures_work_and_time():
    doc = rendered(gpu_mode="gpushare")
    found = metrics(doc, "anonymize")
    assert sorted(name for name, _ in found) == [
        "video_anonymizer_frames_total", "video_anonymizer_pod_duration_seconds", "video_anonymizer_pod_seconds_total",
        "video_anonymizer_pods_total", "video_anonymizer_video_seconds_total"]
    pods = found[("video_anonymizer_pods_total", "")]
    assert pods["counter"] == {"value": "1"} and pods["labels"] == [{"key": "status", "value": "{{status}}"}]
    assert "when" not in pods  # every ending counts: failures are status Failed or Error
    frames = found[("video_anonymizer_frames_total", "")]
    assert frames["counter"] == {"value": "{{outputs.parameters.frames}}"}
    assert frames["when"] == "{{status}} == Succeeded"
    assert found[("video_anonymizer_video_seconds_total", "")]["counter"] == {
        "value": "{{outputs.parameters.video-seconds}}"}
    busy = found[("video_anonymizer_pod_seconds_total", "")]
    assert busy["counter"] == {"value": "{{duration}}"} and busy["labels"] == [{"key": "gpu_mode",
                                                                               "value": "gpushare"}]
    histogram = found[("video_anonymizer_pod_duration_seconds", "")]["histogram"]
    assert histogram["value"] == "{{duration}}" and histogram["buckets"] == sorted(histogram["buckets"])
    assert histogram["buckets"][-1] == ClusterConfig().video_deadline_seconds  # no pod runs longer
    # The values come from files the step writes in the pod's writable /tmp (the root is read-only).
    anonymize = template(doc, "anonymize")
    outputs = {p["name"]: p["valueFrom"] for p in anonymize["outputs"]["parameters"]}
    assert outputs == {name: {"path": f"{OUTPUTS_IN_POD}/{name}", "default": default}
                       for name, default in (("frames", "0"), ("video-seconds", "0"), ("result", "unknown"))}
    assert OUTPUTS_IN_POD.startswith(TMP_MOUNT + "/")
    args = anonymize["container"]["args"]
    assert args[args.index("--argo-outputs") + 1] == OUTPUTS_IN_POD
    env = {e["name"]: e["value"] for e in anonymize["container"]["env"]}
    assert env["ANON_PREVIOUS_ATTEMPTS"] == "{{retries}}"  # the report records which try it was


def test_summarize_emits_the_run_totals_and_says_where_the_report_is():
    doc = rendered()
    found = metrics(doc, "summarize")
    states = {state for name, state in found if name == "video_anonymizer_run_videos"}
    assert states == {"done", "skipped", "failed", "retried"}
    for (_, state), metric in found.items():
        assert metric["gauge"]["realtime"] is False
        assert {"key": "workflow_template", "value": "video-anonymizer"} in metric["labels"]
        assert metric["when"].startswith("{{status}} != Error")  # Failed (a video failed) still has totals
        if state:
            assert metric["gauge"]["value"] == f"{{{{outputs.parameters.{state}}}}}"
    helps = {m["help"] for (name, _), m in found.items() if name == "video_anonymizer_run_videos"}
    assert len(helps) == 1  # Prometheus: one help text per metric name
    per_hour = found[("video_anonymizer_run_worker_seconds_per_video_hour", "")]
    assert per_hour["gauge"]["value"] == "{{outputs.parameters.worker-seconds-per-video-hour}}"
    # The "when" as Argo evaluates it, once substituted: no gauge of a cost when nothing was done.
    assert eval_when("Failed != Error && 3 > 0") and not eval_when("Succeeded != Error && 0 > 0")
    summarize = template(doc, "summarize")
    parameters = {p["name"]: p for p in summarize["outputs"]["parameters"]}
    assert set(parameters) == {"summary", *(n.replace("_", "-") for n in METRIC_TOTALS)}
    assert parameters["summary"]["globalName"] == "summary"  # `argo get` lists it under Output Parameters
    assert "artifacts" not in summarize["outputs"]  # no artifact repository assumed


def test_summary_artifacts_only_when_asked():
    doc = rendered(summary_artifact=True)
    assert lint_documents([doc]) == []
    artifacts = template(doc, "summarize")["outputs"]["artifacts"]
    assert [(a["name"], a["path"]) for a in artifacts] == [("summary-html", "/output/summary.html"),
                                                          ("summary-md", "/output/summary.md"),
                                                          ("summary-json", "/output/summary.json")]
    for artifact in artifacts:
        assert artifact["archive"] == {"none": {}}  # the UI shows the HTML itself, not a tarball
        assert artifact["optional"] is True  # a failed summarize still reports its own error


def _summarize_metric(doc, name):
    return next(m for m in template(doc, "summarize")["metrics"]["prometheus"] if m["name"] == name)


METRIC_MISTAKES = {
    "bad name": (lambda d: template(d, "anonymize")["metrics"]["prometheus"][0].__setitem__("name", "frames-done"),
                 "may only hold letters"),
    "undeclared output": (lambda d: template(d, "anonymize")["metrics"]["prometheus"][1]["counter"].__setitem__(
        "value", "{{outputs.parameters.frame}}"), "no output parameter 'frame'"),
    "two types": (lambda d: template(d, "anonymize")["metrics"]["prometheus"][0].__setitem__(
        "gauge", {"value": "1", "realtime": False}), "has 2 types"),
    "variable a metric cannot see": (lambda d: template(d, "anonymize")["metrics"]["prometheus"][0]["labels"].append(
        {"key": "video", "value": "{{item}}"}), "{{item}}, which a metric cannot see"),
    "two help texts": (lambda d: _summarize_metric(d, "video_anonymizer_run_videos").__setitem__("help", "other"),
                       "one help text and one type per name"),
    "buckets": (lambda d: template(d, "anonymize")["metrics"]["prometheus"][4]["histogram"]["buckets"].reverse(),
                "buckets must increase"),
    "realtime": (lambda d: _summarize_metric(d, "video_anonymizer_run_frames")["gauge"].__setitem__("realtime", True),
                 "realtime gauge"),
    "label key": (lambda d: template(d, "anonymize")["metrics"]["prometheus"][0]["labels"][0].__setitem__(
        "key", "pod status"), "not a Prometheus label name"),
}


@pytest.mark.parametrize("mistake", METRIC_MISTAKES)
def test_lint_catches_metric_mistakes(mistake):
    doc = rendered()
    assert lint_documents([doc]) == []
    mutate, expected = METRIC_MISTAKES[mistake]
    bad = copy.deepcopy(doc)
    mutate(bad)
    errors = lint_documents([bad])
    assert any(expected in error for error in errors), errors
