"""A small InfluxDB v2 write endpoint that misbehaves on purpose: throttles the first requests
with 429 + Retry-After and answers 400 to any body holding a marked point. VictoriaMetrics (the
real server of the other tests) cannot be made to do either on demand."""
from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeInflux:
    def __init__(self, *, throttle_first: int = 2, retry_after: str = "1", poison: str = "POISON",
                 status_for_poison: int = 400, throttle_status: int = 429) -> None:
        self.throttle_status = throttle_status
        self.throttle_left = throttle_first
        self.retry_after = retry_after
        self.poison = poison
        self.status_for_poison = status_for_poison
        self.accepted: list[str] = []          # lines, in the order they were accepted
        self.requests: list[tuple[int, int]] = []   # (status, lines) per request
        self.auth: list[str] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                lines = [ln for ln in body.decode().split("\n") if ln]
                with fake._lock:
                    fake.auth.append(self.headers.get("Authorization", ""))
                    if fake.throttle_left > 0:
                        fake.throttle_left -= 1
                        status, headers = fake.throttle_status, {"Retry-After": fake.retry_after}
                    elif any(fake.poison in ln for ln in lines):
                        status, headers = fake.status_for_poison, {}
                    else:
                        status, headers = 204, {}
                        fake.accepted.extend(lines)
                    fake.requests.append((status, len(lines)))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                payload = b'{"code":"invalid","message":"unable to parse points"}' if status == 400 else b""
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "FakeInflux":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
