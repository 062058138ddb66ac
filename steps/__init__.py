"""The code that runs inside each Argo pod and in the local run.

Each step (`discover`, `anonymize`, `summarize`) is a plain importable function with a
command-line entry (`python -m steps.<name>`), so the cluster and the local runner call
exactly the same code.
"""
