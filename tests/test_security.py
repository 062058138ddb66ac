"""Nobody let in: no shell anywhere, parameters as arguments, outputs inside the output root, inputs
only read, pods without privileges or a token, and the Argo token nowhere it could leak.

The pods' security context is checked twice: in the rendered YAML, and by running the rendered
containers' own commands under it on this machine (tests/pod_sandbox.py: a read-only root and
input, uid 10001, no capabilities, no_new_privs).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from steps.anonymize import anonymize_file, anonymize_item
from steps.errors import PermanentError
from steps.manifest import Item, Manifest
from steps.settings import Settings
from tests import corpus
from tests.conftest import ROOT, run_cli
from workflows.argo import ClusterConfig, render_documents
from workflows.cli import builtin_variants
from workflows.local import LocalRunner

SOURCES = sorted(p for folder in ("steps", "workflows", "tests", "scripts") for p in (ROOT / folder).rglob("*.py"))
SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output"}
FORBIDDEN_CALLS = {("os", "system"), ("os", "popen"), ("asyncio", "create_subprocess_shell"), ("pty", "spawn"),
                   ("subprocess", "getoutput"), ("subprocess", "getstatusoutput")}
TOKEN = "argo-token-7f3a9c-never-shown"


def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name):
            yield node, node.func.value.id, node.func.attr


def test_no_shell_string_anywhere():
    """Every external command is an argument list: no shell=True, no os.system/popen, no command as one string."""
    checked = 0
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "shell":
                pytest.fail(f"{path.relative_to(ROOT)}:{node.value.lineno}: shell= is not allowed")
        for node, module, name in calls(tree):
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            assert (module, name) not in FORBIDDEN_CALLS, f"{where}: {module}.{name} runs a shell"
            if module == "subprocess" and name in SUBPROCESS_CALLS:
                checked += 1
                command = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "args"), None)
                assert not isinstance(command, (ast.Constant, ast.JoinedStr, ast.BinOp)), \
                    f"{where}: the command is a string, not an argument list"
    assert checked >= 10  # the scan saw the project's commands (ffmpeg, the workers, the tests' tools)


def every_template():
    for label, docs in builtin_variants():
        for doc in docs:
            for template in doc["spec"]["templates"]:
                yield label, doc, template


def test_argo_parameters_are_arguments_never_shell_script():
    variables = re.compile(r"\{\{[^}]*\}\}")
    containers = 0
    for label, _, template in every_template():
        assert "script" not in template, f"{label}: {template['name']} is a script template"
        container = template.get("container")
        if container is None:
            continue
        containers += 1
        assert container["command"][:2] == ["python", "-m"], (label, container["command"])
        words = container["command"] + container.get("args", [])
        assert not {"sh", "bash", "-c", "/bin/sh", "/bin/bash"} & set(words), (label, words)
        for arg in container.get("args", []):
            for variable in variables.findall(arg):
                # a parameter is a whole argument; only the controller's own workflow name sits inside a path
                assert arg == variable or variable == "{{workflow.name}}", (label, arg)
    assert containers >= 3 * 12


def test_pods_run_unprivileged_with_a_read_only_input_and_no_token():
    for label, doc, template in every_template():
        spec = doc["spec"]
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0 and pod["runAsGroup"] != 0
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False, "the video containers must get no Kubernetes token"
        assert spec["executor"] == {"serviceAccountName": spec["serviceAccountName"]}
        for volume in spec["volumes"]:
            assert "hostPath" not in volume or volume["hostPath"]["type"] == "Directory"
            if volume["name"] == "input" and "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["readOnly"] is True
        container = template.get("container")
        if container is None:
            continue
        context = container["securityContext"]
        assert context == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                           "capabilities": {"drop": ["ALL"]}}, (label, template["name"])
        for mount in container["volumeMounts"]:
            if mount["name"] == "input":
                assert mount["readOnly"] is True, (label, template["name"])
        assert not {"hostNetwork", "hostPID", "hostIPC"} & set(spec), label


def test_the_role_grants_only_what_the_executor_needs_and_the_token_lives_in_a_secret():
    docs = [d for d in yaml.safe_load_all((ROOT / "argo" / "rbac.yaml").read_text()) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["Role", "RoleBinding", "Secret", "ServiceAccount"]  # no ClusterRole, no ClusterRoleBinding
    (role,) = [d for d in docs if d["kind"] == "Role"]
    assert role["rules"] == [{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"],
                              "verbs": ["create", "patch"]}]
    (account,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    (secret,) = [d for d in docs if d["kind"] == "Secret"]
    # Argo finds the executor's token by this name (Kubernetes 1.24+ creates none by itself)
    assert secret["type"] == "kubernetes.io/service-account-token" and "data" not in secret
    assert secret["metadata"]["name"] == account["metadata"]["name"] + ".service-account-token"
    assert secret["metadata"]["annotations"] == {"kubernetes.io/service-account.name": account["metadata"]["name"]}


def test_the_argo_token_never_reaches_yaml_workers_files_or_logs(tmp_path, monkeypatch):
    rendered = run_cli("workflows", "render", "--kind", "workflow", env={"ARGO_TOKEN": TOKEN}, check=True)
    assert TOKEN not in rendered.stdout + rendered.stderr
    monkeypatch.setenv("ARGO_TOKEN", TOKEN)
    runner = LocalRunner(tmp_path, tmp_path / "out", Settings(), workers=1)
    assert "ARGO_TOKEN" not in runner._env(tmp_path / "progress")
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    corpus.clip(inp / "clip.mp4")
    corpus.make_photo(inp / "broken.mp4")  # a failure's report and log too
    result = run_cli("workflows", "run", str(inp), str(out), "--workers", "2", env={"ARGO_TOKEN": TOKEN})
    assert result.returncode == 1 and json.loads((out / "summary.json").read_text())["totals"]["done"] == 1
    assert TOKEN not in result.stdout + result.stderr
    for path in out.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_a_manifest_path_cannot_leave_the_roots(tmp_path):
    for bad in ("../escape.mp4", "/abs/escape.mp4", "a/../../escape.mp4", "./x.mp4", "a//b.mp4"):
        with pytest.raises(ValueError, match="not a plain relative path"):
            Item(path=bad, size=1)
    forged = tmp_path / "manifest.json"
    forged.write_text(json.dumps({"input_root": str(tmp_path), "created_at": "now",
                                  "items": [{"path": "../escape.mp4", "size": 1}]}))
    result = run_cli("steps.anonymize", "--manifest", str(forged), "--index", "0", "--input-root", str(tmp_path),
                     "--output-root", str(tmp_path / "out"))
    assert result.returncode == 2 and "not a plain relative path" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "escape.mp4").exists() and not (tmp_path.parent / "escape.mp4").exists()


def test_a_symbolic_link_cannot_carry_an_output_out_or_an_input_in(tmp_path):
    inp, out, elsewhere = tmp_path / "in", tmp_path / "out", tmp_path / "elsewhere"
    for folder in (inp / "sub", out, elsewhere):
        folder.mkdir(parents=True)
    corpus.clip(inp / "sub" / "x.mp4")
    (out / "sub").symlink_to(elsewhere)  # a link planted in the output tree
    manifest = Manifest(input_root=str(inp), created_at="now", items=[Item(path="sub/x.mp4", size=1)])
    with pytest.raises(PermanentError, match="would land outside the output folder"):
        anonymize_item(manifest, 0, inp, out, Settings())
    assert list(elsewhere.iterdir()) == []
    corpus.clip(tmp_path / "secret.mp4")
    (inp / "swapped.mp4").symlink_to(tmp_path / "secret.mp4")  # an input replaced by a link after discovery
    report = anonymize_file(inp / "swapped.mp4", tmp_path / "o" / "swapped.mp4", tmp_path / "o" / "r.json",
                            Settings(), input_root=inp)
    assert report.status == "failed" and report.exit_code == 3 and "leads out of the input folder" in report.error
    assert not (tmp_path / "o" / "swapped.mp4").exists()


_OPENED: list[tuple[str, int]] = []


def _record_opens(event: str, args: tuple) -> None:
    if event == "open" and _OPENED is not None and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append((os.fsdecode(args[0]), args[2]))


def test_the_input_is_opened_read_only(tmp_path):
    """Every open() of the input in this process (fingerprint, probe, sniffing) asks for reading only."""
    inp = tmp_path / "in"
    inp.mkdir()
    source = inp / "clip.mp4"
    corpus.clip(source)
    sys.addaudithook(_record_opens)  # cannot be removed: it only records, into a list cleared below
    try:
        report = anonymize_file(source, tmp_path / "out" / "clip.mp4", tmp_path / "out" / "r.json", Settings(),
                                input_root=inp)
        opened = [(path, flags) for path, flags in _OPENED if path.startswith(str(inp))]
    finally:
        _OPENED.clear()
    assert report.status == "done", report.error
    assert opened, "the audit hook saw no open of the input"
    for path, flags in opened:
        assert flags & os.O_ACCMODE == os.O_RDONLY and not flags & (os.O_CREAT | os.O_TRUNC | os.O_APPEND), path


def sandbox_available() -> str | None:
    """Why the pod sandbox cannot run here, or None."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        return "needs root, unshare and setpriv"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
    return None if probe.returncode == 0 else f"unshare is not permitted here: {probe.stderr.decode().strip()}"


def test_the_rendered_pods_commands_run_under_their_security_context():
    """discover, anonymize and summarize, as the YAML writes them, with its user, read-only root and input."""
    reason = sandbox_available()
    if reason:
        pytest.skip(reason)
    doc = yaml.safe_load(render_documents(ClusterConfig(), Settings(), "WorkflowTemplate"))
    spec = doc["spec"]
    templates = {t["name"]: t for t in spec["templates"]}
    uid = spec["securityContext"]["runAsUser"]
    base = Path(tempfile.mkdtemp(prefix="anon-pod-"))
    try:
        os.chmod(base, 0o755)
        folders = {"/input": base / "input", "/output": base / "output"}
        for folder in folders.values():
            folder.mkdir()
        hostile = "{{workflow.name}} $(touch pwned).mp4"
        corpus.clip(folders["/input"] / hostile)
        before = (folders["/input"] / hostile).read_bytes()
        os.chown(folders["/output"], uid, uid)  # the output volume belongs to the pods' user (fsGroup)
        namespace = os.readlink("/proc/self/ns/mnt")
        results = {}
        for name, variables in (("discover", {}), ("anonymize", {"inputs.parameters.index": "0", "retries": "0"}),
                                ("summarize", {})):
            container = templates[name]["container"]
            pod_tmp = base / f"tmp-{name}"  # the pod's own emptyDir at /tmp
            pod_tmp.mkdir()
            os.chown(pod_tmp, uid, uid)
            mapping = {**folders, "/tmp": pod_tmp}
            variables = {"workflow.name": "sandboxed", **variables}

            def local(value: str, mapping=mapping, variables=variables) -> str:
                value = re.sub(r"\{\{([^}]*)\}\}", lambda m: variables[m.group(1)], value)
                for pod_path, here in mapping.items():
                    if value == pod_path or value.startswith(pod_path + "/"):
                        return str(here) + value[len(pod_path):]
                return value

            assert container["command"][0] == "python"
            command = [sys.executable, *container["command"][1:], *(local(a) for a in container["args"])]
            env = {e["name"]: local(e["value"]) for e in container["env"]}
            env.update(PATH=os.environ["PATH"], PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
            root_option = ["--read-only-root"] if container["securityContext"]["readOnlyRootFilesystem"] else []
            results[name] = subprocess.run(
                ["unshare", "--mount", "--propagation", "private", sys.executable, "-m", "tests.pod_sandbox",
                 "--parent-namespace", namespace, "--uid", str(uid), *root_option, "--rw", str(pod_tmp),
                 "--rw", str(folders["/output"]), "--ro", str(folders["/input"]), "--", *command],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert results["discover"].returncode == 0, results["discover"].stderr
        assert json.loads(results["discover"].stdout) == [0]  # the fan-out carries an index, never the name
        assert results["anonymize"].returncode == 0, results["anonymize"].stderr
        assert results["summarize"].returncode == 0, results["summarize"].stderr
        output = folders["/output"] / hostile
        assert output.is_file() and output.stat().st_uid == uid
        report = json.loads((folders["/output"] / (hostile + ".report.json")).read_text())
        assert report["status"] == "done" and report["frames_out"] == 10
        assert not list(base.rglob("pwned")) and not (ROOT / "pwned").exists()
        assert [(p.name, p.read_bytes()) for p in folders["/input"].iterdir()] == [(hostile, before)]
    finally:
        shutil.rmtree(base, ignore_errors=True)
