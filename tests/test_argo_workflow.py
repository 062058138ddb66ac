"""The rendered Argo workflow: Argo's strict schema, the reference check, options and settings in the YAML."""

from __future__ import annotations

import copy
import itertools

import pytest
import yaml
from typer.testing import CliRunner

from steps.errors import should_retry
from steps.settings import Settings
from tests.argo_emulator import eval_depends, eval_retry_expression
from tests.conftest import run_cli
from workflows.argo import (
    JOIN_DEPENDS,
    RETRY_EXPRESSION,
    SUMMARIZE_DEPENDS,
    SUMMARIZE_RETRY_EXPRESSION,
    ClusterConfig,
    GpuMode,
    render_documents,
)
from workflows.cli import app
from workflows.lint import lint_documents, schema_errors
from workflows.lint import reference_errors as refs

HOST_PATHS = {"input_host_path": "/data/videos", "output_host_path": "/data/anonymized"}


def rendered(kind: str = "WorkflowTemplate", settings: Settings | None = None, **cluster) -> dict:
    return yaml.safe_load(render_documents(ClusterConfig(**cluster), settings or Settings(), kind))


def template(doc: dict, name: str) -> dict:
    return next(t for t in doc["spec"]["templates"] if t["name"] == name)


def env_of(doc: dict, name: str) -> dict[str, str]:
    return {e["name"]: e["value"] for e in template(doc, name)["container"]["env"]}


@pytest.mark.parametrize("gpu,volumes,kind", list(itertools.product(GpuMode, ("pvc", "hostPath"),
                                                                     ("WorkflowTemplate", "Workflow"))))
def test_every_variant_passes_the_strict_schema_and_the_reference_check(gpu, volumes, kind):
    doc = rendered(kind, gpu_mode=gpu, **(HOST_PATHS if volumes == "hostPath" else {}))
    assert lint_documents([doc]) == []
    limits = template(doc, "anonymize")["container"]["resources"]["limits"]
    gpu_limits = {k: v for k, v in limits.items() if k not in ("cpu", "memory")}
    assert gpu_limits == {GpuMode.nvidia: {"nvidia.com/gpu": "1"}, GpuMode.gpushare: {"aliyun.com/gpu-mem": "4"},
                          GpuMode.none: {}}[gpu]
    sources = {v["name"]: v for v in doc["spec"]["volumes"]}
    if volumes == "hostPath":
        assert sources["input"]["hostPath"]["path"] == "/data/videos"
        assert sources["output"]["hostPath"]["path"] == "/data/anonymized"
    else:
        assert sources["input"]["persistentVolumeClaim"] == {"claimName": "video-input", "readOnly": True}
        assert sources["output"]["persistentVolumeClaim"] == {"claimName": "video-output"}
    for t in doc["spec"]["templates"]:
        if "container" not in t:
            continue
        mounts = {m["name"]: m for m in t["container"]["volumeMounts"]}
        assert mounts.get("input", {"readOnly": True}).get("readOnly") is True, t["name"]
        assert mounts["tmp"]["mountPath"] == "/tmp"
        assert t["container"]["securityContext"] == {"allowPrivilegeEscalation": False,
                                                     "readOnlyRootFilesystem": True,
                                                     "capabilities": {"drop": ["ALL"]}}
    security = doc["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] != 0
    assert ("generateName" in doc["metadata"]) == (kind == "Workflow")


def test_the_dag_fans_out_and_summarize_waits_for_every_outcome():
    doc = rendered()
    dag = template(doc, doc["spec"]["entrypoint"])["dag"]
    assert dag["failFast"] is False
    tasks = {t["name"]: t for t in dag["tasks"]}
    assert tasks["anonymize"]["withParam"] == "{{tasks.discover.outputs.result}}"
    assert tasks["anonymize"]["arguments"]["parameters"] == [{"name": "index", "value": "{{item}}"}]
    assert "withParam" not in tasks["join"]  # one pod joins what the anonymize pods left
    assert tasks["join"]["depends"] == JOIN_DEPENDS and tasks["summarize"]["depends"] == SUMMARIZE_DEPENDS
    anonymize = template(doc, "anonymize")["container"]
    assert anonymize["command"] == ["python", "-m", "steps.anonymize"]
    assert anonymize["args"][anonymize["args"].index("--index") + 1] == "{{inputs.parameters.index}}"
    assert template(doc, "join")["container"]["command"] == ["python", "-m", "steps.join"]
    args = template(doc, "discover")["container"]["args"]
    assert "--print-work" in args and args[args.index("--segment-seconds") + 1] == "300"
    # join runs whatever the fan-out's outcome (an empty list: Skipped), summarize whatever the join's,
    # but neither when discover failed (the fan-out is Omitted then).
    phases = ("Succeeded", "Failed", "Errored", "Skipped")
    for phase in phases:
        assert eval_depends(JOIN_DEPENDS, {"anonymize": {p: p == phase for p in phases}})
        if phase != "Skipped":
            assert eval_depends(SUMMARIZE_DEPENDS, {"join": {p: p == phase for p in phases}})
    assert not eval_depends(JOIN_DEPENDS, {"anonymize": {p: False for p in phases}})
    assert not eval_depends(SUMMARIZE_DEPENDS, {"join": {p: False for p in phases}})


def test_retry_expression_is_the_should_retry_rule():
    for code in [-1, *range(0, 256)]:
        assert eval_retry_expression(RETRY_EXPRESSION, str(code), "Failed") == should_retry(code), code
        assert eval_retry_expression(RETRY_EXPRESSION, str(code), "Error")  # Argo-side errors: always retried
    assert not eval_retry_expression(SUMMARIZE_RETRY_EXPRESSION, "1", "Failed")  # "videos failed" is final
    assert eval_retry_expression(SUMMARIZE_RETRY_EXPRESSION, "-1", "Error")
    retry = template(rendered(retry_limit=5, retry_backoff=20), "anonymize")["retryStrategy"]
    assert retry == {"expression": RETRY_EXPRESSION, "limit": 5, "retryPolicy": "Always",
                     "backoff": {"duration": "20s", "factor": 2}}


MISTAKES = {
    "misspelled key": (lambda d: template(d, "anonymize").__setitem__("retryStrategey", {}), "retryStrategey"),
    "task without template": (lambda d: template(d, "main")["dag"]["tasks"][2].__setitem__("template", "sumarize"),
                              "'sumarize', which does not exist"),
    "depends on nothing": (lambda d: template(d, "main")["dag"]["tasks"][2].__setitem__("depends", "anonymise"),
                           "depends on 'anonymise'"),
    "unknown result": (lambda d: template(d, "main")["dag"]["tasks"][2].__setitem__("depends", "anonymize.Finished"),
                       "'Finished'"),
    "entrypoint": (lambda d: d["spec"].__setitem__("entrypoint", "start"), "entrypoint 'start'"),
    "input parameter": (lambda d: template(d, "anonymize")["container"]["args"].append("{{inputs.parameters.idx}}"),
                        "no input parameter 'idx'"),
    "volume": (lambda d: template(d, "summarize")["container"]["volumeMounts"][0].__setitem__("name", "out"),
               "volume 'out'"),
    "retry policy": (lambda d: template(d, "discover")["retryStrategy"].__setitem__("retryPolicy", "Sometimes"),
                     "'Sometimes'"),
    "task reference": (lambda d: template(d, "main")["dag"]["tasks"][1].__setitem__("withParam",
                                                                                    "{{tasks.summarize.outputs.result}}"),
                       "does not depend on 'summarize'"),
    "output parameter": (lambda d: template(d, "main")["dag"]["tasks"][1].__setitem__(
        "withParam", "{{tasks.discover.outputs.parameters.items}}"), "no output parameter 'items'"),
    "gpu count type": (lambda d: template(d, "anonymize")["container"]["resources"]["limits"].__setitem__(
        "nvidia.com/gpu", [1]), "nvidia.com/gpu"),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_lint_catches_mistakes(mistake):
    doc = rendered()
    mutate, expected = MISTAKES[mistake]
    bad = copy.deepcopy(doc)
    mutate(bad)
    errors = lint_documents([bad])
    assert any(expected in error for error in errors), errors
    assert schema_errors(doc) == [] and refs(doc) == []


def test_lint_command_on_files(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(render_documents(ClusterConfig(), Settings(), "Workflow"))
    ok = run_cli("workflows", "lint", str(good))
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("withParam:", "withParams:"))
    failed = run_cli("workflows", "lint", str(bad))
    assert failed.returncode == 1
    assert "withParams" in failed.stderr


def test_settings_and_cluster_options_reach_the_yaml(tmp_path):
    out = tmp_path / "wf.yaml"
    result = run_cli("workflows", "render", "--kind", "workflow", "--out", str(out),
                     "--mode", "solid", "--crf", "30", "--model", "/models/face.pt", "--det-max-side", "960",
                     "--gpu-mode", "gpushare", "--gpu-mem", "6", "--cpu-limit", "3500m", "--parallelism", "3",
                     "--namespace", "vision", "--image", "registry.example/anon:1", "--node-selector", "pool=gpu",
                     "--toleration", "nvidia.com/gpu=present:NoSchedule", "--label", "team=privacy",
                     "--output-host-path", "/mnt/out", "--pod-gc", "OnWorkflowSuccess", "--retry-limit", "1",
                     "--segment-seconds", "600", "--force", env={"ANON_THRESHOLD": "0.4"})
    assert result.returncode == 0, result.stderr
    doc = yaml.safe_load(out.read_text())
    assert lint_documents([doc]) == []
    env = env_of(doc, "anonymize")
    expected = Settings(mode="solid", crf=30, model="/models/face.pt", det_max_side=960, threshold=0.4).to_env()
    assert {k: env[k] for k in expected} == expected
    assert env["MODEL_WEIGHT"] == "/models/face.pt" and env["OUTPUT"] == "/output" and env["ANON_THREADS"] == "3"
    anonymize = template(doc, "anonymize")
    assert anonymize["container"]["image"] == "registry.example/anon:1"
    assert anonymize["container"]["resources"]["limits"]["aliyun.com/gpu-mem"] == "6"
    assert anonymize["nodeSelector"] == {"pool": "gpu"}
    assert anonymize["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present",
                                         "effect": "NoSchedule"}]
    assert anonymize["retryStrategy"]["limit"] == 1
    spec = doc["spec"]
    assert spec["parallelism"] == 3 and spec["podGC"] == {"strategy": "OnWorkflowSuccess"}
    assert doc["metadata"]["namespace"] == "vision"
    assert doc["metadata"]["labels"] == {"app.kubernetes.io/name": "video-anonymizer", "team": "privacy"}
    assert spec["podMetadata"]["labels"]["team"] == "privacy"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["output"]["hostPath"]["path"] == "/mnt/out" and "persistentVolumeClaim" in volumes["input"]
    # discover and join need the settings (to tell done work, and for the video's report), summarize does not
    for name in ("discover", "join"):
        assert {k: env_of(doc, name)[k] for k in expected} == expected, name
    assert "ANON_MODE" not in env_of(doc, "summarize")
    args = {name: template(doc, name)["container"]["args"] for name in ("discover", "anonymize")}
    assert all("--force" in a for a in args.values())
    assert "--force" not in template(doc, "summarize")["container"]["args"] + template(doc, "join")["container"]["args"]
    assert args["discover"][args["discover"].index("--segment-seconds") + 1] == "600"
    assert "aliyun.com/gpu-mem" not in template(doc, "discover")["container"]["resources"]["limits"]


def test_help_lists_every_option_and_bad_options_are_usage_errors():
    help_text = run_cli("workflows", "render", "--help", env={"COLUMNS": "200"}).stdout
    for name in Settings.model_fields:
        assert "--" + name.replace("_", "-") in help_text, name
    for name in ClusterConfig.model_fields:
        option = {"tolerations": "--toleration", "labels": "--label"}.get(name, "--" + name.replace("_", "-"))
        assert option in help_text, name
    runner = CliRunner()  # in-process: five more interpreter starts would cost seconds
    for bad in (["--node-selector", "pool"], ["--toleration", "gpu:Sometimes"], ["--gpu-mode", "amd"],
                ["--memory-limit", "lots"], ["--mask-scale", "9"]):
        result = runner.invoke(app, ["render", *bad])
        assert result.exit_code == 2, (bad, result.output)
    assert runner.invoke(app, ["render", "--node-selector", "pool=gpu"]).exit_code == 0
