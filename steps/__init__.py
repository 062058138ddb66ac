"""The code that runs inside each Argo pod and in the local run.

Each step (`discover`, `anonymize`, `summarize`) is a plain importable function with a
command-line entry (`python -m steps.<name>`), so the cluster and the local runner call
exactly the same code.
"""

import sys

# No usage telemetry leaves a worker. ``import openvino`` imports its model converter, which sends an
# analytics event over the internet on every import unless told otherwise (the openvino-telemetry
# package, a dependency of the wheel); videos being de-identified are often on machines that must not
# call out, and without a network the event's DNS lookup hung a worker at exit (measured here: over 20
# minutes). Marking the package as absent makes OpenVINO use its built-in no-op stub, as documented in
# openvino/tools/ovc/telemetry_utils.py; nothing else in this project uses it.
sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
