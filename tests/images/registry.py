"""
A small read-only container registry for the tests: the OCI distribution API (``/v2/``) over an
OCI layout, on 127.0.0.1, with Basic auth -- enough for skopeo to inspect and copy an image, to
refuse credentials, to say "manifest unknown", and (``tamper``) to send the wrong bytes.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_PATH = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)$")


class Registry:
    """
    Serves ``layout`` as the repository ``repository`` on 127.0.0.1:<port> (stop with :meth:`stop`).

    :param login: with ``password``, the only credentials it accepts (else anonymous access).
    """

    def __init__(
        self, layout: Path, repository: str = "team/tools", login: str = "", password: str = ""
    ) -> None:
        self.layout, self.repository = layout, repository
        self.credentials = f"{login}:{password}" if login else None
        self.tamper: set[str] = set()  # digests served with other bytes
        self.requests: list[str] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                registry.answer(self, body=True)

            def do_HEAD(self) -> None:
                registry.answer(self, body=False)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reference(self, digest: str, tag: str = "") -> str:
        return f"{self.host}/{self.repository}{':' + tag if tag else ''}@{digest}"

    def registries_conf(self, folder: Path) -> Path:
        """A containers-registries.conf(5) that lets skopeo talk plain HTTP to this registry."""
        path = folder / "registries.conf"
        path.write_text(f'[[registry]]\nlocation = "{self.host}"\ninsecure = true\n')
        return path

    def _authorized(self, handler: BaseHTTPRequestHandler) -> bool:
        if self.credentials is None:
            return True
        given = handler.headers.get("Authorization", "")
        return given == "Basic " + base64.b64encode(self.credentials.encode()).decode()

    def _send(
        self, handler: BaseHTTPRequestHandler, status: int, data: bytes, body: bool, **headers: str
    ) -> None:
        handler.send_response(status)
        for key, value in {"Content-Length": str(len(data)), **headers}.items():
            handler.send_header(key, value)
        handler.end_headers()
        if body:
            handler.wfile.write(data)

    def _error(
        self, handler: BaseHTTPRequestHandler, status: int, code: str, message: str, body: bool
    ) -> None:
        data = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        extra = {"WWW-Authenticate": 'Basic realm="byo-test"'} if status == 401 else {}
        self._send(handler, status, data, body, **{"Content-Type": "application/json", **extra})

    def answer(self, handler: BaseHTTPRequestHandler, *, body: bool) -> None:
        self.requests.append(handler.path)
        if not self._authorized(handler):
            self._error(handler, 401, "UNAUTHORIZED", "authentication required", body)
            return
        if handler.path in ("/v2/", "/v2"):
            self._send(handler, 200, b"{}", body, **{"Content-Type": "application/json"})
            return
        found = _PATH.match(handler.path)
        if found is None or found["name"] != self.repository:
            self._error(handler, 404, "NAME_UNKNOWN", "repository name not known to registry", body)
            return
        digest = self._digest(found["ref"])
        path = self.layout / "blobs" / "sha256" / (digest or "").removeprefix("sha256:")
        if digest is None or not path.is_file():
            kind = "MANIFEST_UNKNOWN" if found["kind"] == "manifests" else "BLOB_UNKNOWN"
            self._error(handler, 404, kind, f"{found['kind'][:-1]} unknown", body)
            return
        data = path.read_bytes()
        if digest in self.tamper:
            data = data.replace(b"}", b' , "tampered": true}', 1) if data.startswith(b"{") else data[::-1]
        headers = {"Docker-Content-Digest": digest, "Content-Type": "application/octet-stream"}
        if found["kind"] == "manifests":  # umoci's manifests leave out their (optional) mediaType
            document = json.loads(path.read_bytes())
            fallback = "manifest" if "layers" in document else "index"
            headers["Content-Type"] = (
                document.get("mediaType") or f"application/vnd.oci.image.{fallback}.v1+json"
            )
        self._send(handler, 200, data, body, **headers)

    def _digest(self, ref: str) -> str | None:
        if ref.startswith("sha256:"):
            return ref
        index = json.loads((self.layout / "index.json").read_text())
        for entry in index["manifests"]:
            if (entry.get("annotations") or {}).get("org.opencontainers.image.ref.name") == ref:
                return str(entry["digest"])
        return None
