"""The Argo Workflows workflow, built with Hera: the same step CLIs the local run uses.

``discover`` writes the manifest on the output volume and prints the fan-out list (work items,
longest first, without what is already done: see steps.discover.plan_work); ``anonymize``
runs once per work item, one pod per video or per segment of a long one, on a GPU (the pod
finishing a video's last segment joins the segments, steps.join); ``join`` runs once after
the whole fan-out, on a CPU, and joins what is left; ``summarize`` runs after it, whatever
the outcomes, and exits non-zero when any video failed, so the workflow ends Failed and
``argo retry`` re-runs exactly the failed pods (a failed segment, then the join), then
summarize again.

Everything a cluster operator sets lives in ``ClusterConfig``; everything that changes the
output video lives in ``steps.settings.Settings`` and reaches the pods as environment
variables, exactly as the local runner passes it to its worker processes.

What people see on the cluster: each anonymize pod reports frames done / total through
``ARGO_PROGRESS_FILE`` (steps.progress; Argo sets the variable itself) and logs a line every few
seconds; the anonymize and summarize templates emit Prometheus metrics from their output
parameters (``metrics`` below); summarize writes summary.html/.md/.json to the output volume,
prints where (its result, shown in the UI), exports that sentence as the workflow's global
output parameter ``summary`` (``argo get`` lists it) and, with ``--summary-artifact``, hands the
files to Argo's artifact repository (the UI then shows summary.html).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any, Literal, Optional, get_origin

import typer
from hera.workflows import (
    DAG,
    Artifact,
    Container,
    Counter,
    EmptyDirVolume,
    Env,
    ExistingVolume,
    Gauge,
    Histogram,
    HostPathVolume,
    Label,
    NoneArchiveStrategy,
    Parameter,
    Resources,
    RetryStrategy,
    Task,
    Workflow,
    WorkflowTemplate,
)
from hera.workflows import models as m
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from steps.errors import NO_RETRY_EXIT_CODES, VIDEO_DEADLINE_SECONDS
from steps.manifest import MANIFEST_NAME
from steps.segments import DEFAULT_SEGMENT_SECONDS
from steps.settings import Settings
from steps.summarize import METRIC_TOTALS, SUMMARY_HTML

INPUT_MOUNT = "/input"
OUTPUT_MOUNT = "/output"
TMP_MOUNT = "/tmp"
#: One manifest per workflow: the fan-out indices point into it, so a resubmission (which lists
#: the input again) or a concurrent run cannot shift what ``argo retry`` re-runs.
MANIFEST_IN_POD = f"{OUTPUT_MOUNT}/.workflows/{{{{workflow.name}}}}/{MANIFEST_NAME}"
ENTRYPOINT = "main"
#: Where the steps write their Argo output parameters (the pods' writable emptyDir).
OUTPUTS_IN_POD = f"{TMP_MOUNT}/argo-outputs"
#: Prefix of every custom metric (Argo adds its own ``argo_workflows_`` in front).
METRIC_PREFIX = "video_anonymizer_"
#: Seconds one anonymize pod took: buckets from a short clip to the per-video deadline's order.
DURATION_BUCKETS = [30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0, 21600.0]

#: Retry an anonymize (or discover) pod unless it exited with a code that says another try
#: cannot help (steps.errors.should_retry). ``lastRetry.exitCode`` is a string, "-1" when the
#: container has none (a deleted or evicted pod); ``lastRetry.status`` is "Error" when Argo
#: itself saw the pod fail (deleted, evicted, init or wait container failed).
RETRY_EXPRESSION = (f'lastRetry.status == "Error" || '
                    f'!(asInt(lastRetry.exitCode) in [{", ".join(str(c) for c in NO_RETRY_EXIT_CODES)}])')
#: summarize exits 1 when a video failed: retrying cannot change that, so only Argo-side errors are.
SUMMARIZE_RETRY_EXPRESSION = 'lastRetry.status == "Error"'
#: join waits for every child of the anonymize fan-out, failed or not (an empty list may be Skipped).
JOIN_DEPENDS = "anonymize.Succeeded || anonymize.Failed || anonymize.Errored || anonymize.Skipped"
#: summarize waits for the join, failed or not.
SUMMARIZE_DEPENDS = "join.Succeeded || join.Failed || join.Errored"


class GpuMode(str, Enum):
    nvidia = "nvidia"
    gpushare = "gpushare"
    none = "none"


class PodGCStrategy(str, Enum):
    OnPodCompletion = "OnPodCompletion"
    OnPodSuccess = "OnPodSuccess"
    OnWorkflowCompletion = "OnWorkflowCompletion"
    OnWorkflowSuccess = "OnWorkflowSuccess"


class PullPolicy(str, Enum):
    IfNotPresent = "IfNotPresent"
    Always = "Always"
    Never = "Never"


def _cli(metavar: Optional[str] = None, env: Optional[str] = None, option: Optional[str] = None) -> dict[str, Any]:
    """How a field appears on the command line (see with_cluster_options)."""
    return {key: value for key, value in (("metavar", metavar), ("env", env), ("option", option)) if value}


class ClusterConfig(BaseModel):
    """Where and how the workflow runs. Nothing here changes the anonymized videos (see Settings)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field("video-anonymizer", pattern=r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$",
                      description="WorkflowTemplate name; prefix of the submitted workflows' names.")
    namespace: str = Field("argo", description="Kubernetes namespace of the workflow and its pods.",
                           json_schema_extra=_cli(env="ARGO_NAMESPACE"))
    service_account: str = Field("video-anonymizer", description="Service account of the workflow's pods "
                                                                 "(argo/rbac.yaml creates it).")
    image: str = Field("video-anonymizer-gpu:0.1.0", description="Image of the anonymize pods "
                                                                 "(images/gpu.Dockerfile), with its registry.")
    cpu_image: str = Field("video-anonymizer-cpu:0.1.0", description="Image of the discover and summarize pods "
                                                                     "(images/cpu.Dockerfile), with its registry.")
    image_pull_policy: PullPolicy = Field(PullPolicy.IfNotPresent, description="When the kubelet pulls the images.")
    input_claim: str = Field("video-input", description="PersistentVolumeClaim holding the videos "
                                                        "(mounted read-only at /input).")
    output_claim: str = Field("video-output", description="PersistentVolumeClaim for the outputs, reports, manifest "
                                                          "and summary (mounted at /output).")
    input_host_path: Optional[str] = Field(None, description="Node folder with the videos, used instead of "
                                                             "--input-claim (every node must see the same files).")
    output_host_path: Optional[str] = Field(None, description="Node folder for the outputs, used instead of "
                                                              "--output-claim (shared by every node, writable by "
                                                              "--run-as-user).")
    gpu_mode: GpuMode = Field(GpuMode.nvidia, description="nvidia: one whole GPU per pod (nvidia.com/gpu: 1); "
                                                          "gpushare: --gpu-mem GiB of a shared GPU (aliyun.com/gpu-mem,"
                                                          " GPU-share scheduler); none: CPU only.")
    gpu_mem: int = Field(4, ge=1, le=256, description="GiB of GPU memory per pod in gpushare mode.")
    cpu_request: str = Field("2", pattern=r"^\d+(\.\d+)?m?$", description="CPU request of each anonymize pod.")
    cpu_limit: str = Field("4", pattern=r"^\d+(\.\d+)?m?$", description="CPU limit of each anonymize pod "
                                                                        "(also its detector/encoder threads).")
    memory_request: str = Field("6Gi", pattern=r"^\d+(Ki|Mi|Gi|Ti)?$", description="Memory request of each "
                                                                                  "anonymize pod.")
    memory_limit: str = Field("12Gi", pattern=r"^\d+(Ki|Mi|Gi|Ti)?$", description="Memory limit of each anonymize "
                                                                                 "pod.")
    tmp_size: str = Field("2Gi", pattern=r"^\d+(Ki|Mi|Gi|Ti)?$", description="Size limit of each pod's writable /tmp "
                                                                            "(the root filesystem is read-only).")
    node_selector: dict[str, str] = Field({}, description="KEY=VALUE node labels the anonymize pods must run on "
                                                          "(repeatable).", json_schema_extra=_cli("KEY=VALUE"))
    tolerations: list[str] = Field([], description="Taints the anonymize pods tolerate, as KEY[=VALUE][:EFFECT] "
                                                   "(repeatable), e.g. nvidia.com/gpu:NoSchedule.",
                                   json_schema_extra=_cli("KEY[=VALUE][:EFFECT]", option="--toleration"))
    labels: dict[str, str] = Field({}, description="KEY=VALUE labels of the workflow and its pods, besides "
                                                   "app.kubernetes.io/name=NAME (repeatable).",
                                   json_schema_extra=_cli("KEY=VALUE", option="--label"))
    parallelism: int = Field(8, ge=1, description="Pods running at the same time, at most.")
    retry_limit: int = Field(3, ge=0, le=20, description="Extra attempts for a pod that failed in a way worth "
                                                         "retrying (see README, exit codes).")
    retry_backoff: int = Field(30, ge=1, description="Seconds before the first retry; doubled before each next one.")
    active_deadline_seconds: int = Field(3 * 24 * 3600, ge=60, description="The whole workflow is stopped after "
                                                                          "this many seconds.")
    video_deadline_seconds: int = Field(VIDEO_DEADLINE_SECONDS, ge=60,
                                        description="One anonymize pod is stopped (and retried) after this many "
                                                    "seconds.")
    pod_gc: PodGCStrategy = Field(PodGCStrategy.OnPodSuccess, description="Which finished pods Argo deletes "
                                                                          "(failed ones are kept for their logs).")
    run_as_user: int = Field(10001, ge=1, description="User (and group) id the containers run as (the images' user); "
                                                         "never root.")
    priority_class: Optional[str] = Field(None, description="PriorityClass of the anonymize pods.")
    summary_artifact: bool = Field(False, description="Also hand summary.html/.md/.json to Argo's artifact "
                                                      "repository as the summarize step's output artifacts (the "
                                                      "UI shows them); needs a configured artifact repository. "
                                                      "They are always written to the output volume.")
    segment_seconds: int = Field(DEFAULT_SEGMENT_SECONDS, ge=0,
                                 description="Cut videos longer than this into segments of at most this many "
                                             "seconds, each anonymized by its own pod and joined without re-encoding "
                                             "(0: never).")
    force: bool = Field(False, description="Redo every video, even those whose report says they are done with the "
                                           "same input and settings.")

    @field_validator("tolerations")
    @classmethod
    def _tolerations_parse(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_toleration(text)
        return value

    def threads(self) -> int:
        """Whole cores of the CPU limit: what the detector and the encoder of one pod may use."""
        limit = self.cpu_limit
        cores = float(limit[:-1]) / 1000 if limit.endswith("m") else float(limit)
        return max(1, math.floor(cores))


_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def parse_toleration(text: str) -> m.Toleration:
    """``key[=value][:Effect]`` (kubectl taint's syntax) -> a Kubernetes toleration."""
    spec, _, effect = text.partition(":")
    key, has_value, value = spec.partition("=")
    if not key or (effect and effect not in _EFFECTS):
        raise ValueError(f"toleration {text!r} is not KEY[=VALUE][:EFFECT] with EFFECT one of {', '.join(_EFFECTS)}")
    return m.Toleration(key=key, operator="Equal" if has_value else "Exists", value=value if has_value else None,
                        effect=effect or None)


def _retry(limit: int, backoff: int, expression: str) -> RetryStrategy:
    return RetryStrategy(limit=limit, retry_policy="Always", expression=expression,
                         backoff=m.Backoff(duration=f"{backoff}s", factor=m.IntOrString(root=2)))


def _volumes(cluster: ClusterConfig) -> list:
    """Workflow-level volumes: input (read-only), output, and an emptyDir for /tmp."""
    volumes: list = []
    for name, claim, host_path, read_only in (("input", cluster.input_claim, cluster.input_host_path, True),
                                              ("output", cluster.output_claim, cluster.output_host_path, False)):
        if host_path:
            volumes.append(HostPathVolume(name=name, path=host_path, type="Directory"))
        else:
            volumes.append(ExistingVolume(name=name, claim_name=claim, read_only=read_only or None))
    volumes.append(EmptyDirVolume(name="tmp", size_limit=cluster.tmp_size))
    return volumes


def _mounts(with_input: bool) -> list[m.VolumeMount]:
    mounts = [m.VolumeMount(name="output", mount_path=OUTPUT_MOUNT), m.VolumeMount(name="tmp", mount_path=TMP_MOUNT)]
    if with_input:
        mounts.insert(0, m.VolumeMount(name="input", mount_path=INPUT_MOUNT, read_only=True))
    return mounts


def _container_security() -> m.SecurityContext:
    return m.SecurityContext(allow_privilege_escalation=False, read_only_root_filesystem=True,
                             capabilities=m.Capabilities(drop=["ALL"]))


def _pod_security(cluster: ClusterConfig) -> m.PodSecurityContext:
    return m.PodSecurityContext(run_as_non_root=True, run_as_user=cluster.run_as_user,
                                run_as_group=cluster.run_as_user, fs_group=cluster.run_as_user,
                                fs_group_change_policy="OnRootMismatch",
                                seccomp_profile=m.SeccompProfile(type="RuntimeDefault"))


#: Every pod: a home and caches in the writable /tmp (the root filesystem is read-only), logs unbuffered.
_BASE_ENV = {"HOME": TMP_MOUNT, "XDG_CACHE_HOME": f"{TMP_MOUNT}/.cache", "PYTHONUNBUFFERED": "1"}


def anonymize_env(cluster: ClusterConfig, settings: Settings) -> dict[str, str]:
    """The anonymize pods' environment: the settings (as steps.anonymize reads them) and the roots."""
    env = {**_BASE_ENV, **settings.to_env(), "INPUT": INPUT_MOUNT, "OUTPUT": OUTPUT_MOUNT,
           "ANON_THREADS": str(cluster.threads())}
    if settings.model is not None:
        env["MODEL_WEIGHT"] = str(settings.model)
    return env


def _gpu_resources(cluster: ClusterConfig) -> dict[str, Any]:
    if cluster.gpu_mode == GpuMode.nvidia:
        return {"gpus": 1, "gpu_flag": "nvidia.com/gpu"}
    if cluster.gpu_mode == GpuMode.gpushare:
        return {"gpus": cluster.gpu_mem, "gpu_flag": "aliyun.com/gpu-mem"}
    return {}


def _output_parameters(names: dict[str, str], global_names: Optional[dict[str, str]] = None) -> list[Parameter]:
    """Output parameters read from OUTPUTS_IN_POD/<name>, with a default when the step could not write them."""
    global_names = global_names or {}
    return [Parameter(name=name, value_from=m.ValueFrom(path=f"{OUTPUTS_IN_POD}/{name}", default=default),
                      global_name=global_names.get(name)) for name, default in names.items()]


def _metric(name: str) -> str:
    return METRIC_PREFIX + name


def anonymize_metrics(cluster: ClusterConfig) -> list:
    """Per anonymize pod: its outcome (failures), and the work and time it took (cost per hour of video).

    ``{{status}}`` is the pod's phase (Succeeded, Failed, Error); a pod that Argo retries ends once
    per try. Counters add up across workflows; compute rates and ratios in Prometheus, e.g. GPU-seconds
    per hour of video = 3600 * pod_seconds_total / video_seconds_total (with one GPU per pod).
    """
    gpu = Label(key="gpu_mode", value=cluster.gpu_mode.value)
    succeeded = "{{status}} == Succeeded"
    return [
        Counter(name=_metric("pods_total"), help="Anonymize pods that ended, by phase (Failed and Error: failures).",
                labels=[Label(key="status", value="{{status}}")], value="1"),
        Counter(name=_metric("frames_total"), help="Frames anonymized (skipped videos count none).",
                when=succeeded, value="{{outputs.parameters.frames}}"),
        Counter(name=_metric("video_seconds_total"), help="Seconds of video anonymized (skipped videos count none).",
                when=succeeded, value="{{outputs.parameters.video-seconds}}"),
        Counter(name=_metric("pod_seconds_total"), help="Seconds anonymize pods ran, whatever their outcome.",
                labels=[gpu], value="{{duration}}"),
        Histogram(name=_metric("pod_duration_seconds"), help="Seconds one successful anonymize pod took.",
                  when=succeeded, value="{{duration}}", buckets=DURATION_BUCKETS),
    ]


def summarize_metrics(cluster: ClusterConfig) -> list:
    """The finished run's totals, as gauges (the latest run of this template, per state)."""
    template = Label(key="workflow_template", value=cluster.name)
    written = "{{status}} != Error"  # Failed means "a video failed": the totals were written
    videos = [Gauge(name=_metric("run_videos"), help="Videos of the latest run, by state.", when=written,
                    realtime=False, labels=[template, Label(key="state", value=state)],
                    value=f"{{{{outputs.parameters.{state}}}}}") for state in ("done", "skipped", "failed", "retried")]
    return videos + [
        Gauge(name=_metric("run_frames"), help="Frames anonymized in the latest run.", when=written, realtime=False,
              labels=[template], value="{{outputs.parameters.frames}}"),
        Gauge(name=_metric("run_worker_seconds_per_video_hour"),
              help="Worker-seconds (GPU-seconds with one GPU per pod) per hour of video, latest run.",
              when=f"{written} && {{{{outputs.parameters.done}}}} > 0", realtime=False, labels=[template],
              value="{{outputs.parameters.worker-seconds-per-video-hour}}"),
    ]


def summarize_outputs(cluster: ClusterConfig) -> list:
    totals = {name.replace("_", "-"): "0" for name in METRIC_TOTALS}
    outputs: list = _output_parameters({"summary": f"no summary was written to {OUTPUT_MOUNT}", **totals},
                                       {"summary": "summary"})
    if cluster.summary_artifact:
        outputs += [Artifact(name=name.replace(".", "-"), path=f"{OUTPUT_MOUNT}/{name}", optional=True,
                             archive=NoneArchiveStrategy())
                    for name in (SUMMARY_HTML, "summary.md", "summary.json")]
    return outputs


def build(cluster: ClusterConfig, settings: Settings, kind: Literal["WorkflowTemplate", "Workflow"]) -> Workflow:
    """The workflow (a WorkflowTemplate to install, or a Workflow to submit) as a Hera object."""
    workflow_class = WorkflowTemplate if kind == "WorkflowTemplate" else Workflow
    naming = {"name": cluster.name} if kind == "WorkflowTemplate" else {"generate_name": cluster.name + "-"}
    labels = {"app.kubernetes.io/name": cluster.name, **cluster.labels}
    with workflow_class(
        **naming,
        namespace=cluster.namespace,
        labels=labels,
        workflow_metadata=m.WorkflowMetadata(labels=labels),
        pod_metadata=m.Metadata(labels=labels),
        entrypoint=ENTRYPOINT,
        service_account_name=cluster.service_account,
        # No Kubernetes token in the containers that parse the videos (ffmpeg on untrusted files): Argo
        # mounts the account's token into its own executor container only (argo/rbac.yaml's Secret).
        automount_service_account_token=False,
        executor=m.ExecutorConfig(service_account_name=cluster.service_account),
        parallelism=cluster.parallelism,
        active_deadline_seconds=cluster.active_deadline_seconds,
        pod_gc=m.PodGC(strategy=cluster.pod_gc.value),
        security_context=_pod_security(cluster),
        volumes=_volumes(cluster),
    ) as workflow:
        common = {"image_pull_policy": cluster.image_pull_policy.value, "security_context": _container_security()}
        force = ["--force"] if cluster.force else []
        step_args = ["--input-root", INPUT_MOUNT, "--output-root", OUTPUT_MOUNT, *force]
        discover = Container(
            name="discover", image=cluster.cpu_image, command=["python", "-m", "steps.discover"],
            args=[INPUT_MOUNT, OUTPUT_MOUNT, "--manifest", MANIFEST_IN_POD, "--segment-seconds",
                  str(cluster.segment_seconds), "--print-work", *force],
            # The settings tell work already done with them from the rest.
            env=[Env(name=k, value=v) for k, v in {**_BASE_ENV, **settings.to_env()}.items()],
            volume_mounts=_mounts(with_input=True),
            resources=Resources(cpu_request="500m", cpu_limit="1", memory_request="512Mi", memory_limit="2Gi"),
            retry_strategy=_retry(cluster.retry_limit, cluster.retry_backoff, RETRY_EXPRESSION),
            **common,
        )
        anonymize = Container(
            name="anonymize", image=cluster.image, command=["python", "-m", "steps.anonymize"],
            inputs=[Parameter(name="index", description="Which work item: a manifest index, or INDEX:SEGMENT.")],
            args=["--manifest", MANIFEST_IN_POD, "--index", "{{inputs.parameters.index}}", *step_args,
                  "--argo-outputs", OUTPUTS_IN_POD],
            env=[Env(name=k, value=v) for k, v in anonymize_env(cluster, settings).items()]
            + [Env(name="ANON_PREVIOUS_ATTEMPTS", value="{{retries}}")],  # the report records the attempt
            outputs=_output_parameters({"frames": "0", "video-seconds": "0", "result": "unknown"}),
            metrics=anonymize_metrics(cluster),
            volume_mounts=_mounts(with_input=True),
            resources=Resources(cpu_request=cluster.cpu_request, cpu_limit=cluster.cpu_limit,
                                memory_request=cluster.memory_request, memory_limit=cluster.memory_limit,
                                **_gpu_resources(cluster)),
            node_selector=dict(cluster.node_selector) or None,
            tolerations=[parse_toleration(t) for t in cluster.tolerations] or None,
            priority_class_name=cluster.priority_class,
            active_deadline_seconds=cluster.video_deadline_seconds,
            retry_strategy=_retry(cluster.retry_limit, cluster.retry_backoff, RETRY_EXPRESSION),
            **common,
        )
        join = Container(  # what the anonymize pods left unjoined; never --force: they joined what they redid
            name="join", image=cluster.cpu_image, command=["python", "-m", "steps.join"],
            args=["--manifest", MANIFEST_IN_POD, "--input-root", INPUT_MOUNT, "--output-root", OUTPUT_MOUNT],
            env=[Env(name=k, value=v) for k, v in {**_BASE_ENV, **settings.to_env(), "INPUT": INPUT_MOUNT,
                                                   "OUTPUT": OUTPUT_MOUNT}.items()],
            volume_mounts=_mounts(with_input=True),
            resources=Resources(cpu_request="500m", cpu_limit="2", memory_request="512Mi", memory_limit="2Gi"),
            retry_strategy=_retry(cluster.retry_limit, cluster.retry_backoff, RETRY_EXPRESSION),
            **common,
        )
        summarize = Container(
            name="summarize", image=cluster.cpu_image, command=["python", "-m", "steps.summarize"],
            args=[OUTPUT_MOUNT, "--manifest", MANIFEST_IN_POD, "--argo-outputs", OUTPUTS_IN_POD],
            outputs=summarize_outputs(cluster),
            metrics=summarize_metrics(cluster),
            env=[Env(name=k, value=v) for k, v in _BASE_ENV.items()],
            volume_mounts=_mounts(with_input=False),
            resources=Resources(cpu_request="500m", cpu_limit="1", memory_request="512Mi", memory_limit="2Gi"),
            retry_strategy=_retry(cluster.retry_limit, cluster.retry_backoff, SUMMARIZE_RETRY_EXPRESSION),
            **common,
        )
        with DAG(name=ENTRYPOINT, fail_fast=False):
            Task(name="discover", template=discover)
            Task(name="anonymize", template=anonymize, depends="discover",
                 with_param="{{tasks.discover.outputs.result}}", arguments={"index": "{{item}}"})
            Task(name="join", template=join, depends=JOIN_DEPENDS)
            Task(name="summarize", template=summarize, depends=SUMMARIZE_DEPENDS)
    return workflow


def render_documents(cluster: ClusterConfig, settings: Settings,
                     kind: Literal["WorkflowTemplate", "Workflow"]) -> str:
    """The workflow as YAML, for ``kubectl apply`` / ``argo submit``."""
    header = ("# Rendered by `python -m workflows render` from workflows/argo.py: change the code or the options,\n"
              "# not this file.\n")
    return header + build(cluster, settings, kind).to_yaml(width=120)


def with_cluster_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give a typer command one option per ClusterConfig field; the command receives ``cluster=``.

    Like steps.settings.with_settings_options: the option list, defaults and help texts live in
    the model above only. dict fields are repeatable KEY=VALUE options, list fields repeatable options.
    """
    signature = inspect.signature(func, eval_str=True)  # the command's module's names, not this one's
    params = [p for p in signature.parameters.values() if p.name != "cluster"]
    fields = ClusterConfig.model_fields
    for name, field in fields.items():
        extra = field.json_schema_extra or {}
        origin = get_origin(field.annotation)
        annotation: Any = field.annotation
        default = field.default.value if isinstance(field.default, Enum) else field.default
        if origin in (dict, list):
            annotation, default = Optional[list[str]], None
        option = typer.Option(extra.get("option", "--" + name.replace("_", "-")), help=field.description,
                              envvar=extra.get("env"), metavar=extra.get("metavar"), show_default=origin is None,
                              rich_help_panel="Cluster options")
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=Annotated[annotation, option]))

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {}
        for name, field in fields.items():
            if name not in kwargs:
                continue
            value = kwargs.pop(name)
            origin = get_origin(field.annotation)
            if origin in (dict, list) and value is None:
                continue  # not given: the model's default
            if origin is dict:
                pairs = [item.partition("=") for item in value]
                bad = [item for item, (_, sep, _) in zip(value, pairs) if not sep]
                if bad:
                    raise typer.BadParameter(f"{name.replace('_', ' ')} take KEY=VALUE, not {bad[0]!r}")
                value = {key: val for key, _, val in pairs}
            values[name] = value
        try:
            cluster = ClusterConfig(**values)
        except ValidationError as exc:
            raise typer.BadParameter(str(exc)) from exc
        return func(*args, cluster=cluster, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    del wrapper.__wrapped__
    return wrapper
