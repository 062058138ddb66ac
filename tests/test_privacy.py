"""Nothing the anonymizer runs calls out: OpenVINO's usage telemetry is off in every process that imports the steps."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def test_openvino_sends_no_usage_telemetry(tmp_path):
    pytest.importorskip("openvino")
    code = ("import steps.detectors.runtime, openvino, openvino.tools.ovc.telemetry_utils as t; "
            "t.init_ovc_telemetry('check').send_event('ov', 'import', 'check'); print(t.tm.__name__)")
    # Outside CI (where OpenVINO would send the event) and with a home of its own to see what it writes.
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, "HOME": str(tmp_path)},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["openvino.tools.ovc.telemetry_stub"]
    assert not (tmp_path / "intel").exists()  # no analytics client id or usage counter written
