"""The lab itself: real Debian 12 hosts with systemd, reached over SSH, and fault hooks that really fault.

Run: cd /work/main && .venv/bin/pytest tests/integration -rs   (LAB_TOPOLOGY=cluster by default)
"""

import json
import os
import socket
import subprocess
import textwrap
import urllib.request
from pathlib import Path

import pytest
import yaml
from lab import podman
from lab.core import Lab, ansible_command, down
from lab.image import image_ref
from lab.paths import ARTIFACT_BUILD_DIR
from lab.proc import LabError
from lab.topology import INVENTORY_GROUPS, load_topology

ENOSPC = 28


def tcp_answers(address: str, port: int, timeout: float = 2) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def test_every_host_answers_ansible_ping_from_any_directory(lab: Lab, tmp_path: Path) -> None:
    done = lab.ansible("all", "ping", cwd=tmp_path)
    for name in lab.hosts:
        assert f"{name} | SUCCESS" in done.stdout, done.stdout


def test_inventory_has_every_group_and_the_lab_vars(lab: Lab) -> None:
    listing = subprocess.run(
        [ansible_command("ansible-inventory"), "-i", str(lab.inventory_path), "--list"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    inventory = json.loads(listing.stdout)
    for group in INVENTORY_GROUPS:
        expected = set(lab.group(group))
        assert set(inventory.get(group, {}).get("hosts", [])) == expected, group
    hostvars = inventory["_meta"]["hostvars"]
    for name, spec in lab.hosts.items():
        assert hostvars[name]["ansible_host"] == spec.address
        assert hostvars[name]["ai_engine"] == lab.topology.engine
        assert hostvars[name]["lab_artifact_url"] == lab.artifact_url
        assert Path(hostvars[name]["ansible_ssh_private_key_file"]).is_absolute()
    settings = yaml.safe_load(lab.inventory_path.read_text())["all"]["vars"]
    assert ("lab_vip" in settings) == (lab.vip is not None)


def test_systemd_is_pid_1_and_the_system_is_up(lab: Lab) -> None:
    for name in lab.hosts:
        pid1 = lab.ssh(name, "cat /proc/1/comm").stdout.strip()
        state = lab.ssh(name, "systemctl is-system-running", check=False).stdout.strip()
        assert (pid1, state in ("running", "degraded")) == ("systemd", True), name


def test_hosts_reach_each_other_by_name(lab: Lab) -> None:
    names = list(lab.hosts)
    probe = textwrap.dedent("""
        import json, socket, sys
        result = {}
        for name in sys.argv[1:]:
            try:
                socket.create_connection((name, 22), timeout=3).close()
                result[name] = socket.gethostbyname(name)
            except OSError as exc:
                result[name] = str(exc)
        print(json.dumps(result))
    """)
    for name in names:
        peers = [peer for peer in names if peer != name]
        done = lab.ssh(name, ["python3", "-c", probe, *peers])
        assert json.loads(done.stdout) == {peer: lab.hosts[peer].address for peer in peers}, name


def test_this_machine_reaches_every_host_by_address(lab: Lab) -> None:
    assert [name for name, spec in lab.hosts.items() if not tcp_answers(spec.address, 22)] == []


def test_the_artifact_host_serves_its_tree(lab: Lab) -> None:
    files = sorted(path for path in ARTIFACT_BUILD_DIR.rglob("*") if path.is_file())
    releases = [path for path in files if "releases" in path.parts] or files
    assert releases, f"nothing was built into {ARTIFACT_BUILD_DIR}"
    sample = releases[0]
    url = f"{lab.artifact_url}/{sample.relative_to(ARTIFACT_BUILD_DIR)}"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == sample.read_bytes()
    ai_node = lab.group("ai_nodes")[0]
    fetched = lab.ssh(ai_node, ["curl", "-fsS", "-o", "/dev/null", "-w", "%{http_code}", url]).stdout
    assert fetched == "200"
    artifacts = lab.group("artifacts")[0]
    assert lab.ssh(artifacts, "systemctl is-enabled nti-lab-artifacts.service").stdout.strip() == "enabled"


def test_a_playbook_runs_against_the_lab_with_extra_vars(lab: Lab, tmp_path: Path) -> None:
    playbook = tmp_path / "touch.yml"
    playbook.write_text(textwrap.dedent("""
        - name: Prove the lab behaves like real hosts
          hosts: all
          gather_facts: true
          tasks:
            - name: Systemd is the service manager
              ansible.builtin.assert:
                that: ansible_facts.service_mgr == 'systemd'
            - name: Write the marker
              ansible.builtin.copy:
                dest: /root/lab-marker
                content: "{{ marker }}"
                mode: "0644"
    """))
    lab.run_playbook(playbook, {"marker": "deployed"}, cwd=tmp_path)
    for name in lab.hosts:
        assert lab.ssh(name, "cat /root/lab-marker").stdout == "deployed"


def test_a_second_up_changes_nothing(lab: Lab) -> None:
    report = Lab(load_topology(lab.topology.name, lab.topology.engine)).up()
    assert report.changes == []


@pytest.mark.parametrize("power_cut", [False, True], ids=["stop", "kill"])
def test_a_stopped_host_is_unreachable_and_start_brings_it_back_with_its_disk(
    healthy_lab: Lab, power_cut: bool
) -> None:
    lab = healthy_lab
    host = lab.group("ai_nodes")[-1]
    address = lab.hosts[host].address
    lab.ssh(host, f"echo kept > {lab.hosts[host].disk_path}/survives")
    with lab.stopped(host, kill=power_cut):
        assert podman.inspect_container(lab.hosts[host].container)["State"]["Running"] is False
        assert not tcp_answers(address, 22)
    assert lab.ssh(host, f"cat {lab.hosts[host].disk_path}/survives").stdout == "kept\n"
    assert lab.ssh(host, "hostname -I").stdout.split() == [address]


def test_a_paused_host_hangs_and_unpause_brings_it_back(healthy_lab: Lab) -> None:
    lab = healthy_lab
    host = lab.group("ai_nodes")[0]
    with lab.paused(host):
        assert lab.ssh(host, "true", check=False, timeout=15).returncode != 0
    assert lab.ssh(host, "true").returncode == 0


def test_an_isolated_host_is_cut_off_both_ways_and_reconnect_restores_its_address(healthy_lab: Lab) -> None:
    lab = healthy_lab
    host, peer = lab.group("ai_nodes")[0], lab.group("artifacts")[0]
    address = lab.hosts[host].address
    with lab.isolated(host):
        assert not tcp_answers(address, 22)
        assert lab.ssh(peer, f"timeout 3 bash -c '</dev/tcp/{host}/22'", check=False).returncode != 0
        inside = lab.exec(host, "timeout", "3", "curl", "-sS", lab.artifact_url, check=False)
        assert inside.returncode != 0
    assert lab.ssh(host, "hostname -I").stdout.split() == [address]
    assert lab.ssh(peer, f"timeout 3 bash -c '</dev/tcp/{host}/22'").returncode == 0


def quiet_host(lab: Lab) -> str:
    """A host whose lab disk no deployed service writes to or frees space on while a test fills it."""
    return next(iter(lab.group("storage") or lab.group("monitoring") or lab.group("ai_nodes")))


def test_a_full_disk_makes_writes_fail_with_enospc(healthy_lab: Lab) -> None:
    lab = healthy_lab
    host = quiet_host(lab)
    target = f"{lab.hosts[host].disk_path}/after-fill"
    write = ["python3", "-c", textwrap.dedent(f"""
        import os
        with open({target!r}, 'wb') as stream:
            stream.write(b'x' * 1048576)
            stream.flush()
            os.fsync(stream.fileno())
    """)]
    with lab.disk_full(host) as fill:
        assert fill.free_bytes_after == 0
        assert fill.filled_bytes > 100 * 1024**2
        failed = lab.ssh(host, write, check=False)
        assert failed.returncode != 0
        assert "No space left on device" in failed.stderr
        assert f"[Errno {ENOSPC}]" in failed.stderr
    assert lab.ssh(host, write).returncode == 0


def test_filling_this_machines_disk_is_refused(lab: Lab) -> None:
    with pytest.raises(LabError, match="refusing"):
        lab.fill_disk(lab.group("ai_nodes")[0], "/var")


def test_kill_process_kills_it_and_systemd_restarts_the_service(healthy_lab: Lab) -> None:
    lab = healthy_lab
    host = lab.group("artifacts")[0]
    unit = "nti-lab-artifacts.service"
    before = lab.ssh(host, f"systemctl show --property MainPID --value {unit}").stdout.strip()
    lab.kill_process(host, "artifact_server.py", full=True)
    lab.wait_until_http(lab.artifact_url)
    after = lab.ssh(host, f"systemctl show --property MainPID --value {unit}").stdout.strip()
    assert before != after
    assert lab.ssh(host, f"systemctl show --property NRestarts --value {unit}").stdout.strip() != "0"


def test_kill_process_of_an_unknown_name_fails_loudly(lab: Lab) -> None:
    with pytest.raises(LabError, match="no process"):
        lab.kill_process(lab.group("ai_nodes")[0], "no-such-process")


@pytest.mark.topology("cluster")
def test_the_cluster_reserves_a_free_virtual_ip_for_its_load_balancers(lab: Lab) -> None:
    assert len(lab.group("loadbalancers")) == 2
    assert lab.vip not in {spec.address for spec in lab.hosts.values()}
    # Only a load balancer may hold it (keepalived, once site.yml ran); no other host ever does.
    for name in set(lab.hosts) - set(lab.group("loadbalancers")):
        assert f" {lab.vip}/" not in lab.exec(name, "ip", "-4", "-o", "addr", "show").stdout


# It takes the session's lab down (the fixture's own teardown then has nothing to do): conftest runs it last.
@pytest.mark.takes_lab_down
def test_down_leaves_no_lab_container_network_or_volume(lab: Lab) -> None:
    if lab_is_reused():
        pytest.skip("LAB_REUSE=1: the lab stays up")
    down(log=lambda _line: None)
    assert podman_names("ps", "--all", "--format", "{{.Names}}") == []
    assert podman_names("network", "ls", "--format", "{{.Name}}") == []
    assert podman_names("volume", "ls", "--format", "{{.Name}}") == []
    assert not lab.inventory_path.exists()
    assert podman.image_exists(image_ref())


def lab_is_reused() -> bool:
    return os.environ.get("LAB_REUSE") == "1"


def podman_names(*args: str) -> list[str]:
    out = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=60, check=True).stdout
    return [name for name in out.split() if name.startswith("nti-lab-")]
