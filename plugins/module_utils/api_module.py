# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What every API-calling module shares: its connection options and how it turns them into a client."""

from __future__ import annotations

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.namtech.internal_ai.plugins.module_utils.http import (
    HAS_HTTPX,
    HTTPX_IMPORT_ERROR,
    ApiError,
    HttpClient,
    timeout_problem,
)


def api_argument_spec(default_url):
    """The connection options documented by the ``namtech.internal_ai.api`` doc fragment."""
    return dict(
        url=dict(type="str", default=default_url),
        api_token=dict(type="str", no_log=True, aliases=["api_key"]),
        url_username=dict(type="str"),
        url_password=dict(type="str", no_log=True),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path"),
        client_cert=dict(type="path"),
        client_key=dict(type="path"),
        connect_timeout=dict(type="float", default=5.0),
        timeout=dict(type="float", default=30.0),
        retries=dict(type="int", default=2),
        use_proxy=dict(type="bool", default=True),
    )


API_MUTUALLY_EXCLUSIVE = [("api_token", "url_username")]
API_REQUIRED_BY = {"url_password": "url_username", "client_key": "client_cert"}


def fail_with_api_error(module, error, **result):
    """``fail_json`` with the error's sentence and its url / status / server_error fields."""
    module.fail_json(msg=str(error), **dict(error.details(), **result))


def check_connection_params(module):
    params = module.params
    for name in ("connect_timeout", "timeout"):
        if timeout_problem(name, params[name]):
            module.fail_json(msg=timeout_problem(name, params[name]))
    if params["retries"] < 0 or params["retries"] > 10:
        module.fail_json(msg="retries must be between 0 and 10 (got %d)" % params["retries"])


def http_client_from_module(module, url=None, read_timeout=None, **options):
    """An ``HttpClient`` built from the module's connection options; fails the module on bad options.

    ``url`` and ``read_timeout``, when given, stand in for the module's ``url`` and ``timeout``: a second server
    reached with the same options, or a shorter wait than the module's. ``options`` replace connection options by
    name (``api_token``, ``url_username``, ``url_password``, ``ca_path``...) for a second server with a login of
    its own.
    """
    if not HAS_HTTPX:
        module.fail_json(msg=missing_required_lib("httpx"), exception=HTTPX_IMPORT_ERROR)
    check_connection_params(module)
    params = dict(module.params, **options)
    try:
        return HttpClient(
            params["url"] if url is None else url,
            connect_timeout=params["connect_timeout"],
            read_timeout=params["timeout"] if read_timeout is None else read_timeout,
            retries=params["retries"],
            validate_certs=params["validate_certs"],
            ca_path=params["ca_path"],
            client_cert=params["client_cert"],
            client_key=params["client_key"],
            token=params["api_token"],
            username=params["url_username"],
            password=params["url_password"],
            use_proxy=params["use_proxy"],
        )
    except ApiError as exc:
        fail_with_api_error(module, exc)
