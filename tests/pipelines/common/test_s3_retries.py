"""Object storage retries with backoff: a request that meets a few 503 SlowDown answers still succeeds.

A proxy on 127.0.0.1 stands between pyarrow and the moto S3 endpoint and answers the next N
requests with S3's throttling error (503 SlowDown) before it forwards again, as S3 does under load.
"""

from __future__ import annotations

import http.client
import pickle
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipelines.common.storage import DEFAULT_S3_ATTEMPTS, S3_ATTEMPTS_ENV, locate, s3_attempts

pytestmark = pytest.mark.slow  # moto's server start

SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")


class FlakyProxy:
    """Forwards every request to ``target`` (host:port) except the next ``fail_next``, answered 503."""

    def __init__(self, target: str) -> None:
        self.target, self.fail_next, self.failed, self.forwarded = target, 0, 0, 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.fail_next > 0:
                    proxy.fail_next -= 1
                    proxy.failed += 1
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOW_DOWN)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(SLOW_DOWN)
                    return
                proxy.forwarded += 1
                conn = http.client.HTTPConnection(proxy.target, timeout=30)
                conn.request(self.command, self.path, body=body or None, headers=dict(self.headers))
                res = conn.getresponse()
                data = res.read()
                self.send_response(res.status)
                for k, v in res.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                # a HEAD answer has no body but the object's length
                self.send_header("Content-Length", res.getheader("Content-Length", "0") if self.command == "HEAD"
                                 else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flaky(s3_endpoint, monkeypatch):
    for k, v in s3_endpoint.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # the URI names the proxy
    proxy = FlakyProxy(s3_endpoint.url.split("://", 1)[1])
    bucket = s3_endpoint.create_bucket("vloss-retries")
    with s3_endpoint.filesystem().open_output_stream("vloss-retries/obj.bin") as out:
        out.write(b"payload")
    yield proxy, f"{bucket}/obj.bin?endpoint_override={proxy.address}&scheme=http&region=us-east-1"
    proxy.close()


def test_throttled_requests_are_retried_with_backoff_then_succeed(flaky, monkeypatch):
    proxy, uri = flaky
    monkeypatch.delenv(S3_ATTEMPTS_ENV, raising=False)
    assert s3_attempts() == DEFAULT_S3_ATTEMPTS
    loc = locate(uri)
    proxy.fail_next = 3
    t0 = time.time()
    assert loc.read_bytes() == b"payload"
    took = time.time() - t0
    assert proxy.failed == 3 and proxy.fail_next == 0
    print(f"3 throttled answers, then success after {took:.2f} s")
    # a Location pickled into a Ray task keeps retrying (pyarrow's own pickling forgets the strategy)
    moved = pickle.loads(pickle.dumps(loc))
    proxy.fail_next = 3
    assert moved.read_bytes() == b"payload" and proxy.failed == 6


def test_the_attempts_are_bounded_and_a_setting(flaky, monkeypatch):
    proxy, uri = flaky
    monkeypatch.setenv(S3_ATTEMPTS_ENV, "2")
    loc = locate(uri)
    proxy.fail_next = 5
    with pytest.raises(OSError, match="SlowDown|503|reduce your request rate"):
        loc.read_bytes()
    assert proxy.failed == 2  # two attempts, then the error reaches the job
    proxy.fail_next = 0
    for bad in ("0", "many", "-3"):
        monkeypatch.setenv(S3_ATTEMPTS_ENV, bad)
        with pytest.raises(ValueError, match=S3_ATTEMPTS_ENV):
            s3_attempts()
