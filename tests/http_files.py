"""A local HTTP file server on 127.0.0.1 for download tests (no internet at test time).

It serves byte strings by path, honours ``Range`` (206) unless told not to, can break a
response off after some bytes (a dropped connection), and records each request's headers.
"""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional


class FileServer:
    """``with FileServer({"/m.onnx": b"…"}) as s: s.url("/m.onnx")``."""

    def __init__(self, files: Dict[str, bytes]) -> None:
        self.files = dict(files)
        self.ranges = True  # False: ignore Range (answer 200 with the whole file)
        self.break_after: Optional[int] = None  # stop the next body after this many bytes
        self.requests: List[Dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                server.requests.append({"path": self.path, **dict(self.headers)})
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "not found")
                    return
                start = 0
                header = self.headers.get("Range", "")
                if server.ranges and header.startswith("bytes="):
                    start = int(header[6:].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                part = body[start:]
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                if server.break_after is not None:
                    part, server.break_after = part[:server.break_after], None
                    self.wfile.write(part)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(part)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self) -> "FileServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
