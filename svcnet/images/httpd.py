"""A small HTTP/1.1 server and client on asyncio streams, shaped like Go's net/http.

Server. `HTTPServer(handler)` serves each accepted connection in its own task: read a request
(request line, headers up to 1 MiB, a Content-Length or chunked body, `Expect: 100-continue`
answered), await `handler(request) -> Response`, write the response, and loop while the
connection is keep-alive (HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
`Connection: keep-alive`). Responses carry what Go's server adds: `Date`, `Content-Length`
(none for 1xx/204/304), a sniffed `Content-Type` for non-empty bodies, `Connection: close`
when the connection ends. Malformed requests get Go's bare `400 Bad Request` and a close.
A handler raises `Abort` to drop the connection without answering (Go's recovered panic).
`shutdown(timeout)` is `http.Server.Shutdown`: stop accepting, close idle connections, let
busy ones finish their request, give up after `timeout`.

Helpers build Go's canned responses: `http_error` (`http.Error`), `redirect` (`http.Redirect`,
including the relative-location rules and the `<a href>` body), and `clean_path` for ServeMux's
301 to the cleaned path.

Client. `http_get(url, timeout)` is `http.Client{Timeout}.Get` then `io.ReadAll`: a fresh
connection per call, redirects followed (up to 10), the body returned whatever the status, and
failures raised as `DialError` with Go's wording (`Get "URL": dial tcp ADDR: connect: connection
refused`), which agnhost copies into its JSON.
"""

from __future__ import annotations

import asyncio
import posixpath
import re
import time
from http import HTTPStatus
from urllib.parse import parse_qsl, quote, unquote, urljoin, urlsplit

from .base import go_hostport, log, syscall_text

MAX_HEADER_BYTES = 1 << 20
MAX_BODY_BYTES = 64 << 20
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class Abort(Exception):
    """Close the connection without a response."""


class BadRequest(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


class DialError(Exception):
    """A client failure; str() is Go's error text."""


def canonical_key(name: str) -> str:
    """textproto.CanonicalMIMEHeaderKey: "x-forwarded-for" -> "X-Forwarded-For"."""
    if not _TOKEN.fullmatch(name):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


class Request:
    def __init__(self, method: str, target: str, headers: list[tuple[str, str]] | None = None,
                 body: bytes = b"", remote_addr: str = "", proto: str = "HTTP/1.1"):
        self.method = method
        self.target = target
        self.proto = proto
        self.headers = headers or []
        self.body = body
        self.remote_addr = remote_addr
        if target.startswith(("http://", "https://")):
            parts = urlsplit(target)
            raw_path, self.raw_query = parts.path or "/", parts.query
        else:
            raw_path, _, self.raw_query = target.partition("?")
        if "%" in raw_path and re.search(r"%(?![0-9A-Fa-f]{2})", raw_path):
            raise ValueError(f"invalid URL escape in {raw_path!r}")
        self.path = unquote(raw_path, errors="surrogateescape")

    def header(self, name: str) -> str:
        """http.Header.Get: the first value, "" when absent."""
        key = canonical_key(name)
        return next((v for k, v in self.headers if k == key), "")

    def header_map(self) -> dict[str, list[str]]:
        """r.Header as Go holds it (canonical keys; Host is not in it)."""
        result: dict[str, list[str]] = {}
        for k, v in self.headers:
            if k != "Host":
                result.setdefault(k, []).append(v)
        return result

    def query(self, key: str) -> str:
        """r.URL.Query().Get(key)."""
        return _first(self.raw_query, key)

    def form_value(self, key: str) -> str:
        """r.FormValue(key): an urlencoded POST/PUT/PATCH body first, then the query."""
        ctype = self.header("Content-Type").split(";")[0].strip().lower()
        if self.method in ("POST", "PUT", "PATCH") and ctype == "application/x-www-form-urlencoded":
            text = self.body.decode("utf-8", "surrogateescape")
            if any(k == key for k, _ in parse_qsl(text, keep_blank_values=True)):
                return _first(text, key)
        return self.query(key)


def _first(query: str, key: str) -> str:
    for k, v in parse_qsl(query, keep_blank_values=True, errors="surrogateescape"):
        if k == key:
            return v
    return ""


class Response:
    def __init__(self, status: int = 200, body: bytes | str = b"",
                 headers: dict[str, str] | None = None, close: bool = False,
                 informational: int | None = None):
        self.status = status
        self.body = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else body
        self.headers = headers or {}
        self.close = close
        self.informational = informational


def status_text(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return ""


def http_error(message: str, code: int) -> Response:
    return Response(code, message + "\n", {"Content-Type": "text/plain; charset=utf-8",
                                           "X-Content-Type-Options": "nosniff"})


def clean_path(path: str) -> str:
    """ServeMux's cleanPath: rooted, no `.`/`..`/`//`, trailing slash kept."""
    if not path.startswith("/"):
        path = "/" + path
    cleaned = posixpath.normpath(re.sub("/+", "/", path))
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


def redirect(request: Request, location: str, code: int) -> Response:
    """http.Redirect."""
    parts = urlsplit(location)
    if not parts.scheme and not parts.netloc:
        if not location.startswith("/"):
            location = posixpath.dirname(request.path or "/").rstrip("/") + "/" + location
        location, mark, query = location.partition("?")
        cleaned = posixpath.normpath(re.sub("/+", "/", location)) if location else "/"
        if location.endswith("/") and not cleaned.endswith("/"):
            cleaned += "/"
        location = cleaned + mark + query
    location = "".join(c if ord(c) < 0x80 else quote(c) for c in location)
    headers = {"Location": location}
    body = ""
    if request.method in ("GET", "HEAD"):
        headers["Content-Type"] = "text/html; charset=utf-8"
    if request.method == "GET":
        body = f'<a href="{_html_escape(location)}">{status_text(code)}</a>.\n\n'
    return Response(code, body, headers)


def _html_escape(text: str) -> str:
    for old, new in (("&", "&amp;"), ("'", "&#39;"), ("<", "&lt;"), (">", "&gt;"),
                     ('"', "&#34;")):
        text = text.replace(old, new)
    return text


_HTML_PREFIXES = (b"<!DOCTYPE HTML", b"<HTML", b"<HEAD", b"<SCRIPT", b"<IFRAME", b"<H1", b"<DIV",
                  b"<FONT", b"<TABLE", b"<A", b"<STYLE", b"<TITLE", b"<B", b"<BODY", b"<BR",
                  b"<P", b"<!--")
_BINARY = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")


def sniff(body: bytes) -> str:
    """The text part of http.DetectContentType."""
    head = body[:512].lstrip(b"\t\n\x0c\r ")
    upper = head.upper()
    for prefix in _HTML_PREFIXES:
        if upper.startswith(prefix) and upper[len(prefix):len(prefix) + 1] in (b" ", b">"):
            return "text/html; charset=utf-8"
    if head.startswith(b"<?xml"):
        return "text/xml; charset=utf-8"
    if _BINARY.search(body[:512]):
        return "application/octet-stream"
    return "text/plain; charset=utf-8"


def http_date() -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())


class HTTPServer:
    def __init__(self, handler):
        self._handler = handler
        self._servers: list[asyncio.AbstractServer] = []
        self._idle: dict[asyncio.StreamWriter, bool] = {}
        self.closing = False

    async def listen(self, sock, ssl_context=None) -> None:
        self._servers.append(await asyncio.start_server(
            self._serve_connection, sock=sock, ssl=ssl_context, limit=MAX_HEADER_BYTES))

    async def shutdown(self, timeout: float) -> str:
        """Go's Server.Shutdown; returns its error text ("<nil>" when every connection closed)."""
        self.closing = True
        for server in self._servers:
            server.close()
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for writer, idle in list(self._idle.items()):
                if idle:
                    writer.close()
            if not self._idle:
                return "<nil>"
            if asyncio.get_running_loop().time() >= deadline:
                return "context deadline exceeded"
            await asyncio.sleep(0.01)

    async def _serve_connection(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        self._idle[writer] = True
        remote = go_hostport(writer.get_extra_info("peername"))
        try:
            while not self.closing:
                self._idle[writer] = True
                try:
                    request = await self._read_request(reader, writer, remote)
                except BadRequest as e:
                    text = f"{e.status} {status_text(e.status)}"
                    writer.write(f"HTTP/1.1 {text}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                 f"Connection: close\r\n\r\n{text}".encode())
                    await writer.drain()
                    break
                if request is None:
                    break
                self._idle[writer] = False
                response = await self._handler(request)
                keep = self._keep_alive(request) and not response.close and not self.closing
                writer.write(self._render(request, response, keep))
                await writer.drain()
                if not keep:
                    break
        except (Abort, ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except Exception as e:  # Go's server recovers a panicking handler the same way
            log(f"http: panic serving {remote}: {e!r}")
        finally:
            self._idle.pop(writer, None)
            writer.close()

    async def _read_request(self, reader, writer, remote) -> Request | None:
        line = await _read_line(reader)
        while line in (b"\r\n", b"\n"):
            line = await _read_line(reader)
        if not line.endswith(b"\n"):
            return None
        size = len(line)
        parts = line.rstrip(b"\r\n").decode("latin-1").split(" ")
        if len(parts) != 3:
            raise BadRequest(400, "malformed request line")
        method, target, proto = parts
        match = re.fullmatch(r"HTTP/(\d)\.(\d)", proto)
        if not match or not _TOKEN.fullmatch(method):
            raise BadRequest(400, "malformed request line")
        if match.group(1) != "1":
            raise BadRequest(505, "unsupported protocol version")
        if not target.startswith(("/", "http://", "https://")):
            raise BadRequest(400, "invalid request target")
        headers: list[tuple[str, str]] = []
        while True:
            line = await _read_line(reader)
            size += len(line)
            if size > MAX_HEADER_BYTES:
                raise BadRequest(431, "headers too large")
            if not line.endswith(b"\n"):
                return None
            line = line.rstrip(b"\r\n")
            if not line:
                break
            text = line.decode("utf-8", "surrogateescape")
            if text[0] in " \t":
                if not headers:
                    raise BadRequest(400, "continuation without header")
                headers[-1] = (headers[-1][0], headers[-1][1] + " " + text.strip(" \t"))
                continue
            name, colon, value = text.partition(":")
            if not colon or not _TOKEN.fullmatch(name):
                raise BadRequest(400, "malformed header line")
            headers.append((canonical_key(name), value.strip(" \t")))
        hosts = [v for k, v in headers if k == "Host"]
        if len(hosts) > 1 or (proto == "HTTP/1.1" and not hosts):
            raise BadRequest(400, "missing or repeated Host header")
        try:
            request = Request(method, target, headers, remote_addr=remote, proto=proto)
        except ValueError:
            raise BadRequest(400, "invalid URL") from None
        request.body = await self._read_body(request, reader, writer)
        return request

    @staticmethod
    async def _read_body(request: Request, reader, writer) -> bytes:
        chunked = request.header("Transfer-Encoding")
        length = request.header("Content-Length")
        if not chunked and not length:
            return b""
        if chunked and chunked.lower() != "chunked":
            raise BadRequest(501, "unsupported transfer encoding")
        if not chunked and not length.isdigit():
            raise BadRequest(400, "bad Content-Length")
        expect = request.header("Expect")
        if expect:
            if expect.lower() != "100-continue":
                raise BadRequest(417, "unsupported Expect")
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if not chunked:
            if int(length) > MAX_BODY_BYTES:
                raise BadRequest(413, "body too large")
            return await reader.readexactly(int(length))
        body = bytearray()
        while True:
            size_line = (await _read_line(reader)).split(b";")[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise BadRequest(400, "bad chunk size") from None
            if size == 0:
                while (await _read_line(reader)).strip():
                    pass            # trailers
                return bytes(body)
            if len(body) + size > MAX_BODY_BYTES:
                raise BadRequest(413, "body too large")
            body += await reader.readexactly(size)
            await reader.readexactly(2)

    @staticmethod
    def _keep_alive(request: Request) -> bool:
        tokens = {t.strip().lower() for k, v in request.headers if k == "Connection"
                  for t in v.split(",")}
        if request.proto == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens

    @staticmethod
    def _render(request: Request, response: Response, keep: bool) -> bytes:
        status = response.status
        headers = dict(response.headers)
        body = response.body
        if 100 <= status < 200 or status in (204, 304):
            body = b""
        else:
            if body and "Content-Type" not in headers:
                headers["Content-Type"] = sniff(body)
            headers["Content-Length"] = str(len(body))
        headers["Date"] = http_date()
        if not keep:
            headers["Connection"] = "close"
        elif request.proto == "HTTP/1.0":
            headers["Connection"] = "keep-alive"
        head = ""
        if response.informational:
            code = response.informational
            head = f"HTTP/1.1 {code} {status_text(code) or f'status code {code}'}\r\n\r\n"
        head += f"HTTP/1.1 {status:03d} {status_text(status) or f'status code {status}'}\r\n"
        for name in sorted(headers):
            value = headers[name].replace("\r", " ").replace("\n", " ")
            head += f"{name}: {value}\r\n"
        data = (head + "\r\n").encode("utf-8", "surrogateescape")
        return data if request.method == "HEAD" else data + body


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readline()
    except ValueError:          # longer than the stream limit
        raise BadRequest(431, "line too long") from None


async def http_get(url: str, timeout: float) -> str:
    """http.Client{Timeout: timeout}.Get(url) and io.ReadAll of the body, as text."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for _ in range(10):
        status, headers, body = await _fetch(url, deadline)
        location = headers.get("location")
        if status not in (301, 302, 303, 307, 308) or location is None:
            return body.decode("utf-8", "replace")
        url = urljoin(url, location)
    raise DialError(f'Get "{url}": stopped after 10 redirects')


async def _fetch(url: str, deadline: float) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise DialError(f'Get "{url}": unsupported protocol scheme "{parts.scheme}"')
    host, port = parts.hostname or "localhost", parts.port or 80
    target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=~")
    if parts.query:
        target += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=~?")
    stage, writer = "headers", None
    try:
        async with asyncio.timeout_at(deadline):
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError as e:
                raise DialError(f'Get "{url}": dial tcp {_join(host, port)}: '
                                f'connect: {syscall_text(e)}') from None
            request = (f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                       "User-Agent: Go-http-client/1.1\r\n\r\n")
            writer.write(request.encode("utf-8", "surrogateescape"))
            status, headers = await _read_response_head(reader, url)
            stage = "body"
            if "chunked" in headers.get("transfer-encoding", "").lower():
                body = await _read_chunked(reader)
            elif "content-length" in headers:
                body = await reader.readexactly(int(headers["content-length"]))
            else:
                body = await reader.read()
            return status, headers, body
    except TimeoutError:
        if stage == "headers":
            raise DialError(f'Get "{url}": context deadline exceeded '
                            "(Client.Timeout exceeded while awaiting headers)") from None
        raise DialError("context deadline exceeded "
                        "(Client.Timeout or context cancellation while reading body)") from None
    except asyncio.IncompleteReadError:
        raise DialError(f'Get "{url}": EOF' if stage == "headers" else "unexpected EOF") from None
    except OSError as e:
        ends = (f"{go_hostport(writer.get_extra_info('sockname'))}->"
                f"{go_hostport(writer.get_extra_info('peername'))}")
        raise DialError(f'Get "{url}": read tcp {ends}: read: {syscall_text(e)}') from None
    except (ValueError, asyncio.LimitOverrunError):
        raise DialError(f'Get "{url}": net/http: HTTP/1.x transport connection broken: '
                        "malformed HTTP response") from None
    finally:
        if writer is not None:
            writer.close()


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _read_response_head(reader: asyncio.StreamReader, url: str):
    while True:
        line = await reader.readuntil(b"\n")
        match = re.match(rb"HTTP/1\.\d (\d{3})", line)
        if not match:
            raise DialError(f'Get "{url}": net/http: HTTP/1.x transport connection broken: '
                            f'malformed HTTP response {line.strip().decode("latin-1")!r}')
        headers: dict[str, str] = {}
        while (line := (await reader.readuntil(b"\n")).rstrip(b"\r\n")):
            name, _, value = line.decode("latin-1").partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
        status = int(match.group(1))
        if not 100 <= status < 200 or status == 101:
            return status, headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\n")).split(b";")[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\n")).strip():
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)
