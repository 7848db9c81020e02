"""A local HTTP sink that answers every request with 200: the export target for benchmarks.

Run as a separate process (``start_http_sink()``), so serving it costs the measured process nothing.
``start_http_sink(hang=True)`` reads each request and never answers: a hanging endpoint.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two small writes; with Nagle on, the second waits ~40 ms for the
    # client's delayed ACK, and every flush() in a timed region would measure that wait.
    disable_nagle_algorithm = True

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_GET = do_POST

    def log_message(self, *args):
        pass


class _HangingSink(_Sink):
    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        threading.Event().wait()  # until the sink process is stopped


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningSink:
    url: str
    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(5)


def start_http_sink(hang: bool = False) -> RunningSink:
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, str(port), *(["hang"] if hang else [])])
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return RunningSink(f"http://127.0.0.1:{port}", process)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the HTTP sink did not start within 10 s")


if __name__ == "__main__":
    handler = _HangingSink if sys.argv[2:] == ["hang"] else _Sink
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), handler).serve_forever()
