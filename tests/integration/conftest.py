"""The lab for integration tests: one topology up for the whole session, down at the end.

Environment:
  LAB_TOPOLOGY  box | pro | cluster (default cluster)
  LAB_ENGINE    ollama | vllm (default ollama)
  LAB_REUSE=1   use the lab that is already up (or bring it up) and leave it up afterwards

When this machine cannot run the lab (not root, no podman, the kernel refuses a host) every test that
uses it is skipped, and the reason is printed in the summary. Any other failure of `lab up` is an error.
"""

import os
from collections.abc import Iterator

import pytest
from lab.core import Lab, down
from lab.proc import LabError, LabUnavailable
from lab.topology import load_topology

_unavailable_reason: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "topology(*names): run only when the session's lab has one of these topologies")
    config.addinivalue_line("markers", "engine(*names): run only when the session's lab runs one of these engines")
    config.addinivalue_line("markers", "takes_lab_down: runs after every other test of the session")
    config.addinivalue_line("markers", "redeploys: replaces the session's deployment; runs after every other test "
                                       "that uses it, before those that take the lab down")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip before any fixture runs, so a test for another topology or engine never brings a lab up."""
    topology, engine = lab_settings()[:2]
    for marker_name, running, variable in (("topology", topology, "LAB_TOPOLOGY"), ("engine", engine, "LAB_ENGINE")):
        marker = item.get_closest_marker(marker_name)
        if marker is not None and running not in marker.args:
            pytest.skip(f"needs a lab with {marker_name} {' or '.join(marker.args)}, the session runs {running} "
                        f"(set {variable})")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.lab)
    # A test that takes the session's lab down must run after every other module's tests, not after its own; one that
    # replaces the deployment, after every test that uses it.
    items.sort(key=lambda item: (item.get_closest_marker("takes_lab_down") is not None,
                                 item.get_closest_marker("redeploys") is not None))


def pytest_terminal_summary(terminalreporter) -> None:
    for reason in _unavailable_reason:
        terminalreporter.section("lab unavailable: integration tests skipped", sep="=", yellow=True)
        terminalreporter.write_line(reason)


def lab_settings() -> tuple[str, str, bool]:
    return (os.environ.get("LAB_TOPOLOGY", "cluster"), os.environ.get("LAB_ENGINE", "ollama"),
            os.environ.get("LAB_REUSE") == "1")


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """The running lab: ``.hosts``, ``.inventory_path``, ``.run_playbook()``, ``.ssh()``, fault hooks."""
    if _unavailable_reason:
        pytest.skip(_unavailable_reason[0])
    topology, engine, reuse = lab_settings()
    the_lab = Lab(load_topology(topology, engine))
    try:
        report = the_lab.up()
    except LabUnavailable as exc:
        reason = str(exc) + clean_up_after_failed_up(reuse)
        _unavailable_reason.append(reason)
        pytest.skip(f"lab unavailable: {reason}")
    except BaseException:
        down_unless_reused(reuse)
        raise
    print(f"\nlab up ({topology}, {engine}): {len(report.changes)} changes in {report.seconds:.1f}s")
    yield the_lab
    down_unless_reused(reuse)


def clean_up_after_failed_up(reuse: bool) -> str:
    """Remove what a failed up made; return a note when even that failed (the skip reason carries it)."""
    try:
        down_unless_reused(reuse)
    except LabError as exc:
        return f" (and lab down failed: {exc})"
    return ""


def down_unless_reused(reuse: bool) -> None:
    if not reuse:
        down(log=lambda _line: None)


@pytest.fixture
def healthy_lab(lab: Lab) -> Iterator[Lab]:
    """The lab, healed after the test whatever faults it left (stopped, paused, cut off hosts, full disks)."""
    yield lab
    lab.heal()


@pytest.fixture(scope="session")
def deployed(lab: Lab) -> Lab:
    """The lab with site.yml applied once for the whole session: engines, models, load balancers."""
    lab.run_playbook("playbooks/site.yml", timeout=1800)
    return lab
