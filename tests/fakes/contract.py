"""A local HTTP fake that checks every request against a provider's OpenAPI document."""

from __future__ import annotations

import functools
import json
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it, before any judgement."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        """The media type without parameters such as ``charset``."""
        return self.headers.get("content-type", "").split(";")[0].strip()

    def form(self) -> dict[str, list[str]]:
        """The form-encoded body, every field with all its values."""
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True)

    def json(self) -> Any:
        """The JSON body."""
        return json.loads(self.body)


@dataclass(frozen=True)
class Answer:
    """What the fake sends back: status, headers and an optional JSON body."""

    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        """The body as bytes; empty when there is none."""
        return b"" if self.body is None else json.dumps(self.body).encode("utf-8")


# A stalled answer is given up after this long, so a forgotten release cannot hang a run.
STALL_LIMIT_SECONDS = 60.0


@dataclass
class Stall:
    """A request the fake took and acted on, whose answer waits until ``release``."""

    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


class ContractFake:
    """A provider fake on 127.0.0.1: validates, records, answers, or fails on demand."""

    provider = "provider"

    def __init__(self, spec_path: Path) -> None:
        # The document names the real server; requests are judged as if sent there.
        self.spec_server, self._openapi = _load_spec(spec_path)
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self._failures: deque[Answer] = deque()
        self._stalls: deque[Stall] = deque()
        self._every_stall: list[Stall] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            daemon=True,
        )

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``, the only address the fake listens on."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> ContractFake:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        # Closing the server waits for its handler threads, a stalled one included.
        for stall in self._every_stall:
            stall.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def fail_next(self, count: int, answer: Answer) -> None:
        """Answer the next ``count`` valid requests with ``answer`` instead of success."""
        with self._lock:
            self._failures.extend([answer] * count)

    def stall_next(self) -> Stall:
        """Act on the next valid request as usual but hold its answer: a provider that hangs.

        The message is taken (a send is recorded, as a real provider would have) before
        the wait, so a client cut off meanwhile leaves the outcome unknown to its caller.
        """
        stall = Stall()
        with self._lock:
            self._stalls.append(stall)
            self._every_stall.append(stall)
        return stall

    def take_violations(self) -> list[str]:
        """Return and forget the violations, for tests that provoke one on purpose."""
        with self._lock:
            taken, self.violations = self.violations, []
        return taken

    def handle(self, request: RecordedRequest) -> Answer:
        """Record, validate, then answer: a violation gets a 400 and is kept for the test."""
        with self._lock:
            self.requests.append(request)
        problems = self.spec_problems(request) or self.rule_problems(request)
        if problems:
            with self._lock:
                self.violations.extend(
                    f"{request.method} {request.path}: {problem}"
                    for problem in problems
                )
            return self.invalid(problems)
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
        answer = failure or self.refusal(request) or self.accept(request)
        if failure is None and answer.status < 300:
            self._check_own_answer(request, answer)
        with self._lock:
            stall = self._stalls.popleft() if self._stalls else None
        if stall is not None:
            stall.reached.set()
            stall.release.wait(STALL_LIMIT_SECONDS)
        return answer

    def spec_problems(self, request: RecordedRequest) -> list[str]:
        """Every way the request breaks the OpenAPI document: path, method, auth, body."""
        mock = self._mock_request(request)
        return [_describe(error) for error in self._openapi.iter_request_errors(mock)]

    def rule_problems(self, request: RecordedRequest) -> list[str]:
        """Rules the provider enforces that its document cannot express."""
        return []

    def refusal(self, request: RecordedRequest) -> Answer | None:
        """A refusal the provider would give for this valid request, given its state."""
        return None

    def accept(self, request: RecordedRequest) -> Answer:
        """The provider's success answer."""
        raise NotImplementedError

    def invalid(self, problems: list[str]) -> Answer:
        """The provider's 400 for a request that breaks its contract."""
        raise NotImplementedError

    def _mock_request(self, request: RecordedRequest) -> MockRequest:
        return MockRequest(
            self.spec_server,
            request.method.lower(),
            request.path,
            args={key: values[-1] for key, values in request.query.items()},
            headers=dict(request.headers),
            data=request.body,
            content_type=request.content_type,
        )

    def _check_own_answer(self, request: RecordedRequest, answer: Answer) -> None:
        """The fake's own answer must match the document too, or the fake is wrong."""
        response = MockResponse(
            answer.encoded(),
            status_code=answer.status,
            headers=dict(answer.headers),
            content_type="application/json" if answer.body is not None else "",
        )
        mock = self._mock_request(request)
        for error in self._openapi.iter_response_errors(mock, response):
            with self._lock:
                self.violations.append(
                    f"fake answer {answer.status}: {_describe(error)}"
                )


@functools.cache
def _load_spec(spec_path: Path) -> tuple[str, OpenAPI]:
    """Parse each document once per test run; validation never changes it."""
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    return spec["servers"][0]["url"], OpenAPI.from_dict(spec)


def _describe(error: Exception) -> str:
    cause = error.__cause__
    details = getattr(cause, "schema_errors", None)
    if details:
        return f"{error}: " + "; ".join(detail.message for detail in details)
    return f"{error}: {cause}" if cause else str(error)


class _Handler(BaseHTTPRequestHandler):
    """Turns raw HTTP into RecordedRequest and the fake's Answer back into HTTP."""

    def do_GET(self) -> None:
        """Judge a GET like any other request."""
        self._serve()

    def do_POST(self) -> None:
        """Judge a POST like any other request."""
        self._serve()

    def do_PUT(self) -> None:
        """Judge a PUT like any other request."""
        self._serve()

    def do_DELETE(self) -> None:
        """Judge a DELETE like any other request."""
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        url = urlsplit(self.path)
        request = RecordedRequest(
            method=self.command,
            path=url.path,
            query=parse_qs(url.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        )
        answer = self.server.fake.handle(request)  # type: ignore[attr-defined]
        payload = answer.encoded()
        try:
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            if answer.body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # A stalled answer whose client was killed meanwhile: nobody is listening.
            pass

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the recorded requests are the log."""
