"""Submit the workflow to an Argo Server with Hera's WorkflowsService (``POST /api/v1/workflows/{namespace}``).

The server is found the way the ``argo`` command finds it: ``ARGO_SERVER`` (``host:port``,
https unless ``ARGO_SECURE=false``, or a full URL), ``ARGO_TOKEN`` (``Bearer ...`` as
``argo auth token`` prints it, or the bare token), ``ARGO_NAMESPACE``,
``ARGO_INSECURE_SKIP_VERIFY``. The token is sent in the Authorization header and nowhere
else: it is never rendered, printed or logged, and it is masked in server messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

import requests
from hera.exceptions import HeraException
from hera.workflows import Workflow, WorkflowsService
from hera.workflows.models import WorkflowCreateRequest


class SubmitError(Exception):
    """The workflow was not created; the message says why in one sentence."""


@dataclass(frozen=True)
class ArgoServer:
    url: str  # scheme://host[:port][/base/], always ending with "/"
    token: Optional[str] = None
    verify_tls: bool = True

    @classmethod
    def from_address(cls, address: str, token: Optional[str] = None, secure: bool = True,
                     verify_tls: bool = True) -> ArgoServer:
        """*address* as ARGO_SERVER holds it: ``host:port`` (https unless not *secure*) or a full URL."""
        address = address.strip()
        if not address:
            raise SubmitError("no Argo Server given: set ARGO_SERVER (host:port) or pass --server")
        if "://" not in address:
            address = ("https://" if secure else "http://") + address
        parts = urlsplit(address)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SubmitError(f"the Argo Server address {address!r} is not host:port or an http(s) URL")
        return cls(url=address.rstrip("/") + "/", token=token or None, verify_tls=verify_tls)

    def ui_url(self, namespace: str, name: str) -> str:
        """Where the Argo UI shows the workflow."""
        return f"{self.url}workflows/{namespace}/{name}"


def _mask(text: str, token: Optional[str]) -> str:
    if token:
        for secret in {token, token.split()[-1]}:
            text = text.replace(secret, "***")
    return text


_STATUS_HINTS = {
    400: "the Argo Server rejected the workflow as invalid",
    401: "the Argo Server did not accept the token (401 Unauthorized): set ARGO_TOKEN to a valid token "
         "(`argo auth token` prints one) or check that the server runs with --auth-mode=client",
    403: "the token is not allowed to create workflows in namespace {namespace} (403 Forbidden)",
    404: "the Argo Server has no workflow API at this address (404 Not Found): check ARGO_SERVER",
    409: "a workflow with this name already exists in namespace {namespace} (409 Conflict): delete it or "
         "submit again (each submission gets a new generated name)",
    500: "the Argo Server failed to create the workflow (500 Internal Server Error)",
}


def submit(workflow: Workflow, server: ArgoServer) -> str:
    """Create *workflow* on *server*; return the name the server gave it. SubmitError on any failure."""
    namespace = workflow.namespace or "default"
    service = WorkflowsService(host=server.url, token=server.token, verify_ssl=server.verify_tls,
                               namespace=namespace)
    try:
        created = service.create_workflow(WorkflowCreateRequest(workflow=workflow.build()), namespace=namespace)
    except HeraException as exc:
        status = getattr(exc, "status_code", None)
        hint = _STATUS_HINTS.get(status, f"the Argo Server answered with status {status}")
        said = re.search(r"with message: `(.*)`$", str(exc), re.DOTALL)
        detail = said.group(1) if said else str(exc)
        raise SubmitError(_mask(f"{hint.format(namespace=namespace)}; the server said: {detail}",
                                server.token)) from None
    except requests.exceptions.SSLError as exc:
        raise SubmitError(_mask(f"TLS failed with the Argo Server at {server.url} ({exc.__class__.__name__}); "
                                "for a self-signed certificate set ARGO_INSECURE_SKIP_VERIFY=true",
                                server.token)) from None
    except requests.exceptions.RequestException as exc:
        raise SubmitError(_mask(f"cannot reach the Argo Server at {server.url}: {exc.__class__.__name__}; "
                                "check ARGO_SERVER (and ARGO_SECURE=false for a plain-http server)",
                                server.token)) from None
    finally:
        service.close()
    name = created.metadata.name if created.metadata else None
    if not name:
        raise SubmitError("the Argo Server answered without the new workflow's name")
    return name
