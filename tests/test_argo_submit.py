"""``python -m workflows submit`` against a local HTTP server standing in for the Argo Server's API."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from tests.conftest import run_cli
from workflows.cli import app
from workflows.lint import lint_documents

TOKEN = "s3cr3t-t0ken-d0-not-print"


class FakeArgoServer:
    """Answers POST /api/v1/workflows/{namespace} like the Argo Server, and records every request."""

    def __init__(self):
        self.requests: list[dict] = []
        self.status = 200
        self.message = ""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                if fake.status == 200:
                    workflow = fake.requests[-1]["body"]["workflow"]
                    workflow["metadata"]["name"] = workflow["metadata"]["generateName"] + "x7k2q"
                    reply = workflow
                else:
                    reply = {"code": 16, "message": fake.message}
                data = json.dumps(reply).encode()
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server():
    fake = FakeArgoServer()
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()


def submit(server: FakeArgoServer, *args: str, token: str = f"Bearer {TOKEN}"):
    env = {"ARGO_SERVER": server.address, "ARGO_SECURE": "false", "ARGO_TOKEN": token, "ARGO_NAMESPACE": "vision"}
    return run_cli("workflows", "submit", *args, env=env, timeout=60)


def test_submit_posts_the_workflow_and_prints_its_name_and_address(server):
    result = submit(server, "--mode", "pixelate", "--gpu-mode", "gpushare")
    assert result.returncode == 0, result.stderr
    assert len(server.requests) == 1
    request = server.requests[0]
    assert request["path"] == "/api/v1/workflows/vision"
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert request["headers"]["Content-Type"] == "application/json"
    workflow = request["body"]["workflow"]
    assert workflow["kind"] == "Workflow" and workflow["metadata"]["namespace"] == "vision"
    assert workflow["metadata"]["generateName"] == "video-anonymizer-"
    assert lint_documents([workflow]) == []
    anonymize = next(t for t in workflow["spec"]["templates"] if t["name"] == "anonymize")
    assert {"name": "ANON_MODE", "value": "pixelate"} in anonymize["container"]["env"]
    assert "aliyun.com/gpu-mem" in anonymize["container"]["resources"]["limits"]
    assert result.stdout.strip() == "video-anonymizer-x7k2q"
    assert f"http://{server.address}/workflows/vision/video-anonymizer-x7k2q" in result.stderr
    assert TOKEN not in result.stdout + result.stderr + json.dumps(workflow)


def test_a_bare_token_is_sent_as_a_bearer_token(server):
    assert submit(server, token=TOKEN).returncode == 0
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("status,expected", [(401, "401 Unauthorized"), (409, "already exists"),
                                             (500, "500 Internal Server Error")])
def test_server_errors_give_a_clear_message_without_the_token(server, status, expected):
    server.status = status
    server.message = f"rejected request with token {TOKEN}"  # a server echoing the token must not leak it
    result = submit(server)
    assert result.returncode == 1
    assert expected in result.stderr and "rejected request" in result.stderr
    assert TOKEN not in result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one sentence, not a traceback


def test_unreachable_or_missing_server(server):
    server.httpd.shutdown()
    server.httpd.server_close()
    unreachable = submit(server)
    assert unreachable.returncode == 1 and "cannot reach the Argo Server" in unreachable.stderr
    missing = run_cli("workflows", "submit", env={"ARGO_SERVER": "", "ARGO_TOKEN": TOKEN})
    assert missing.returncode == 1 and "ARGO_SERVER" in missing.stderr
    assert TOKEN not in unreachable.stderr + missing.stderr
    helped = CliRunner().invoke(app, ["submit", "--help"], env={"ARGO_TOKEN": TOKEN, "COLUMNS": "200"})
    assert helped.exit_code == 0 and "ARGO_TOKEN" in helped.output and TOKEN not in helped.output
