"""Offline checks of a rendered workflow: Argo's JSON schema, then the references no schema sees.

No cluster is needed. The schema is Argo's own (api/jsonschema/schema.json of argo-workflows
v4.1.x) made strict (unknown keys rejected), kept outside the repository at
``../shared/argo/workflow-schema.strict.json`` (or ``$ARGO_WORKFLOW_SCHEMA``). The reference
check covers what a schema cannot: the entrypoint, every task's template, every ``depends``
target and result, ``{{tasks.X...}}`` (an output parameter X declares), ``{{inputs.parameters.X}}`` and
``{{outputs.parameters.X}}`` references, task arguments against template inputs, volume mounts
against volumes, the enum-like fields (retryPolicy, podGC strategy) the schema leaves as free
strings, and the Prometheus metrics (names, one type each, the variables a metric may use, one
help text per name as Prometheus requires, histogram buckets in order, realtime gauges on
``{{duration}}``).
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_NAME = "workflow-schema.strict.json"
WORKFLOW_KINDS = ("Workflow", "WorkflowTemplate")
TASK_RESULTS = frozenset({"Succeeded", "Failed", "Errored", "Skipped", "Omitted", "Daemoned", "AnySucceeded",
                          "AllFailed"})
RETRY_POLICIES = frozenset({"Always", "OnFailure", "OnError", "OnTransientError"})
POD_GC_STRATEGIES = frozenset({"OnPodCompletion", "OnPodSuccess", "OnWorkflowCompletion", "OnWorkflowSuccess"})
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
METRIC_TYPES = ("counter", "gauge", "histogram")
#: Variables a template-level metric may use (Argo's docs/variables.md, "Metrics"), besides workflow.*.
METRIC_VARIABLES = re.compile(r"^(status|duration|exitCode|outputs\.result|inputs\.parameters\.[\w-]+|"
                              r"outputs\.parameters\.[\w-]+|resourcesDuration\.(cpu|memory)|workflow\.[\w.-]+)$")
_DEPENDS_TOKEN = re.compile(r"\s*(&&|\|\||!|\(|\)|[A-Za-z0-9_-]+(?:\.[A-Za-z]+)?)")
_VARIABLE = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")


def schema_path() -> Path:
    """$ARGO_WORKFLOW_SCHEMA, else ../shared/argo beside the checkout, else /work/shared/argo."""
    candidates = [os.environ.get("ARGO_WORKFLOW_SCHEMA"), PROJECT_ROOT.parent / "shared" / "argo" / SCHEMA_NAME,
                  Path("/work/shared/argo") / SCHEMA_NAME]
    for candidate in filter(None, candidates):
        if Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError(f"Argo's workflow schema ({SCHEMA_NAME}) is not at {candidates[1]}; "
                            "set ARGO_WORKFLOW_SCHEMA to its path")


@functools.lru_cache(maxsize=4)
def _validator(kind: str, path: Path):
    from jsonschema import Draft202012Validator

    definitions = json.loads(path.read_text(encoding="utf-8"))["definitions"]
    root = {"definitions": definitions, "$ref": f"#/definitions/io.argoproj.workflow.v1alpha1.{kind}"}
    return Draft202012Validator(root)


def schema_errors(doc: dict[str, Any]) -> list[str]:
    """Where *doc* breaks Argo's strict schema, one line per error."""
    kind = doc.get("kind")
    if kind not in WORKFLOW_KINDS:
        return [f"kind is {kind!r}, not one of {', '.join(WORKFLOW_KINDS)}"]
    errors = sorted(_validator(kind, schema_path()).iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors]


def _variables(value: Any) -> Iterator[str]:
    """Every ``{{...}}`` expression inside a (nested) value."""
    if isinstance(value, str):
        yield from (match.group(1) for match in _VARIABLE.finditer(value))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _variables(item)
    elif isinstance(value, list):
        for item in value:
            yield from _variables(item)


def depends_tokens(expression: str) -> list[str]:
    """Operators, parentheses and ``task[.Result]`` operands of a ``depends`` expression; ValueError if unparsable."""
    tokens, position = [], 0
    while position < len(expression.rstrip()):
        match = _DEPENDS_TOKEN.match(expression, position)
        if not match:
            raise ValueError(f"cannot parse depends {expression!r} at {expression[position:]!r}")
        tokens.append(match.group(1))
        position = match.end()
    return tokens


DEPENDS_OPERATORS = ("&&", "||", "!", "(", ")")


def depends_operands(expression: str) -> list[tuple[str, str | None]]:
    """(task, result or None) for each operand of a ``depends`` expression."""
    operands = []
    for token in depends_tokens(expression):
        if token not in DEPENDS_OPERATORS:
            task, _, result = token.partition(".")
            operands.append((task, result or None))
    return operands


def _template_errors(template: dict[str, Any], volumes: set[str]) -> Iterator[str]:
    name = template.get("name")
    inputs = {p["name"] for p in (template.get("inputs") or {}).get("parameters") or []}
    outputs = {p["name"] for p in (template.get("outputs") or {}).get("parameters") or []}
    template_volumes = volumes | {v["name"] for v in template.get("volumes") or []}
    container = template.get("container") or template.get("script")
    if container:
        for mount in container.get("volumeMounts") or []:
            if mount["name"] not in template_volumes:
                yield f"template {name!r} mounts volume {mount['name']!r}, which is not declared"
    for variable in _variables({k: v for k, v in template.items() if k != "dag"}):
        if variable.startswith("inputs.parameters."):
            parameter = variable.removeprefix("inputs.parameters.")
            if parameter not in inputs:
                yield f"template {name!r} uses {{{{{variable}}}}} but declares no input parameter {parameter!r}"
        elif variable.startswith("outputs.parameters."):
            parameter = variable.removeprefix("outputs.parameters.")
            if parameter not in outputs:
                yield f"template {name!r} uses {{{{{variable}}}}} but declares no output parameter {parameter!r}"
    policy = (template.get("retryStrategy") or {}).get("retryPolicy")
    if policy is not None and policy not in RETRY_POLICIES:
        yield f"template {name!r} has retryPolicy {policy!r}, not one of {', '.join(sorted(RETRY_POLICIES))}"


def _dag_errors(template: dict[str, Any], templates: dict[str, dict[str, Any]]) -> Iterator[str]:
    name = template["name"]
    tasks = template["dag"].get("tasks") or []
    names = [task["name"] for task in tasks]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        yield f"DAG {name!r} has two tasks named {duplicate!r}"
    graph: dict[str, set[str]] = {}
    for task in tasks:
        where = f"task {task['name']!r} of DAG {name!r}"
        target = templates.get(task.get("template", ""))
        if target is None:
            yield f"{where} runs template {task.get('template')!r}, which does not exist"
        try:
            operands = depends_operands(task.get("depends") or "")
        except ValueError as exc:
            yield f"{where}: {exc}"
            operands = []
        for dependency in task.get("dependencies") or []:
            operands.append((dependency, None))
        graph[task["name"]] = {dep for dep, _ in operands}
        for dependency, result in operands:
            if dependency not in names:
                yield f"{where} depends on {dependency!r}, which is not a task of this DAG"
            if result is not None and result not in TASK_RESULTS:
                yield f"{where} depends on result {result!r} of {dependency!r}, not one of {sorted(TASK_RESULTS)}"
        for variable in _variables({k: v for k, v in task.items() if k not in ("name", "depends", "template")}):
            if variable.startswith("tasks."):
                referenced = variable.split(".")[1]
                if referenced not in graph[task["name"]]:
                    yield f"{where} uses {{{{{variable}}}}} but does not depend on {referenced!r}"
                parts = variable.split(".")
                if parts[2:4] == ["outputs", "parameters"] and len(parts) == 5:
                    source = templates.get(next((t.get("template") for t in tasks if t["name"] == referenced), ""))
                    outputs = {o["name"] for o in ((source or {}).get("outputs") or {}).get("parameters") or []}
                    if parts[4] not in outputs:
                        yield f"{where} uses {{{{{variable}}}}} but {referenced!r} has no output parameter {parts[4]!r}"
            elif variable.startswith("item") and not any(k in task for k in ("withItems", "withParam",
                                                                              "withSequence")):
                yield f"{where} uses {{{{{variable}}}}} without withItems, withParam or withSequence"
        if target is not None:
            declared = {p["name"]: p for p in (target.get("inputs") or {}).get("parameters") or []}
            given = {p["name"] for p in (task.get("arguments") or {}).get("parameters") or []}
            for extra in sorted(given - declared.keys()):
                yield f"{where} passes parameter {extra!r}, which template {target['name']!r} does not declare"
            for missing in sorted(n for n, p in declared.items() if n not in given and "value" not in p
                                  and "default" not in p and "valueFrom" not in p):
                yield f"{where} does not pass parameter {missing!r}, which template {target['name']!r} needs"
    yield from _cycle_errors(name, graph)


def _cycle_errors(dag: str, graph: dict[str, set[str]]) -> Iterator[str]:
    state: dict[str, int] = {}

    def visit(node: str) -> bool:
        if state.get(node) == 1:
            return True
        if state.get(node) == 2 or node not in graph:
            return False
        state[node] = 1
        cyclic = any(visit(dep) for dep in graph[node])
        state[node] = 2
        return cyclic

    if any(visit(node) for node in graph):
        yield f"DAG {dag!r} has a dependency cycle"


def _metric_errors(template_list: list[dict[str, Any]]) -> Iterator[str]:
    """The templates' Prometheus metrics: what Argo's controller or Prometheus would reject at run time."""
    seen: dict[str, tuple[str, str, str]] = {}  # metric name -> (help, type, template)
    for template in template_list:
        for metric in ((template.get("metrics") or {}).get("prometheus") or []):
            name, where = metric.get("name", ""), f"metric {metric.get('name')!r} of template {template.get('name')!r}"
            if not METRIC_NAME.match(name):
                yield f"{where}: a metric name may only hold letters, digits, _ and :"
            types = [t for t in METRIC_TYPES if t in metric]
            if len(types) != 1:
                yield f"{where} has {len(types)} types ({', '.join(types) or 'none'}); it needs exactly one"
                continue
            kind, body = types[0], metric[types[0]]
            for label in metric.get("labels") or []:
                if not LABEL_KEY.match(label.get("key", "")):
                    yield f"{where}: label key {label.get('key')!r} is not a Prometheus label name"
            for variable in _variables(metric):
                if not METRIC_VARIABLES.match(variable):
                    yield f"{where} uses {{{{{variable}}}}}, which a metric cannot see"
            if kind == "gauge" and body.get("realtime") and "{{duration}}" not in str(body.get("value")):
                yield f"{where} is a realtime gauge: its value can only be {{{{duration}}}}"
            buckets = body.get("buckets")
            if kind == "histogram" and (not buckets or any(a >= b for a, b in zip(buckets, buckets[1:]))):
                yield f"{where}: histogram buckets must increase"
            help_text = metric.get("help", "")
            if name in seen and seen[name][:2] != (help_text, kind):
                yield (f"{where} differs from the metric of the same name in template {seen[name][2]!r} "
                       "(Prometheus needs one help text and one type per name)")
            seen.setdefault(name, (help_text, kind, template.get("name")))


def reference_errors(doc: dict[str, Any]) -> list[str]:
    """What the schema cannot check: names that must refer to something that exists."""
    spec = doc.get("spec") or {}
    template_list = spec.get("templates") or []
    templates = {t.get("name"): t for t in template_list}
    names = [t.get("name") for t in template_list]
    errors = [f"two templates are named {n!r}" for n in sorted({n for n in names if names.count(n) > 1})]
    if spec.get("entrypoint") not in templates:
        errors.append(f"entrypoint {spec.get('entrypoint')!r} is not a template")
    volumes = {v["name"] for v in spec.get("volumes") or []}
    volumes |= {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates") or []}
    strategy = (spec.get("podGC") or {}).get("strategy")
    if strategy is not None and strategy not in POD_GC_STRATEGIES:
        errors.append(f"podGC strategy {strategy!r} is not one of {', '.join(sorted(POD_GC_STRATEGIES))}")
    for template in template_list:
        errors += _template_errors(template, volumes)
        if "dag" in template:
            errors += _dag_errors(template, templates)
    errors += _metric_errors(template_list)
    return errors


def lint_documents(docs: Iterable[dict[str, Any]]) -> list[str]:
    """All errors of every Workflow/WorkflowTemplate in *docs*, prefixed with its kind and name."""
    errors = []
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") not in WORKFLOW_KINDS:
            continue
        meta = doc.get("metadata") or {}
        label = f"{doc['kind']} {meta.get('name') or meta.get('generateName')}"
        errors += [f"{label}: {e}" for e in schema_errors(doc) + reference_errors(doc)]
    return errors


def load_documents(path: Path) -> list[dict[str, Any]]:
    """Every YAML document in *path* (empty ones dropped)."""
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
