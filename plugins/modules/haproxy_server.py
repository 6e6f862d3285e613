# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_server
short_description: Put a backend server in rotation, drain it or take it out, on one or several HAProxy load balancers
version_added: 0.1.0
description:
  - Sets the administrative state (V(ready), V(drain), V(maint)) and the weight of a server through HAProxy's
    runtime API, over a unix socket or a TCP address, on every load balancer given at once.
  - With O(wait=true) it returns only when the server has no session and no queued request left on any of
    them, so streamed answers finish before a node is restarted. A server that was already down or in
    maintenance is not waited for; a live one is waited for at most O(wait_timeout) seconds.
  - Changes made through the runtime API last until HAProxy restarts; the C(haproxy) role keeps them across
    reloads with a server state file.
author:
  - Namtech platform engineering (@namtech)
options:
  runtime_api:
    description:
      - The runtime API of each load balancer, as a unix socket path (V(/run/haproxy/admin.sock)) or a TCP
        address (V(127.0.0.1:9999)). It must be declared with C(level admin).
    type: list
    elements: str
    required: true
    aliases: [socket]
  name:
    description:
      - The server's name in the backend, as the C(server) line of the configuration gives it.
    type: str
    required: true
  backends:
    description:
      - The backends to act in. When empty, every backend that has a server called O(name).
      - An empty list that finds no backend, a backend that does not exist, or a backend without O(name), fails.
    type: list
    elements: str
    default: []
    aliases: [backend]
  state:
    description:
      - V(ready) puts the server in rotation; V(drain) sends it no new requests but lets the ones in flight
        finish (health checks go on); V(maint) takes it out and stops its health checks.
    type: str
    choices: [ready, drain, maint]
  weight:
    description:
      - The server's weight, 0 to 256.
    type: int
  wait:
    description:
      - After V(drain) or V(maint), wait until the server has no session and no queued request.
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds to wait for in-flight requests before failing.
    type: float
    default: 300
  wait_interval:
    description:
      - Seconds between two looks at the sessions while waiting.
    type: float
    default: 0.5
  timeout:
    description:
      - Seconds to wait for the runtime API to answer each command.
    type: float
    default: 5
attributes:
  check_mode:
    support: full
    description: Reports what would change without sending a command that changes anything, and does not wait.
  diff_mode:
    support: full
    description: Shows the state and weight of every targeted server before and after.
notes:
  - Runs where the runtime API is reachable, usually on the load balancer itself; use a TCP address bound to a
    private interface to drive several load balancers from one host.
seealso:
  - name: HAProxy runtime API
    description: The management guide's chapter on the stats socket commands.
    link: https://docs.haproxy.org/2.6/management.html#9.3
"""

EXAMPLES = r"""
- name: Drain ai1 on every load balancer and wait for its streams to finish
  namtech.internal_ai.haproxy_server:
    runtime_api: /run/haproxy/admin.sock
    name: ai1
    state: drain
    wait: true
    wait_timeout: 600
  delegate_to: "{{ item }}"
  loop: "{{ groups['loadbalancers'] }}"

- name: Back into rotation with half the weight while it warms up
  namtech.internal_ai.haproxy_server:
    runtime_api: ["10.0.0.11:9999", "10.0.0.12:9999"]
    name: ai1
    backends: [ai_ollama]
    state: ready
    weight: 50
"""

RETURN = r"""
servers:
  description: Every targeted server, on every load balancer, before and after.
  returned: always
  type: list
  elements: dict
  contains:
    runtime_api:
      description: The load balancer's runtime API endpoint.
      type: str
    backend:
      description: The backend.
      type: str
    server:
      description: The server.
      type: str
    before:
      description: C(state) (ready, drain, maint), C(operational) (up, down, starting, stopping), C(weight),
        C(sessions), C(queued) and C(status) as C(show stat) gives it, before the change.
      type: dict
    after:
      description: The same after the change (and the wait).
      type: dict
    waited:
      description: Seconds spent waiting for this server's sessions to end.
      type: float
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.namtech.internal_ai.plugins.module_utils.haproxy import (
    MAX_WEIGHT,
    HAProxyError,
    RuntimeApi,
)
from ansible_collections.namtech.internal_ai.plugins.module_utils.http import timeout_problem

SNAPSHOT_FIELDS = ("state", "operational", "weight", "sessions", "queued", "status")


class Target:
    """One server in one backend on one load balancer."""

    def __init__(self, api, record):
        self.api = api
        self.backend = record["backend"]
        self.server = record["server"]
        self.before = snapshot(record)
        self.after = self.before
        self.waited = 0.0

    def key(self):
        return self.backend, self.server

    def changes(self, state, weight):
        wanted = {}
        if state is not None and self.before["state"] != state:
            wanted["state"] = state
        if weight is not None and self.before["weight"] != weight:
            wanted["weight"] = weight
        return wanted

    def apply(self, wanted):
        if "weight" in wanted:
            self.api.set_weight(self.backend, self.server, wanted["weight"])
        if "state" in wanted:
            self.api.set_state(self.backend, self.server, wanted["state"])

    def worth_waiting_for(self):
        """A server that was down or in maintenance has nothing in flight to protect."""
        return self.before["operational"] != "down" and self.before["state"] != "maint"

    def result(self):
        return {"runtime_api": self.api.endpoint, "backend": self.backend, "server": self.server,
                "before": self.before, "after": self.after, "waited": round(self.waited, 3)}

    def describe(self, state):
        return "%s %s/%s: state=%s weight=%d sessions=%d\n" % (
            self.api.endpoint, self.backend, self.server, state["state"], state["weight"], state["sessions"])


def snapshot(record):
    return dict((field, record[field]) for field in SNAPSHOT_FIELDS)


def select_targets(api, servers, name, backends):
    """The records of server ``name`` in ``backends`` (or in every backend that has it) on one balancer."""
    known_backends = sorted(set(record["backend"] for record in servers))
    for backend in backends:
        if backend not in known_backends:
            raise HAProxyError("backend %s does not exist on %s; its backends are: %s"
                               % (backend, api.endpoint, ", ".join(known_backends) or "none"))
    chosen = [record for record in servers if record["server"] == name
              and (not backends or record["backend"] in backends)]
    missing = sorted(set(backends) - set(record["backend"] for record in chosen))
    if missing:
        present = sorted(record["server"] for record in servers if record["backend"] == missing[0])
        raise HAProxyError("backend %s on %s has no server %s; its servers are: %s"
                           % (missing[0], api.endpoint, name, ", ".join(present) or "none"))
    if not chosen:
        raise HAProxyError("no backend on %s has a server called %s" % (api.endpoint, name))
    return [Target(api, record) for record in chosen]


def refresh(targets):
    """Read every balancer once and update each target's ``after``."""
    by_api = {}
    for target in targets:
        by_api.setdefault(target.api.endpoint, (target.api, []))[1].append(target)
    for api, api_targets in by_api.values():
        records = dict(((record["backend"], record["server"]), record) for record in api.servers())
        for target in api_targets:
            target.after = snapshot(records[target.key()])


def wait_for_idle(targets, timeout, interval):
    """Poll until no waited-for target has a session or a queued request; False when the time runs out."""
    started = time.monotonic()
    pending = [target for target in targets if target.worth_waiting_for()]
    while True:
        refresh(pending)
        elapsed = time.monotonic() - started
        busy = []
        for target in pending:
            if target.after["sessions"] or target.after["queued"]:
                busy.append(target)
            elif not target.waited:
                target.waited = elapsed
        if not busy:
            return []
        if elapsed >= timeout:
            for target in busy:
                target.waited = elapsed
            return busy
        time.sleep(min(interval, max(timeout - elapsed, 0.01)))


def run(module):
    params = module.params
    if params["weight"] is not None and not 0 <= params["weight"] <= MAX_WEIGHT:
        module.fail_json(msg="weight must be between 0 and %d (got %d)" % (MAX_WEIGHT, params["weight"]))
    for name in ("timeout", "wait_timeout", "wait_interval"):
        if timeout_problem(name, params[name]):
            module.fail_json(msg=timeout_problem(name, params[name]))
    targets = []
    for endpoint in params["runtime_api"]:
        api = RuntimeApi(endpoint, timeout=params["timeout"])
        targets += select_targets(api, api.servers(), params["name"], params["backends"])
    plans = [(target, target.changes(params["state"], params["weight"])) for target in targets]
    changed = any(wanted for _target, wanted in plans)
    if module.check_mode:
        for target, wanted in plans:
            target.after = dict(target.before, **wanted)
        return changed, targets, []
    for target, wanted in plans:
        if wanted:
            target.apply(wanted)
    busy = []
    if params["wait"] and params["state"] in ("drain", "maint"):
        busy = wait_for_idle(targets, params["wait_timeout"], params["wait_interval"])
    refresh(targets)
    return changed, targets, busy


def main():
    module = AnsibleModule(
        argument_spec=dict(
            runtime_api=dict(type="list", elements="str", required=True, aliases=["socket"]),
            name=dict(type="str", required=True),
            backends=dict(type="list", elements="str", default=[], aliases=["backend"]),
            state=dict(type="str", choices=["ready", "drain", "maint"]),
            weight=dict(type="int"),
            wait=dict(type="bool", default=False),
            wait_timeout=dict(type="float", default=300),
            wait_interval=dict(type="float", default=0.5),
            timeout=dict(type="float", default=5),
        ),
        required_one_of=[("state", "weight")],
        supports_check_mode=True,
    )
    try:
        changed, targets, busy = run(module)
    except HAProxyError as exc:
        module.fail_json(msg=str(exc))
    result = dict(changed=changed, servers=[target.result() for target in targets])
    if module._diff:
        result["diff"] = {"before": "".join(target.describe(target.before) for target in targets),
                          "after": "".join(target.describe(target.after) for target in targets)}
    if busy:
        module.fail_json(
            msg="waited %.0fs and requests are still in flight: %s. Raise wait_timeout, or find what keeps the "
                "connections open" % (module.params["wait_timeout"], "; ".join(
                    "%s %s/%s has %d sessions and %d queued" % (target.api.endpoint, target.backend, target.server,
                                                                target.after["sessions"], target.after["queued"])
                    for target in busy)), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
