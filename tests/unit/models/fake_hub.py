"""A local stand-in for the Hugging Face hub's file endpoints, for hub-path tests without network.

Serves HEAD/GET /{org}/{name}/resolve/{revision}/{filename} with the headers huggingface_hub's
hf_hub_download needs (X-Repo-Commit, ETag, Content-Length) and the hub's error codes
(X-Error-Code: RepoNotFound with 401 for an unknown repo, EntryNotFound with 404 for a missing file).
Run as a script it prints its base URL and serves until killed.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import sys
import threading
from typing import Any, ClassVar

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


class _Handler(http.server.BaseHTTPRequestHandler):
    repos: ClassVar[dict[str, dict[str, bytes]]] = {}

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _answer(self, with_body: bool) -> None:
        match = _RESOLVE.match(self.path.split("?", 1)[0])
        if match is None or match["repo"] not in self.repos:
            self._error(401, "RepoNotFound", "Repository not found", with_body)
            return
        body = self.repos[match["repo"]].get(match["file"])
        if body is None:
            self._error(404, "EntryNotFound", "Entry not found", with_body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"' + hashlib.sha1(body).hexdigest() + '"')
        self.send_header("X-Repo-Commit", COMMIT)
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, with_body: bool) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if code == "EntryNotFound":
            self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def do_GET(self) -> None:
        self._answer(with_body=True)


def start(repos: dict[str, dict[str, bytes]]) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve `repos` ({"org/name": {"config.json": b"..."}}) on 127.0.0.1:<random port> in a thread."""
    handler = type("Handler", (_Handler,), {"repos": repos})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


if __name__ == "__main__":
    srv, url = start({"acme/tiny-llama": {"config.json": json.dumps({"hidden_size": 8}).encode()}})
    sys.stdout.write(url + "\n")
    sys.stdout.flush()
    threading.Event().wait()
