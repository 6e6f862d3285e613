# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one HTTP client of this collection: every module that talks to an API goes through it.

It owns timeouts (connect and read apart, reads bounded per chunk so long streams work), bounded
retries with exponential backoff on connection errors only (a request that may have reached the
server is never sent twice), TLS settings, authentication, and the translation of every failure
into an ``ApiError`` whose text names the request, the status and the server's own error message.
"""

from __future__ import annotations

import json
import ssl
import time
import traceback

try:
    import httpx
except ImportError:
    httpx = None
    HTTPX_IMPORT_ERROR = traceback.format_exc()
else:
    HTTPX_IMPORT_ERROR = None

HAS_HTTPX = httpx is not None

EXCERPT_CHARS = 200
USER_AGENT = "namtech.internal_ai"
# A socket takes neither NaN nor more than about 9.2e9 seconds; a day is far more than any wait here needs.
MAX_TIMEOUT_SECONDS = 86400


class ApiError(Exception):
    """An API call failed. ``str(error)`` is a sentence an operator can act on."""

    def __init__(self, message, url=None, status=None, server_error=None):
        super().__init__(message)
        self.url = url
        self.status = status
        self.server_error = server_error

    def details(self):
        """The fields a module adds to its ``fail_json`` result."""
        return {"request_url": self.url, "status": self.status, "server_error": self.server_error}


class ConnectionFailed(ApiError):
    """The server could not be reached, or the connection dropped before a whole answer arrived."""


class RequestTimeout(ApiError):
    """The server accepted the request but did not answer within the read timeout."""


class HttpStatusError(ApiError):
    """The server answered with a status the caller did not expect."""


class MalformedResponse(ApiError):
    """The server answered, but not with what the API promises (not JSON, truncated, wrong shape)."""


class StreamError(ApiError):
    """The server reported an error in the middle of a stream it had started with 200."""


def excerpt(text, limit=EXCERPT_CHARS):
    """The start of a body, on one line, for an error message."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


def require_field(container, key, kinds, where):
    """``container[key]`` if it has one of ``kinds``, else a MalformedResponse naming the field."""
    if not isinstance(container, dict):
        raise MalformedResponse("%s: expected a JSON object, got %s" % (where, type(container).__name__))
    if key not in container:
        raise MalformedResponse("%s: the answer has no '%s' field" % (where, key))
    value = container[key]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in _as_tuple(kinds)):
        raise MalformedResponse("%s: field '%s' should be %s, got %r" % (where, key, _kind_names(kinds), value))
    return value


def _as_tuple(kinds):
    return kinds if isinstance(kinds, tuple) else (kinds,)


def _kind_names(kinds):
    return " or ".join(kind.__name__ for kind in _as_tuple(kinds))


def drop_none(**fields):
    """A JSON body without the optional fields the caller left unset."""
    return dict((key, value) for key, value in fields.items() if value is not None)


def join_url(base_url, path):
    """``base_url`` may carry a path prefix (a reverse proxy); ``path`` is relative to it."""
    if not path:
        return base_url
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def timeout_problem(name, value):
    """Why ``value`` cannot be the timeout ``name`` in seconds, or None when it can."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:  # not >: NaN too
        return "%s must be a positive number of seconds (got %s)" % (name, value)
    if value > MAX_TIMEOUT_SECONDS:
        return "%s must be at most %d seconds (got %s)" % (name, MAX_TIMEOUT_SECONDS, value)
    return None


def validate_base_url(base_url):
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ApiError(
            "url must start with http:// or https:// (got %r), for example http://10.0.0.5:11434" % (base_url,)
        )
    host = base_url.split("://", 1)[1].split("/", 1)[0]
    if not host or host.startswith(":"):
        raise ApiError("url %r has no host name; give it as http(s)://HOST[:PORT][/PREFIX]" % (base_url,))
    try:
        # httpx checks the port and the characters; a host name that IDNA cannot encode (a label over 63
        # characters) would only fail when connecting, with a UnicodeError that httpx does not translate.
        httpx.URL(base_url).host.encode("idna")
    except (httpx.InvalidURL, UnicodeError) as exc:
        raise ApiError("url %r is not a valid URL (%s); give it as http(s)://HOST[:PORT][/PREFIX]"
                       % (base_url, exc)) from None


def check_utf8(text, what):
    """Text that came from bytes that were not UTF-8 (surrogate escapes) cannot be sent."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError("%s must be valid UTF-8 text" % what) from None


def check_header_value(value, what):
    """httpx sends header values as ASCII: anything else would raise UnicodeEncodeError, a line break split them."""
    if not (value.isascii() and value.isprintable()):
        raise ApiError("%s must be printable ASCII characters: an HTTP header cannot carry others" % what)


def server_error_message(payload):
    """The error text from the JSON error shapes of Ollama, OpenAI-compatible servers and registries."""
    if not isinstance(payload, dict):
        return None
    error, errors, detail = payload.get("error"), payload.get("errors"), payload.get("detail")
    candidates = [
        error if isinstance(error, str) else None,
        error.get("message") if isinstance(error, dict) else None,
        payload.get("message") if payload.get("object") == "error" else None,
        "; ".join(str(item.get("message") or item.get("code")) for item in errors if isinstance(item, dict))
        if isinstance(errors, list) else None,
        detail if isinstance(detail, str) else None,
    ]
    return next((str(candidate) for candidate in candidates if candidate), None)


def error_from_body(text):
    try:
        return server_error_message(json.loads(text))
    except ValueError:
        return None


def decode_json_text(text, request_line, content_type=""):
    """Parse a JSON body, or raise a MalformedResponse that says what came back instead."""
    try:
        return json.loads(text)
    except ValueError as exc:
        if not text.strip():
            problem = "an empty body where JSON was expected"
        elif text.lstrip().startswith("<"):
            problem = "HTML (content-type %s) where JSON was expected: '%s'. Check that the URL points at " \
                      "the engine's API and not at a web page, proxy or login form" % (content_type or "unknown",
                                                                                       excerpt(text))
        elif getattr(exc, "pos", 0) >= len(text.rstrip()):
            problem = "JSON that ends before it is complete (%d characters received): '%s'" % (len(text), excerpt(text))
        else:
            problem = "a body that is not valid JSON (%s): '%s'" % (exc, excerpt(text))
        raise MalformedResponse("%s returned %s" % (request_line, problem)) from None


def tls_context(validate_certs, ca_path, client_cert, client_key):
    """The ``verify`` value httpx takes: an SSLContext whenever a CA or a client certificate is involved."""
    if validate_certs and not ca_path and not client_cert:
        return True
    try:
        context = ssl.create_default_context(cafile=ca_path if validate_certs else None)
        if not validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if client_cert:
            context.load_cert_chain(client_cert, client_key)
    except (OSError, ssl.SSLError, ValueError) as exc:  # ValueError: a NUL byte in a path
        raise ApiError(
            "cannot load the TLS files (ca_path=%s, client_cert=%s, client_key=%s): %s"
            % (ca_path, client_cert, client_key, exc)
        ) from None
    return context


def is_certificate_error(exc):
    cause = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


class HttpClient:
    """A client bound to one base URL. Use it as a context manager so its connections are closed."""

    def __init__(self, base_url, *, connect_timeout=5.0, read_timeout=30.0, retries=2, backoff=0.5,
                 validate_certs=True, ca_path=None, client_cert=None, client_key=None,
                 token=None, username=None, password=None, use_proxy=True, headers=None, sleep=time.sleep):
        if not HAS_HTTPX:
            raise ApiError("the Python library httpx is required on the host that runs this module")
        validate_base_url(base_url)
        if retries < 0:
            raise ApiError("retries must be 0 or more (got %d)" % retries)
        for name, value in (("connect_timeout", connect_timeout), ("timeout", read_timeout)):
            if timeout_problem(name, value):
                raise ApiError(timeout_problem(name, value))
        self.base_url = base_url
        self.retries = retries
        self.backoff = backoff
        self.read_timeout = read_timeout
        self.connect_timeout = connect_timeout
        self._sleep = sleep
        if username:
            check_utf8(username, "url_username")
            check_utf8(password or "", "url_password")
        self._client = httpx.Client(
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            verify=tls_context(validate_certs, ca_path, client_cert, client_key),
            headers=self._headers(token, headers),
            auth=(username, password or "") if username else None,
            trust_env=use_proxy,
            follow_redirects=False,
        )

    @staticmethod
    def _headers(token, extra):
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if token:
            check_header_value(token, "api_token")
            headers["Authorization"] = "Bearer %s" % token
        for name, value in (extra or {}).items():
            check_header_value(value, "the value of the %s header" % name)
            headers[name] = value
        return headers

    def close(self):
        self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def url_for(self, path):
        return join_url(self.base_url, path)

    # -- sending -------------------------------------------------------------------------------

    def _build_request(self, method, url, **parts):
        try:
            return self._client.build_request(method, url, **parts)
        except (httpx.InvalidURL, ValueError) as exc:  # a URL too long, NaN or text that is not UTF-8 in the body
            raise ApiError("%s %s: cannot make the request (%s)" % (method, url, exc), url=url) from None

    def _send(self, method, path, json_body=None, params=None, stream=False):
        url = self.url_for(path)
        request = self._build_request(method, url, json=json_body, params=params)
        attempt = 1
        while True:
            try:
                return self._client.send(request, stream=stream)
            except httpx.ConnectError as exc:
                if is_certificate_error(exc):
                    raise ConnectionFailed(
                        "%s %s: the server's TLS certificate is not trusted (%s). Set ca_path to the CA that "
                        "signed it, or validate_certs=false for a lab" % (method, url, exc), url=url
                    ) from None
                self._give_up_or_wait(method, url, attempt, exc)
            except httpx.ConnectTimeout as exc:
                self._give_up_or_wait(method, url, attempt, exc)
            except httpx.TimeoutException:
                raise RequestTimeout(
                    "%s %s: no answer within the read timeout of %ss. The server accepted the request but did "
                    "not reply: check that it is not hung or overloaded, or raise the timeout"
                    % (method, url, self.read_timeout), url=url
                ) from None
            except httpx.TransportError as exc:
                raise ConnectionFailed(
                    "%s %s: the connection closed before a complete answer arrived (%s). The request may have "
                    "reached the server, so it was not retried" % (method, url, exc or type(exc).__name__), url=url
                ) from None
            attempt += 1

    def _give_up_or_wait(self, method, url, attempt, exc):
        """Connection errors mean the request never reached the server, so retrying is safe."""
        if attempt > self.retries:
            raise ConnectionFailed(
                "%s %s: cannot connect (%s) after %d attempt%s. Check that the service runs and listens on this "
                "address and that no firewall blocks it"
                % (method, url, exc or type(exc).__name__, attempt, "" if attempt == 1 else "s"), url=url
            ) from None
        self._sleep(self.backoff * 2 ** (attempt - 1))

    @staticmethod
    def _request_line(response):
        return "%s %s" % (response.request.method, response.request.url)

    def _raise_for_status(self, response, expected):
        if response.status_code in expected:
            return
        if not response.is_closed:
            response.read()
        text = response.text
        server_error = error_from_body(text)
        detail = server_error if server_error else excerpt(text) or "empty body"
        raise HttpStatusError(
            "%s returned HTTP %d: %s" % (self._request_line(response), response.status_code, detail),
            url=str(response.request.url), status=response.status_code, server_error=server_error,
        )

    # -- public calls ---------------------------------------------------------------------------

    def request(self, method, path, json_body=None, params=None, expected=(200,)):
        """Send a request and return the httpx response after checking its status."""
        response = self._send(method, path, json_body=json_body, params=params)
        self._raise_for_status(response, expected)
        return response

    def request_json(self, method, path, json_body=None, params=None, expected=(200,)):
        response = self.request(method, path, json_body=json_body, params=params, expected=expected)
        return decode_json_text(response.text, self._request_line(response), response.headers.get("content-type"))

    def get_json(self, path, params=None):
        return self.request_json("GET", path, params=params)

    def post_json(self, path, json_body):
        return self.request_json("POST", path, json_body=json_body)

    def get_text(self, path, expected=(200,)):
        return self.request("GET", path, expected=expected).text

    def stream_lines(self, method, path, json_body=None):
        """Yield the non-empty lines of a streamed answer; transport failures become ApiErrors."""
        response = self._send(method, path, json_body=json_body, stream=True)
        request_line = self._request_line(response)
        lines = 0
        try:
            self._raise_for_status(response, (200,))
            for line in response.iter_lines():
                if line.strip():
                    lines += 1
                    yield line
        except httpx.TimeoutException:
            raise RequestTimeout(
                "%s: no data for %ss in the middle of the stream after %d lines; the server may be hung"
                % (request_line, self.read_timeout, lines), url=str(response.request.url)
            ) from None
        except httpx.TransportError as exc:
            raise ConnectionFailed(
                "%s: the connection closed in the middle of the stream after %d lines (%s); the server may have "
                "crashed or restarted" % (request_line, lines, exc or type(exc).__name__),
                url=str(response.request.url),
            ) from None
        finally:
            response.close()

    def stream_ndjson(self, method, path, json_body=None):
        """Yield the JSON objects of a newline-delimited JSON stream (Ollama's streaming format).

        An ``{"error": ...}`` object in the stream means the server failed after it had answered 200.
        """
        request_line = "%s %s" % (method, self.url_for(path))
        for count, line in enumerate(self.stream_lines(method, path, json_body=json_body)):
            event = decode_json_text(line, request_line + " (stream line %d)" % (count + 1))
            if not isinstance(event, dict):
                raise MalformedResponse("%s sent a stream line that is not a JSON object: '%s'"
                                        % (request_line, excerpt(line)))
            if "error" in event:
                raise StreamError("%s failed in the middle of the stream after %d events: %s"
                                  % (request_line, count, server_error_message(event)),
                                  url=self.url_for(path), server_error=server_error_message(event))
            yield event

    def stream_sse(self, method, path, json_body=None):
        """Yield the JSON ``data:`` payloads of a server-sent event stream up to ``data: [DONE]``."""
        request_line = "%s %s" % (method, self.url_for(path))
        events = 0
        for line in self.stream_lines(method, path, json_body=json_body):
            if not line.startswith("data:"):
                continue
            data = line[len("data:"):].strip()
            if data == "[DONE]":
                return
            event = decode_json_text(data, request_line + " (event %d)" % (events + 1))
            message = server_error_message(event)
            if message and "choices" not in event:
                raise StreamError("%s failed in the middle of the stream after %d events: %s"
                                  % (request_line, events, message), url=self.url_for(path), server_error=message)
            events += 1
            yield event
        raise MalformedResponse("%s: the event stream ended after %d events without 'data: [DONE]'; the answer is "
                                "incomplete" % (request_line, events))
