# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Connection options shared by every module that calls an engine's HTTP API."""

    DOCUMENTATION = r"""
options:
  api_token:
    description:
      - Bearer token sent in the C(Authorization) header, for example vLLM's C(--api-key) or the key the
        load balancer asks for.
      - Never logged.
    type: str
    aliases: [api_key]
  url_username:
    description:
      - User for HTTP basic authentication (a reverse proxy in front of the engine).
      - Mutually exclusive with O(api_token).
    type: str
  url_password:
    description:
      - Password for HTTP basic authentication. Never logged.
    type: str
  validate_certs:
    description:
      - Verify the server's TLS certificate. Turn off only for a lab.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA that signed the server's certificate, instead of the system's trust store.
    type: path
  client_cert:
    description:
      - PEM client certificate for mutual TLS. With O(client_key) when the key is in its own file.
    type: path
  client_key:
    description:
      - PEM private key of O(client_cert).
    type: path
  connect_timeout:
    description:
      - Seconds to wait for the TCP (and TLS) connection.
    type: float
    default: 5.0
  timeout:
    description:
      - Seconds to wait for each read of the answer. For a stream this bounds the silence between two
        chunks, not the whole stream.
    type: float
    default: 30.0
  retries:
    description:
      - How many times to retry after a connection error, with exponential backoff from 0.5 seconds.
      - Only connection errors are retried, when the request cannot have reached the server; a request
        that reached it is never sent twice.
    type: int
    default: 2
  use_proxy:
    description:
      - Honour the C(HTTP_PROXY), C(HTTPS_PROXY) and C(NO_PROXY) environment variables.
    type: bool
    default: true
notes:
  - Needs the Python library C(httpx) on the host that runs the module (the node, or the controller with
    C(delegate_to)). On Debian and Ubuntu it is the package C(python3-httpx).
  - All API modules of this collection are in the action group C(namtech.internal_ai.api), so
    C(module_defaults) can set these options once.
requirements:
  - httpx >= 0.23
"""
