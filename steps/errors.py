"""Error classes and the exit codes they map to.

The exit code is the contract with Argo's retry expression (and with the local runner,
which applies the same rule): a *transient* failure may succeed on another try (a crashed
or evicted pod, GPU out of memory, a full or flaky volume), a *permanent* one never will
(the input is not a decodable video). Keep this table in sync with README's "Exit codes".
"""

from __future__ import annotations

import re

EXIT_OK = 0
#: An unexpected error (a bug, or something not yet classified). Retried: it may be transient.
EXIT_INTERNAL = 1
#: Bad command line (typer/click use 2 for usage errors). Never retried.
EXIT_USAGE = 2
#: The input can never be anonymized as it is (not a video, truncated, no video stream...).
EXIT_PERMANENT = 3
#: Worth another try: I/O error, out of memory, a killed encoder, a full disk.
EXIT_TRANSIENT = 75  # EX_TEMPFAIL from sysexits.h

#: Exit codes that must not be retried, by Argo or by the local runner.
NO_RETRY_EXIT_CODES = (EXIT_OK, EXIT_USAGE, EXIT_PERMANENT)


class AnonymizeError(Exception):
    """A failure with a one-sentence message meant for the report and the summary."""

    exit_code = EXIT_INTERNAL
    kind = "internal"


class PermanentError(AnonymizeError):
    """The input itself is the problem: retrying cannot help."""

    exit_code = EXIT_PERMANENT
    kind = "permanent"


class TransientError(AnonymizeError):
    """The environment is the problem: another try may succeed."""

    exit_code = EXIT_TRANSIENT
    kind = "transient"


def one_sentence(text: str, limit: int = 300) -> str:
    """Squash a (possibly multi-line) message into one short sentence for reports.

    A long quoted name is shortened in its middle first, so that the sentence's point survives the limit.
    """
    line = " ".join(part.strip() for part in str(text).splitlines() if part.strip())
    line = re.sub(r"'([^']{61,})'", lambda m: f"'{m.group(1)[:30]}…{m.group(1)[-30:]}'", line)
    if len(line) > limit:
        line = line[: limit - 1].rstrip() + "…"
    if line and line[-1] not in ".!?…":
        line += "."
    return line


#: How long one video's worker may run before it is stopped and retried: the Argo pods' deadline
#: (``activeDeadlineSeconds``) and the local runner's (``--video-deadline``). Far above a long video's time, it
#: only ends a worker that hangs.
VIDEO_DEADLINE_SECONDS = 6 * 3600


def should_retry(exit_code: int) -> bool:
    """The retry rule Argo's retryStrategy expression encodes, for the local runner too."""
    return exit_code not in NO_RETRY_EXIT_CODES
