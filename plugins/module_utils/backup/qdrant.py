# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Qdrant's snapshot API over the collection's HTTP client: create, download, delete, upload and recover.

Every answer is ``{"result": ..., "status": "ok", "time": ...}``; snapshot descriptions carry ``name``,
``creation_time``, ``size`` and ``checksum`` (sha256 hex).
"""

from __future__ import annotations

from urllib.parse import quote

from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.common import CHUNK_SIZE
from ansible_collections.namtech.internal_ai.plugins.module_utils.http import (
    ApiError,
    ConnectionFailed,
    HttpClient,
    MalformedResponse,
    RequestTimeout,
    check_utf8,
    decode_json_text,
    httpx,
    require_field,
)

PRIORITIES = ("no_sync", "snapshot", "replica")


class StreamingHttpClient(HttpClient):
    """The collection's HTTP client plus a streamed download and a streamed multipart upload."""

    def download(self, path, sink):
        """Write the body of ``GET path`` to ``sink`` chunk by chunk; the number of bytes."""
        response = self._send("GET", path, stream=True)
        request_line = self._request_line(response)
        written = 0
        try:
            self._raise_for_status(response, (200,))
            for chunk in response.iter_bytes(CHUNK_SIZE):
                sink.write(chunk)
                written += len(chunk)
        except httpx.TimeoutException:
            raise RequestTimeout("%s: no data for %ss after %d bytes; the server may be hung"
                                 % (request_line, self.read_timeout, written), url=str(response.request.url)) from None
        except httpx.TransportError as exc:
            raise ConnectionFailed("%s: the connection closed after %d bytes (%s)" % (request_line, written, exc),
                                   url=str(response.request.url)) from None
        finally:
            response.close()
        return written

    def upload(self, path, field, filename, fileobj, params=None):
        """``POST path`` with ``fileobj`` as a multipart form field (read in chunks); the JSON answer."""
        url = self.url_for(path)
        request = self._build_request("POST", url, params=params,
                                      files={field: (filename, fileobj, "application/octet-stream")})
        try:
            response = self._client.send(request)
        except httpx.TimeoutException:
            raise RequestTimeout("POST %s: no answer within %ss after the upload" % (url, self.read_timeout),
                                 url=url) from None
        except httpx.TransportError as exc:
            raise ConnectionFailed("POST %s: the upload failed (%s). Check that the service runs and listens on "
                                   "this address" % (url, exc or type(exc).__name__), url=url) from None
        self._raise_for_status(response, (200,))
        return decode_json_text(response.text, self._request_line(response), response.headers.get("content-type"))


def qdrant_http(url, *, api_key=None, timeout=300.0, connect_timeout=10.0, validate_certs=True, ca_path=None,
                retries=2):
    headers = {"api-key": api_key} if api_key else None
    return StreamingHttpClient(url, read_timeout=timeout, connect_timeout=connect_timeout, retries=retries,
                               validate_certs=validate_certs, ca_path=ca_path, headers=headers)


def _segment(name):
    # quote() leaves dots alone, and a URL resolves "." and ".." segments: /collections/../snapshots is the
    # full-storage snapshot, /collections/docs/snapshots/.. the collection itself.
    if name in ("", ".", ".."):
        raise ApiError("%r cannot be a Qdrant collection or snapshot name: in a URL it would mean another path"
                       % (name,))
    check_utf8(name, "Qdrant collection or snapshot name %r" % (name,))
    return quote(name, safe="")


def _snapshots_path(collection):
    return "/collections/%s/snapshots" % _segment(collection) if collection else "/snapshots"


class QdrantClient:
    """Qdrant's REST API; a ``collection`` of None means the full (storage) snapshot endpoints."""

    def __init__(self, http):
        self.http = http

    def _result(self, answer, path):
        return require_field(answer, "result", (dict, list, bool), "Qdrant %s" % self.http.url_for(path))

    def version(self):
        answer = self.http.get_json("/")
        return answer.get("version") if isinstance(answer, dict) else None

    def collections(self):
        result = self._result(self.http.get_json("/collections"), "/collections")
        entries = require_field(result, "collections", list, "Qdrant %s" % self.http.url_for("/collections"))
        return [entry.get("name") for entry in entries if isinstance(entry, dict)]

    def create_snapshot(self, collection=None):
        path = _snapshots_path(collection)
        result = self._result(self.http.request_json("POST", path, params={"wait": "true"}), path)
        where = "Qdrant POST %s" % self.http.url_for(path)
        if not isinstance(result, dict):
            raise MalformedResponse("%s: expected a snapshot description, got %r" % (where, result))
        require_field(result, "name", str, where)
        return result

    def download_snapshot(self, collection, name, sink):
        return self.http.download("%s/%s" % (_snapshots_path(collection), _segment(name)), sink)

    def delete_snapshot(self, collection, name):
        path = "%s/%s" % (_snapshots_path(collection), _segment(name))
        self.http.request_json("DELETE", path, params={"wait": "true"})

    def upload_snapshot(self, collection, fileobj, filename, priority="snapshot", checksum=None):
        params = {"wait": "true", "priority": priority}
        if checksum:
            params["checksum"] = checksum
        path = "%s/upload" % _snapshots_path(collection)
        return self._result(self.http.upload(path, "snapshot", filename, fileobj, params=params), path)

    def recover_snapshot(self, collection, location, priority="snapshot", checksum=None):
        body = {"location": location, "priority": priority}
        if checksum:
            body["checksum"] = checksum
        path = "%s/recover" % _snapshots_path(collection)
        return self._result(self.http.request_json("PUT", path, json_body=body, params={"wait": "true"}), path)
