"""The one HTTP client against real servers on loopback, misbehaving in the ways real ones do."""

from __future__ import annotations

import json
import ssl
import time

import pytest
from loopback import (
    LoopbackServer,
    close_without_answer,
    free_port,
    hang_answer,
    json_answer,
    ndjson_answer,
    raw_answer,
    stream_answer,
)

from ansible_collections.namtech.internal_ai.plugins.module_utils import http as http_utils
from ansible_collections.namtech.internal_ai.plugins.module_utils.http import (
    ApiError,
    ConnectionFailed,
    HttpClient,
    HttpStatusError,
    MalformedResponse,
    RequestTimeout,
    StreamError,
)


def client_for(url, **settings):
    settings.setdefault("sleep", lambda seconds: None)
    return HttpClient(url, **settings)


def test_get_json_returns_the_decoded_body(server):
    server.route("GET", "/api/version", json_answer({"version": "0.12.6"}))
    with client_for(server.url) as client:
        assert client.get_json("/api/version") == {"version": "0.12.6"}


def test_base_url_prefix_is_kept(server):
    server.route("GET", "/ollama/api/version", json_answer({"version": "1"}))
    with client_for(server.url + "/ollama/") as client:
        assert client.get_json("api/version") == {"version": "1"}


def test_html_instead_of_json_names_what_came_back(server):
    server.route("GET", "/api/tags", raw_answer("<html><body>Bad gateway</body></html>",
                                                content_type="text/html; charset=utf-8"))
    with client_for(server.url) as client, pytest.raises(MalformedResponse) as error:
        client.get_json("/api/tags")
    assert str(error.value) == (
        "GET %s/api/tags returned HTML (content-type text/html; charset=utf-8) where JSON was expected: "
        "'<html><body>Bad gateway</body></html>'. Check that the URL points at the engine's API and not at a "
        "web page, proxy or login form" % server.url
    )


def test_truncated_json_is_reported_as_incomplete(server):
    server.route("GET", "/api/tags", raw_answer('{"models": [{"name": "a"'))
    with client_for(server.url) as client, pytest.raises(MalformedResponse) as error:
        client.get_json("/api/tags")
    assert str(error.value) == (
        "GET %s/api/tags returned JSON that ends before it is complete (24 characters received): "
        "'{\"models\": [{\"name\": \"a\"'" % server.url
    )


def test_empty_body_where_json_was_expected(server):
    server.route("GET", "/api/ps", raw_answer(""))
    with client_for(server.url) as client, pytest.raises(MalformedResponse) as error:
        client.get_json("/api/ps")
    assert str(error.value) == "GET %s/api/ps returned an empty body where JSON was expected" % server.url


def test_error_status_carries_the_servers_error_field(server):
    server.route("POST", "/api/generate", json_answer({"error": "model runner has unexpectedly stopped"}, 500))
    with client_for(server.url) as client, pytest.raises(HttpStatusError) as error:
        client.post_json("/api/generate", {"model": "m", "prompt": "hi"})
    assert str(error.value) == (
        "POST %s/api/generate returned HTTP 500: model runner has unexpectedly stopped" % server.url
    )
    assert (error.value.status, error.value.server_error) == (500, "model runner has unexpectedly stopped")
    assert error.value.details()["request_url"] == server.url + "/api/generate"


@pytest.mark.parametrize(("body", "message"), [
    ({"error": {"message": "The model `x` does not exist.", "type": "NotFoundError", "code": 404}},
     "The model `x` does not exist."),
    ({"object": "error", "message": "max_tokens is too large", "type": "BadRequestError"}, "max_tokens is too large"),
    ({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}, "manifest unknown"),
])
def test_error_shapes_of_openai_servers_and_registries(server, body, message):
    server.route("GET", "/x", json_answer(body, 404))
    with client_for(server.url) as client, pytest.raises(HttpStatusError) as error:
        client.get_json("/x")
    assert str(error.value) == "GET %s/x returned HTTP 404: %s" % (server.url, message)


def test_error_status_without_json_shows_the_body(server):
    server.route("GET", "/health", raw_answer("upstream connect error", 503, "text/plain"))
    with client_for(server.url) as client, pytest.raises(HttpStatusError) as error:
        client.get_json("/health")
    assert str(error.value) == "GET %s/health returned HTTP 503: upstream connect error" % server.url


def test_a_server_that_never_answers_times_out(server):
    server.route("GET", "/api/tags", hang_answer)
    started = time.monotonic()
    with client_for(server.url, read_timeout=0.5) as client, pytest.raises(RequestTimeout) as error:
        client.get_json("/api/tags")
    assert time.monotonic() - started < 5
    assert str(error.value) == (
        "GET %s/api/tags: no answer within the read timeout of 0.5s. The server accepted the request but did "
        "not reply: check that it is not hung or overloaded, or raise the timeout" % server.url
    )
    assert server.script.count("GET", "/api/tags") == 1


def test_connection_refused_is_retried_with_backoff_then_reported():
    waits = []
    url = "http://127.0.0.1:%d" % free_port()
    with HttpClient(url, retries=2, backoff=0.5, sleep=waits.append) as client, \
            pytest.raises(ConnectionFailed) as error:
        client.get_json("/api/version")
    assert waits == [0.5, 1.0]
    assert str(error.value).startswith("GET %s/api/version: cannot connect (" % url)
    assert str(error.value).endswith(
        ") after 3 attempts. Check that the service runs and listens on this address and that no firewall blocks it"
    )


def test_a_retry_reaches_a_server_that_came_up_during_the_backoff():
    port = free_port()
    late = []

    def start_server_instead_of_sleeping(seconds):
        if not late:
            answer = json_answer({"status": "success"})
            late.append(LoopbackServer(port=port).route("POST", "/api/pull", answer).start())

    try:
        with HttpClient("http://127.0.0.1:%d" % port, retries=3, sleep=start_server_instead_of_sleeping) as client:
            assert client.post_json("/api/pull", {"model": "m"}) == {"status": "success"}
        assert late[0].script.count("POST", "/api/pull") == 1
    finally:
        for started in late:
            started.stop()


@pytest.mark.parametrize("misbehaviour", [close_without_answer, hang_answer])
def test_a_post_that_reached_the_server_is_never_retried(server, misbehaviour):
    server.route("POST", "/api/generate", misbehaviour)
    with client_for(server.url, retries=5, read_timeout=0.5) as client, pytest.raises(ApiError):
        client.post_json("/api/generate", {"model": "m", "prompt": "hi"})
    assert server.script.count("POST", "/api/generate") == 1


def test_closed_without_answer_says_the_request_may_have_arrived(server):
    server.route("POST", "/api/pull", close_without_answer)
    with client_for(server.url) as client, pytest.raises(ConnectionFailed) as error:
        client.post_json("/api/pull", {"model": "m"})
    message = str(error.value)
    assert message.startswith("POST %s/api/pull: the connection closed before a complete answer arrived (" % server.url)
    assert message.endswith("). The request may have reached the server, so it was not retried")


def test_ndjson_stream_yields_every_event(server):
    events = [{"status": "pulling manifest"}, {"status": "pulling abc", "total": 10, "completed": 10},
              {"status": "success"}]
    server.route("POST", "/api/pull", ndjson_answer(events))
    with client_for(server.url) as client:
        assert list(client.stream_ndjson("POST", "/api/pull", {"model": "m"})) == events


def test_a_stream_cut_mid_way_is_a_clear_error(server):
    events = [{"status": "pulling manifest"}, {"status": "pulling abc", "total": 10, "completed": 3}]
    server.route("POST", "/api/pull", ndjson_answer(events, then_close=True))
    received = []
    with client_for(server.url) as client, pytest.raises(ConnectionFailed) as error:
        received.extend(client.stream_ndjson("POST", "/api/pull", {"model": "m"}))
    assert received == events
    message = str(error.value)
    assert message.startswith(
        "POST %s/api/pull: the connection closed in the middle of the stream after 2 lines (" % server.url)
    assert message.endswith("); the server may have crashed or restarted")


def test_an_error_object_mid_stream_is_raised(server):
    server.route("POST", "/api/pull", ndjson_answer([
        {"status": "pulling manifest"}, {"error": "digest mismatch, file must be downloaded again"}]))
    with client_for(server.url) as client, pytest.raises(StreamError) as error:
        list(client.stream_ndjson("POST", "/api/pull", {"model": "m"}))
    assert str(error.value) == (
        "POST %s/api/pull failed in the middle of the stream after 1 events: "
        "digest mismatch, file must be downloaded again" % server.url
    )
    assert error.value.server_error == "digest mismatch, file must be downloaded again"


def test_a_stream_that_stalls_times_out_with_the_lines_seen(server):
    def stall_after_one_line(handler):
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        line = b'{"status": "pulling manifest"}\n'
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
        handler.wfile.flush()
        hang_answer(handler)

    server.route("POST", "/api/pull", stall_after_one_line)
    with client_for(server.url, read_timeout=0.5) as client, pytest.raises(RequestTimeout) as error:
        list(client.stream_ndjson("POST", "/api/pull", {"model": "m"}))
    assert str(error.value) == (
        "POST %s/api/pull: no data for 0.5s in the middle of the stream after 1 lines; the server may be hung"
        % server.url
    )


def test_sse_stream_stops_at_done(server):
    chunks = [{"choices": [{"delta": {"content": "Hel"}}]}, {"choices": [{"delta": {"content": "lo"}}]}]
    server.route("POST", "/v1/chat/completions", stream_answer(
        ["data: " + json.dumps(chunk) + "\n" for chunk in chunks] + ["data: [DONE]\n"], "text/event-stream"))
    with client_for(server.url) as client:
        assert list(client.stream_sse("POST", "/v1/chat/completions", {"model": "m"})) == chunks


def test_sse_stream_without_done_is_incomplete(server):
    server.route("POST", "/v1/completions", stream_answer(
        ["data: " + json.dumps({"choices": [{"text": "a"}]}) + "\n"], "text/event-stream"))
    with client_for(server.url) as client, pytest.raises(MalformedResponse) as error:
        list(client.stream_sse("POST", "/v1/completions", {"model": "m"}))
    assert str(error.value) == (
        "POST %s/v1/completions: the event stream ended after 1 events without 'data: [DONE]'; the answer is "
        "incomplete" % server.url
    )


def test_bearer_token_and_basic_auth_headers(server):
    server.route("GET", "/v1/models", json_answer({"data": []}))
    with client_for(server.url, token="s3cret") as client:
        client.get_json("/v1/models")
    with client_for(server.url, username="ops", password="pw") as client:
        client.get_json("/v1/models")
    assert server.requests[0]["headers"]["Authorization"] == "Bearer s3cret"
    assert server.requests[1]["headers"]["Authorization"] == "Basic b3BzOnB3"


@pytest.mark.parametrize("url", ["127.0.0.1:11434", "ftp://host/", "http://", "http://:8080/x", None])
def test_invalid_base_urls_are_refused(url):
    with pytest.raises(ApiError) as error:
        HttpClient(url)
    assert "url" in str(error.value)


def tls_server(tls_files):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tls_files / "server.pem"), str(tls_files / "server.key"))
    return LoopbackServer(ssl_context=context).route("GET", "/health", json_answer({})).start()


def test_tls_with_the_signing_ca_is_trusted(tls_files):
    secure = tls_server(tls_files)
    try:
        with HttpClient(secure.url, ca_path=str(tls_files / "ca.pem")) as client:
            assert client.get_json("/health") == {}
        with HttpClient(secure.url, validate_certs=False) as client:
            assert client.get_json("/health") == {}
    finally:
        secure.stop()


def test_an_untrusted_certificate_fails_at_once_with_what_to_do(tls_files):
    secure = tls_server(tls_files)
    try:
        waits = []
        with HttpClient(secure.url, sleep=waits.append) as client, pytest.raises(ConnectionFailed) as error:
            client.get_json("/health")
        assert waits == []
        assert str(error.value).startswith("GET %s/health: the server's TLS certificate is not trusted (" % secure.url)
        assert str(error.value).endswith("Set ca_path to the CA that signed it, or validate_certs=false for a lab")
    finally:
        secure.stop()


def test_unreadable_tls_files_are_reported(tmp_path):
    with pytest.raises(ApiError) as error:
        HttpClient("https://127.0.0.1:1", ca_path=str(tmp_path / "missing.pem"))
    assert str(error.value).startswith("cannot load the TLS files (ca_path=%s" % (tmp_path / "missing.pem"))


def test_without_httpx_the_client_refuses_clearly(monkeypatch):
    monkeypatch.setattr(http_utils, "HAS_HTTPX", False)
    with pytest.raises(ApiError) as error:
        HttpClient("http://127.0.0.1:1")
    assert str(error.value) == "the Python library httpx is required on the host that runs this module"
