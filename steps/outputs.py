"""Values a step hands to Argo as output parameters: one small text file per value.

Argo's executor reads each file named in the template's ``outputs.parameters[].valueFrom.path``
after the container ends; the workflow's Prometheus metrics and the Argo UI use them (see
workflows/argo.py). Locally nobody asks for them, so nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from steps.fsutil import atomic_write_text


def write_outputs(folder: Optional[Path], values: dict[str, Any]) -> None:
    """Write ``folder/<name>`` for each value; a failure never fails the step (metrics are a courtesy)."""
    if folder is None:
        return
    for name, value in values.items():
        try:
            atomic_write_text(folder / name, str(value))
        except Exception:  # noqa: BLE001 - classified OSErrors included: the video is what matters
            return
