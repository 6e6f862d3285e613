"""A failed command's LabError says why: stderr, and the failure lines ansible-playbook prints on stdout."""

import sys

import pytest
from lab.proc import MAX_FAILURE_LINES, LabError, run

PLAYBOOK_LIKE = """
import sys
print("PLAY [Node exporter] ****")
print("ok: [ai1]")
print('fatal: [mon1]: FAILED! => {"msg": "the real reason"}')
print("PLAY RECAP ****")
sys.stderr.write("a warning\\n")
sys.exit(2)
"""


def script(tmp_path, source):
    path = tmp_path / "command.py"
    path.write_text(source)
    return [sys.executable, str(path)]


def test_the_failure_lines_of_stdout_are_in_the_error(tmp_path):
    with pytest.raises(LabError) as raised:
        run(script(tmp_path, PLAYBOOK_LIKE))
    message = str(raised.value)
    assert message.startswith("failed (2): ")
    assert "a warning" in message
    assert 'fatal: [mon1]: FAILED! => {"msg": "the real reason"}' in message
    assert "ok: [ai1]" not in message and "PLAY RECAP" not in message


def test_only_the_last_failure_lines_are_kept(tmp_path):
    many = "import sys\nfor n in range(50): print('failed: [ai%d]' % n)\nsys.exit(2)\n"
    with pytest.raises(LabError) as raised:
        run(script(tmp_path, many))
    lines = str(raised.value).splitlines()[1:]
    assert lines == ["failed: [ai%d]" % n for n in range(50 - MAX_FAILURE_LINES, 50)]


def test_binary_output_is_decoded():
    with pytest.raises(LabError, match="fatal: \\[ai1\\]"):
        run([sys.executable, "-c", "import sys; print('fatal: [ai1]: x'); sys.exit(1)"], input_bytes=b"")
