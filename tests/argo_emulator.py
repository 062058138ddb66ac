"""Run a rendered Argo workflow's DAG on this machine, as Argo's controller would, for the tests.

No cluster exists here, so this stands in for the controller on the points that decide whether
the YAML and the step CLIs fit together: tasks in ``depends`` order (the expression evaluated
over task results), ``withParam`` fan-out over the previous task's printed result, Argo's
substitutions (``{{item}}``, ``{{inputs.parameters.*}}``, ``{{tasks.*.outputs.result}}``,
``{{workflow.name|namespace}}``, ``{{retries}}``: any other variable fails the run), each
container's own ``command`` + ``args`` + ``env`` with the volume mount paths mapped to local
folders (an emptyDir is a fresh folder for each pod), ``retryStrategy`` (limit and expression;
the backoff is not waited for), output parameters (``valueFrom.path`` or its default) and the
templates' Prometheus metrics, evaluated as the controller would when a pod ends (``when``,
labels and value substituted, the value parsed as a number). What it does not emulate:
scheduling, parallelism, resources, security contexts, pod deletion, metric storage.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from workflows.lint import depends_operands, depends_tokens

ROOT = Path(__file__).resolve().parent.parent
_VARIABLE = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
_DEFAULT_RESULT = ("Succeeded", "Skipped", "Daemoned")


def eval_retry_expression(expression: str, exit_code: str, status: str) -> bool:
    """Evaluate an Argo retryStrategy expression (the expr-lang subset this project writes) in Python."""
    python = expression.replace("||", " or ").replace("&&", " and ")
    python = re.sub(r"!(?!=)", " not ", python)
    python = python.replace("asInt(", "int(").replace("lastRetry.exitCode", "exit_code")
    python = python.replace("lastRetry.status", "status")
    return bool(eval(python, {"__builtins__": {}}, {"int": int, "exit_code": exit_code, "status": status}))


def eval_depends(expression: str, results: dict[str, dict[str, bool]]) -> bool:
    """Evaluate a DAG task's ``depends`` over the finished tasks' results (a bare name: Succeeded/Skipped/Daemoned)."""
    words = {"&&": "and", "||": "or", "!": "not", "(": "(", ")": ")"}
    python = []
    for token in depends_tokens(expression):
        if token in words:
            python.append(words[token])
        else:
            task, _, result = token.partition(".")
            python.append(str(results[task][result] if result else any(results[task][r] for r in _DEFAULT_RESULT)))
    return bool(eval(" ".join(python) or "True", {"__builtins__": {}}, {}))


def eval_when(expression: str) -> bool:
    """A substituted ``when`` as Argo evaluates it (govaluate, bare words compared as strings): the forms used here."""
    def operand(text: str) -> object:
        text = text.strip()
        try:
            return float(text)
        except ValueError:
            return text

    result = True
    for clause in expression.split("&&"):
        match = re.fullmatch(r"\s*(.+?)\s*(==|!=|>=|<=|>|<)\s*(.+?)\s*", clause)
        assert match, f"the emulator cannot evaluate when: {expression!r}"
        left, op, right = operand(match.group(1)), match.group(2), operand(match.group(3))
        result = result and {"==": left == right, "!=": left != right, ">": left > right, "<": left < right,
                             ">=": left >= right, "<=": left <= right}[op]
    return result


@dataclass
class Metric:
    """One emission of a template's metric: what the controller would add to (or set in) Prometheus."""

    name: str
    kind: str
    labels: dict[str, str]
    value: float


@dataclass
class Attempt:
    exit_code: int
    stdout: str
    stderr: str
    outputs: dict[str, str] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)


@dataclass
class Node:
    """One pod-level task run (one item of a fan-out), with every attempt."""

    task: str
    item: Optional[str]
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def phase(self) -> str:
        return "Succeeded" if self.attempts and self.attempts[-1].exit_code == 0 else "Failed"


@dataclass
class Run:
    phase: str
    task_phases: dict[str, str]
    nodes: list[Node]
    #: The workflow's global output parameters (``globalName``), as ``argo get`` lists them.
    outputs: dict[str, str] = field(default_factory=dict)

    def nodes_of(self, task: str) -> list[Node]:
        return [node for node in self.nodes if node.task == task]


class Emulator:
    def __init__(self, doc: dict[str, Any], volumes: dict[str, Path], timeout: float = 300,
                 before_attempt: Optional[Callable[[Node], None]] = None):
        """*before_attempt* is called before each pod starts, with its node (attempts so far): a test's fault."""
        self.before_attempt = before_attempt
        self.spec = doc["spec"]
        self.templates = {t["name"]: t for t in self.spec["templates"]}
        self.volumes = volumes
        self.timeout = timeout
        self.workflow_vars = {"workflow.name": "emulated-run", "workflow.namespace": doc["metadata"]["namespace"]}

    def _substitute(self, text: str, variables: dict[str, str]) -> str:
        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name not in variables:
                raise KeyError(f"the emulator has no value for {{{{{name}}}}} in {text!r}")
            return variables[name]

        return _VARIABLE.sub(replace, text)

    def _map_path(self, value: str, mounts: dict[str, Path]) -> str:
        for mount_path, local in mounts.items():
            if value == mount_path or value.startswith(mount_path + "/"):
                return str(local) + value[len(mount_path):]
        return value

    def _mounts(self, container: dict[str, Any]) -> dict[str, Path]:
        """Mount path -> local folder; each emptyDir volume is a fresh folder, as each pod gets its own."""
        empty_dirs = {v["name"] for v in self.spec.get("volumes") or [] if "emptyDir" in v}
        mounts = {}
        for mount in container.get("volumeMounts") or []:
            local = self.volumes[mount["name"]]
            if mount["name"] in empty_dirs:
                local = Path(tempfile.mkdtemp(prefix="pod-", dir=local))
            mounts[mount["mountPath"]] = local
        return mounts

    def _outputs(self, template: dict[str, Any], mounts: dict[str, Path]) -> dict[str, str]:
        """The template's output parameters as Argo's executor reads them: the file, else the default."""
        values = {}
        for parameter in (template.get("outputs") or {}).get("parameters") or []:
            source = parameter.get("valueFrom") or {}
            try:
                values[parameter["name"]] = Path(self._map_path(source["path"], mounts)).read_text()
            except (KeyError, OSError):
                assert "default" in source, f"output parameter {parameter['name']!r} has no file and no default"
                values[parameter["name"]] = source["default"]
        return values

    def _metrics(self, template: dict[str, Any], variables: dict[str, str]) -> list[Metric]:
        emitted = []
        for metric in ((template.get("metrics") or {}).get("prometheus") or []):
            if metric.get("when") and not eval_when(self._substitute(metric["when"], variables)):
                continue
            kind = next(k for k in ("counter", "gauge", "histogram") if k in metric)
            labels = {label["key"]: self._substitute(label["value"], variables) for label in metric.get("labels") or []}
            value = self._substitute(metric[kind]["value"], variables)
            emitted.append(Metric(metric["name"], kind, labels, float(value)))  # Argo fails a non-number too
        return emitted

    def run_template(self, name: str, parameters: Optional[dict[str, str]] = None) -> Node:
        """One pod of template *name*, with its retries."""
        template = self.templates[name]
        container = template["container"]
        declared = {p["name"] for p in (template.get("inputs") or {}).get("parameters") or []}
        parameters = parameters or {}
        assert set(parameters) == declared, f"template {name!r} declares {declared}, was given {set(parameters)}"
        node = Node(task=name, item=parameters.get("index"))
        retry = template.get("retryStrategy") or {}
        limit = int(retry.get("limit", 0))
        while True:
            variables = {**self.workflow_vars, **{f"inputs.parameters.{k}": v for k, v in parameters.items()},
                         "retries": str(len(node.attempts))}
            mounts = self._mounts(container)
            argv = [self._map_path(self._substitute(a, variables), mounts)
                    for a in container.get("command", []) + container.get("args", [])]
            if argv[0] == "python":
                argv[0] = sys.executable  # the image's python is the project's; here, the test's
            env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8"}
            for item in container.get("env") or []:
                env[item["name"]] = self._map_path(self._substitute(item["value"], variables), mounts)
            if self.before_attempt:
                self.before_attempt(node)
            started = time.monotonic()
            done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=self.timeout)
            outputs = self._outputs(template, mounts)
            status = "Succeeded" if done.returncode == 0 else "Failed"
            metric_vars = {**variables, "status": status, "exitCode": str(done.returncode),
                           "duration": f"{time.monotonic() - started:.3f}",
                           **{f"outputs.parameters.{k}": v for k, v in outputs.items()}}
            node.attempts.append(Attempt(done.returncode, done.stdout, done.stderr, outputs,
                                         self._metrics(template, metric_vars)))
            if done.returncode == 0 or len(node.attempts) > limit:
                return node
            expression = retry.get("expression")
            if expression and not eval_retry_expression(expression, str(done.returncode), "Failed"):
                return node

    def run(self) -> Run:
        """The entrypoint DAG, task after task in dependency order."""
        dag = self.templates[self.spec["entrypoint"]]["dag"]
        tasks = {task["name"]: task for task in dag["tasks"]}
        order = self._order(tasks)
        phases: dict[str, str] = {}
        results: dict[str, dict[str, bool]] = {}
        outputs: dict[str, str] = {}
        nodes: list[Node] = []
        for name in order:
            task = tasks[name]
            if not eval_depends(task.get("depends", ""), results):
                phases[name] = "Omitted"
            else:
                variables = {**self.workflow_vars, **{f"tasks.{key}": value for key, value in outputs.items()}}
                if "withParam" in task:
                    items = json.loads(self._substitute(task["withParam"], variables))
                    assert isinstance(items, list), f"withParam of {name!r} is not a JSON list"
                else:
                    items = [None]
                children = []
                for item in items:
                    item_vars = {**variables, **({"item": item if isinstance(item, str) else json.dumps(item)}
                                                 if item is not None else {})}
                    parameters = {p["name"]: self._substitute(p["value"], item_vars)
                                  for p in (task.get("arguments") or {}).get("parameters") or []}
                    children.append(self.run_template(task["template"], parameters))
                nodes += children
                if not children:
                    phases[name] = "Skipped"
                else:
                    phases[name] = "Failed" if any(c.phase == "Failed" for c in children) else "Succeeded"
                if "withParam" not in task and children:
                    outputs[f"{name}.outputs.result"] = children[0].attempts[-1].stdout.strip()
                results[name] = {r: phases[name] == r for r in ("Succeeded", "Failed", "Errored", "Skipped",
                                                                 "Omitted", "Daemoned")}
                results[name]["AnySucceeded"] = any(c.phase == "Succeeded" for c in children)
                results[name]["AllFailed"] = bool(children) and all(c.phase == "Failed" for c in children)
                continue
            results[name] = {r: phases[name] == r for r in ("Succeeded", "Failed", "Errored", "Skipped", "Omitted",
                                                             "Daemoned", "AnySucceeded", "AllFailed")}
        depended_on = {dep for task in tasks.values() for dep, _ in depends_operands(task.get("depends", ""))}
        leaves = [name for name in tasks if name not in depended_on]
        failed = any(phase == "Failed" for phase in phases.values())
        # Argo's rule (assessDAGPhase): the workflow takes its leaf tasks' phases; an omitted leaf
        # inherits the failure of the branch above it.
        bad = [leaf for leaf in leaves if phases[leaf] == "Failed" or (phases[leaf] == "Omitted" and failed)]
        global_outputs = {}
        for node in nodes:
            declared = (self.templates[node.task].get("outputs") or {}).get("parameters") or []
            for parameter in declared:
                if parameter.get("globalName") and node.attempts:
                    global_outputs[parameter["globalName"]] = node.attempts[-1].outputs[parameter["name"]]
        return Run(phase="Failed" if bad else "Succeeded", task_phases=phases, nodes=nodes, outputs=global_outputs)

    @staticmethod
    def _order(tasks: dict[str, dict[str, Any]]) -> list[str]:
        order: list[str] = []
        pending = dict(tasks)
        while pending:
            ready = [n for n, t in pending.items()
                     if all(dep in order for dep, _ in depends_operands(t.get("depends", "")))]
            assert ready, f"dependency cycle among {sorted(pending)}"
            for name in ready:
                order.append(name)
                del pending[name]
        return order
