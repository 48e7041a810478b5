"""What stands between a client's bytes and BentoML's request parsing: every malformed request
to an API route is a 4xx that says what to send, and client errors are logged in one line.

BentoML (1.4) parses a request by its Content-Type: a multipart form under another field name,
a form without a boundary or with a broken body, a text value where a file belongs, or a URL it
would go and download, each ends in an exception it answers with 500. `RequestGuard`, an ASGI
middleware (`Service.add_asgi_middleware`), checks the shape of each POST to an API route
before BentoML sees it: the body's size (413 before reading more than the limit), its media
type (415), a multipart body that parses, or a JSON object, holding only the input's fields,
each file field a file (400). BentoML then parses the same bytes, replayed. A request to a
path the service has no endpoint for is a 404 naming the endpoints it has (a wrong method on
one of BentoML's own routes, a 405), and every 4xx body is one JSON object,
`{"error": ...}` (BentoML sends its own for an API's `InvalidArgument` as a one-item list).

BentoML also logs every 4xx it raises with a traceback; `ClientErrorLog` turns those records
into one line, so the server log shows tracebacks only for faults of ours.

Sources: the ASGI specification (HTTP connection scope, `http.request` messages), RFC 7578
(multipart/form-data), RFC 9110 sections 15.5.14 (413) and 15.5.16 (415).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"  # where BentoML logs API errors
logger = logging.getLogger(BENTOML_REQUEST_LOGGER)  # client errors go where BentoML's go

JSON_BODY_BYTES = 2**20  # a route taking JSON takes labels and numbers: 1 MiB is plenty
FORM_OVERHEAD_BYTES = 2**20  # part headers and boundaries around an upload


@dataclass(frozen=True)
class Route:
    """What one API route takes: its input fields, those that are files, the largest body."""

    path: str
    fields: tuple[str, ...]
    files: tuple[str, ...]
    max_body_bytes: int

    @property
    def form_note(self) -> str:
        """What a body limit is made of, for an upload route's 413."""
        form = f"{FORM_OVERHEAD_BYTES // 2**20} MiB for the form"
        return f" (serving.max_upload_bytes and {form})" if self.files else ""

    @property
    def how(self) -> str:
        """What to send, as a client would type it."""
        if self.files:
            form = " ".join(f"-F {name}=@FILE" for name in self.files)
            return (
                f"send a multipart/form-data upload with the file in field "
                f"{', '.join(repr(f) for f in self.files)} (curl {form} URL{self.path})"
            )
        return (
            "send the parameters as a JSON object with Content-Type: application/json "
            f"(known: {', '.join(self.fields)})"
        )


def routes_of(service: Any, max_upload_bytes: int) -> dict[str, Route]:
    """The POST routes of a BentoML service (`@bentoml.service` class) and what each takes."""
    found = {}
    for method in service.apis.values():
        spec = method.input_spec
        files = tuple(spec.multipart_fields)
        found[method.route] = Route(
            method.route,
            tuple(spec.model_fields),
            files,
            max_upload_bytes + FORM_OVERHEAD_BYTES if files else JSON_BODY_BYTES,
        )
    return found


class ClientError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def sizes(size: int, limit: int) -> tuple[str, str]:
    """`size` and `limit` in MiB to one decimal, or in bytes where those read the same (a
    16.02 MiB upload is not "16.0 MiB, more than the 16.0 MiB allowed")."""
    if round(size / 2**20, 1) == round(limit / 2**20, 1):
        return f"{size:,} bytes", f"{limit:,} bytes"
    return f"{size / 2**20:.1f} MiB", f"{limit / 2**20:.1f} MiB"


class RequestGuard:
    """ASGI middleware: malformed POSTs to `routes` are answered here with a 4xx (JSON
    `{"error": ...}`); well-formed ones go on to the app with their body replayed."""

    def __init__(
        self, app: ASGIApp, routes: dict[str, Route], answers: tuple[str, ...] = ()
    ) -> None:
        """`answers`: the routes this Bento's model serves, named in a 404 (default: all)."""
        self.app = app
        self.routes = routes
        self.answers = tuple(sorted(answers or routes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        route = self.routes.get(path) if scope["type"] == "http" else None
        if scope["type"] == "http" and route is None:
            # BentoML's own routes (GET /info, /healthz, ...) answer as they are; its plain-text
            # 404 and 405 for a path or method it has not are sent in the one shape.
            await self.app(scope, receive, self._unknown_in_one_shape(scope, send))
            return
        if route is not None and scope.get("method") != "POST":
            message = f"{route.path} takes POST, not {scope.get('method')}: {route.how}"
            logger.info("client error on %s [%s]: 405 %s", path, scope.get("method"), message)
            await _answer(send, 405, message, {"allow": "POST"})
            return
        if route is None:
            await self.app(scope, receive, send)
            return
        try:
            body = await _read_body(scope, receive, route)
            if body is None:
                return  # the client went away
            await _check(scope, body, route)
        except ClientError as err:
            logger.info("client error on %s [POST]: %d %s", route.path, err.status, err)
            await _answer(send, err.status, str(err))
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, _one_error_shape(send))

    def _unknown_in_one_shape(self, scope: Scope, send: Send) -> Send:
        """`send` for a request to a path that is no API route: the app's 404 becomes
        `{"error": "no endpoint ... it answers POST /route"}`, its 405 (a POST to GET /info)
        `{"error": "/info takes GET, not POST"}` with the app's Allow header."""
        path, method = scope.get("path", ""), scope.get("method", "")
        replaced = False

        async def wrapped(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] in (404, 405):
                replaced, status = True, message["status"]
                headers = {k.decode("latin-1").lower(): v for k, v in message.get("headers", [])}
                allow = headers.get("allow", b"GET").decode("latin-1")
                if status == 404:
                    endpoints = ", ".join(f"POST {r}" for r in self.answers)
                    text = f"no endpoint {path} on this service: it answers {endpoints}"
                else:
                    text = f"{path} takes {allow}, not {method}"
                logger.info("client error on %s [%s]: %d %s", path, method, status, text)
                await _answer(send, status, text, {"allow": allow} if status == 405 else None)
                return
            if not replaced:  # the app's own body of a replaced answer is dropped
                await send(message)

        return wrapped


def _one_error_shape(send: Send) -> Send:
    """`send` for an API route's response, where BentoML's 4xx for an exception raised in the
    API (`InvalidArgument`) comes as a list, `[{"error": ...}]`: sent as the object
    `{"error": ...}` that every other 4xx of the service is. Other responses pass as they are."""
    held: list[Message] = []

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
            held.append(message)
            return
        if not held:
            await send(message)
            return
        held.append(message)
        if message.get("more_body", False):
            return
        start, *parts = held
        body = b"".join(part.get("body", b"") for part in parts)
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
            data = data[0]
        readable = _readable(data)
        if readable is not None:
            body = json.dumps(readable).encode()
            start = {
                **start,
                "headers": [
                    (k, str(len(body)).encode() if k.lower() == b"content-length" else v)
                    for k, v in start.get("headers", [])
                ],
            }
        await send(start)
        await send({"type": "http.response.body", "body": body})

    return wrapped


def _readable(data: Any) -> dict[str, Any] | None:
    """A 4xx body as `{"error": ...}` whose sentence names what is wrong, or None when `data`
    is not one BentoML sends. Pydantic's (`{"error": "1 validation error for Input",
    "detail": [...]}`) names each field and its fault (`text: Field required`), keeping
    `detail` for programs."""
    if not isinstance(data, dict) or "error" not in data:
        return None
    detail = data.get("detail")
    if not isinstance(detail, list) or not all(isinstance(d, dict) for d in detail) or not detail:
        return data
    reasons = []
    for item in detail:
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        reasons.append(f"{where}: {item.get('msg', '')}" if where else str(item.get("msg", "")))
    return {**data, "error": "bad request: " + "; ".join(reasons)}


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def _read_body(scope: Scope, receive: Receive, route: Route) -> bytes | None:
    """The whole body, refused with 413 as soon as it is larger than the route takes."""
    declared = _headers(scope).get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ClientError(400, f"Content-Length {declared!r} is not a number of bytes")
        if int(declared) > route.max_body_bytes:
            raise ClientError(
                413,
                "the request is {}; this service takes at most {} on {}{}".format(
                    *sizes(int(declared), route.max_body_bytes), route.path, route.form_note
                ),
            )
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > route.max_body_bytes:
            raise ClientError(
                413,
                f"the request is over {sizes(size, route.max_body_bytes)[1]}; this service "
                f"takes at most that on {route.path}{route.form_note}",
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _media_type(content_type: str) -> tuple[str, dict[str, str]]:
    from email.message import Message as MimeHeader

    header = MimeHeader()
    header["content-type"] = content_type
    params = {k.lower(): v for k, v in header.get_params(failobj=[])[1:]}
    return content_type.split(";")[0].strip().lower(), params


async def _check(scope: Scope, body: bytes, route: Route) -> None:
    content_type = _headers(scope).get("content-type", "")
    media, params = _media_type(content_type)
    if not route.files:
        if media not in ("", "application/json"):
            raise ClientError(415, f"{route.path} takes JSON, not {media}: {route.how}")
        try:
            data = json.loads(body) if body.strip() else None
        except RecursionError:
            # Nested past Python's recursion limit: no route takes more than a flat object,
            # and BentoML's parser, given it, fails the request with a 500.
            raise ClientError(400, f"the JSON is nested too deeply to read: {route.how}") from None
        except ValueError:
            return  # BentoML's parser says what is wrong with it
        if isinstance(data, dict):
            _refuse_unexpected(data, route)
        return
    if not body and not content_type:
        raise ClientError(400, f"the request has no body: {route.how}")
    if media != "multipart/form-data":
        raise ClientError(
            415, f"{route.path} takes an upload, not {media or 'no type'}: {route.how}"
        )
    if not params.get("boundary"):
        raise ClientError(400, f"the multipart/form-data body has no boundary: {route.how}")
    await _check_form(scope, body, route)


def _refuse_unexpected(names: Any, route: Route) -> None:
    """400 for a field the route does not take (a misspelt `speaker` would otherwise be
    dropped without a word, and the request answered as if it had not been sent)."""
    unknown = sorted(set(names) - set(route.fields))
    if unknown:
        raise ClientError(
            400, f"unexpected field {', '.join(repr(n) for n in unknown)}: {route.how}"
        )


async def _check_form(scope: Scope, body: bytes, route: Route) -> None:
    from starlette.datastructures import UploadFile
    from starlette.requests import Request

    async def once() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    request = Request({**scope, "app": None}, once)
    try:
        form = await request.form()
    except Exception as err:  # whatever the parser makes of the client's bytes
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ClientError(
            400, f"the multipart body could not be parsed ({reason}): {route.how}"
        ) from None
    try:
        names = list(form.keys())
        _refuse_unexpected(names, route)
        for name in route.files:
            values = form.getlist(name)
            if not values:
                raise ClientError(400, f"no file in field {name!r}: {route.how}")
            if len(values) > 1:
                raise ClientError(400, f"{len(values)} files in field {name!r}; send one")
            if not isinstance(values[0], UploadFile):
                raise ClientError(400, f"field {name!r} holds text, not a file: {route.how}")
        for name in set(names) - set(route.files):
            if any(isinstance(v, UploadFile) for v in form.getlist(name)):
                raise ClientError(400, f"field {name!r} takes a value, not a file")
    finally:
        await form.close()


async def _answer(
    send: Send, status: int, message: str, headers: dict[str, str] | None = None
) -> None:
    data = json.dumps({"error": message}).encode()
    extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


# --- the server log ----------------------------------------------------------------------------


def client_status(error: BaseException | None) -> int | None:
    """The 4xx BentoML answers a request's fault with: a validation error (400) or a BentoML
    exception with a 4xx code (ours: InvalidArgument, TooLarge); None for anything else."""
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        return 400
    if isinstance(error, BentoMLException) and int(error.error_code) < 500:
        return int(error.error_code)
    return None


class ClientErrorLog(logging.Filter):
    """Turns BentoML's "Exception on /route [POST]" record with a traceback into one INFO line
    with the reason, when the exception is the client's; our own faults keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        status = client_status(error)
        if status is not None:
            where = record.getMessage().removeprefix("Exception ")  # "on /vocode [POST]"
            record.msg, record.args = (
                "client error %s: %d %s",
                (where, status, " ".join(str(error).split())),
            )
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_client_errors() -> None:
    """Install `ClientErrorLog` on BentoML's request logger (once per process)."""
    target = logging.getLogger(BENTOML_REQUEST_LOGGER)
    if not any(isinstance(f, ClientErrorLog) for f in target.filters):
        target.addFilter(ClientErrorLog())
