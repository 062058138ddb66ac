"""Run a command the way a workflow pod's security context runs it, on this machine, for the tests.

Started by ``unshare --mount --propagation private`` (a mount namespace of its own, so that
nothing here changes the machine's mounts), as root, it:

- bind-mounts each ``--rw`` folder onto itself (it stays writable: the pod's /tmp emptyDir and
  the output volume),
- bind-mounts each ``--ro`` folder onto itself read-only (the input volume, ``readOnly: true``),
- with ``--read-only-root``, remounts ``/`` read-only (``readOnlyRootFilesystem: true``),
- then runs the command as ``--uid`` (``runAsUser``/``runAsGroup``, no supplementary groups)
  with no capabilities at all and ``no_new_privs`` (``capabilities.drop: [ALL]``,
  ``allowPrivilegeEscalation: false``) through ``setpriv``.

``--parent-namespace`` is the caller's mount namespace: if this process is still in it (the
unshare did not happen), it refuses to touch any mount.

    python -m tests.pod_sandbox --parent-namespace NS --uid 10001 --read-only-root --ro IN --rw /tmp -- CMD...
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parent-namespace", required=True)
    parser.add_argument("--uid", type=int, required=True)
    parser.add_argument("--read-only-root", action="store_true")
    parser.add_argument("--ro", action="append", default=[])
    parser.add_argument("--rw", action="append", default=[])
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if os.readlink("/proc/self/ns/mnt") == args.parent_namespace:
        print("pod_sandbox: not in a mount namespace of its own; refusing to remount anything", file=sys.stderr)
        return 2
    for folder in args.rw:
        mount("--bind", folder, folder)
    for folder in args.ro:
        mount("--bind", folder, folder)
        mount("-o", "remount,bind,ro", folder)
    if args.read_only_root:
        mount("-o", "remount,bind,ro", "/")
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    uid = str(args.uid)
    os.execvp("setpriv", ["setpriv", "--reuid", uid, "--regid", uid, "--clear-groups", "--no-new-privs",
                          "--inh-caps=-all", "--bounding-set=-all", "--", *command])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
