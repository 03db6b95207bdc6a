"""A notebook-like service (stdlib only): lists the files under /data and keeps the user's notes.

GET /            the listing and the notes (HTML)
GET /files/PATH  one file under /data
GET /notes       the notes (text/markdown)
POST /notes      append the request body (text, or the form field ``note``) to /work/notes.md
GET /healthz     ok
"""

from __future__ import annotations

import html
import os
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DATA = Path(os.environ.get("NOTEBOOK_DATA", "/data")).resolve()
NOTES = Path(os.environ.get("NOTEBOOK_NOTES", "/work/notes.md"))
PORT = int(os.environ.get("NOTEBOOK_PORT", "8888"))
MAX_NOTE_BYTES = 1024 * 1024


def data_files() -> list[str]:
    return sorted(str(p.relative_to(DATA)) for p in DATA.rglob("*") if p.is_file())


def notes_text() -> str:
    return NOTES.read_text(encoding="utf-8") if NOTES.exists() else ""


class Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        if path == "/healthz":
            self._send(HTTPStatus.OK, b"ok\n", "text/plain")
        elif path == "/notes":
            self._send(HTTPStatus.OK, notes_text().encode(), "text/markdown; charset=utf-8")
        elif path.startswith("/files/"):
            target = (DATA / path[len("/files/") :]).resolve()
            if not target.is_relative_to(DATA) or not target.is_file():
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
            else:
                self._send(HTTPStatus.OK, target.read_bytes(), "application/octet-stream")
        elif path == "/":
            items = "".join(
                f'<li><a href="/files/{urllib.parse.quote(n)}">{html.escape(n)}</a></li>'
                for n in data_files()
            )
            page = (
                "<!doctype html><title>urgentflow notebook</title><h1>Data</h1>"
                f"<ul>{items}</ul><h1>Notes</h1><pre>{html.escape(notes_text())}</pre>"
                '<form method="post" action="/notes"><textarea name="note"></textarea>'
                '<button type="submit">Add note</button></form>'
            )
            self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def do_POST(self) -> None:
        if urllib.parse.urlsplit(self.path).path != "/notes":
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_NOTE_BYTES:
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"note too large\n", "text/plain")
            return
        body = self.rfile.read(length).decode("utf-8", errors="replace")
        if self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            body = urllib.parse.parse_qs(body).get("note", [""])[0]
        with NOTES.open("a", encoding="utf-8") as notes:
            notes.write(body if body.endswith("\n") else body + "\n")
        self._send(HTTPStatus.CREATED, notes_text().encode(), "text/markdown; charset=utf-8")


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()  # noqa: S104 - published by Docker
