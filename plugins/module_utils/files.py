# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Writing a file so that readers see the old content or the new, never a part of it; path options that no file
system call would take."""

from __future__ import annotations

import contextlib
import os
import tempfile


def write_atomically(path, content, mode=None, move=os.replace):
    """Replace ``path`` with ``content`` (``bytes``, or ``str`` written as UTF-8) in one step.

    A character UTF-8 cannot encode (a surrogate that stands for bytes that were not UTF-8, in a name from the
    task or a server's answer) is written as its backslash escape rather than failing the whole write.

    The content goes to a temporary file beside ``path`` (the same file system, so the move is a rename), is
    flushed to disk, then ``move(temporary, path)`` puts it in place: ``AnsibleModule.atomic_move`` in a module
    (it keeps the owner, mode and SELinux context of a file it replaces), ``os.replace`` elsewhere. ``mode`` is
    set on the temporary file before the move; without it the file has mkstemp's 0600.

    Raises what writing or moving raised (``OSError``), after removing the temporary file.
    """
    if isinstance(content, str):
        content = content.encode("utf-8", "backslashreplace")
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path) or ".",
                                             prefix=".%s." % os.path.basename(path), suffix=".tmp")
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        move(temporary, path)
    except BaseException:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        raise


def paths_with_nul_bytes(spec, params, prefix=""):
    """The path options of ``spec`` (``parent[index].name`` at any depth) whose value holds a NUL byte.

    Python refuses such a path with ValueError, not the OSError that file handling expects.
    """
    found = []
    for name, option in spec.items():
        value = params.get(name) if isinstance(params, dict) else None
        label = prefix + name
        if option.get("type") == "path" or option.get("elements") == "path":
            values = value if isinstance(value, list) else [value]
            if any(isinstance(item, str) and "\x00" in item for item in values):
                found.append(label)
        elif option.get("options") and isinstance(value, dict):
            found += paths_with_nul_bytes(option["options"], value, label + ".")
        elif option.get("options") and isinstance(value, list):
            for index, item in enumerate(value):
                found += paths_with_nul_bytes(option["options"], item, "%s[%d]." % (label, index))
    return found


def fail_on_nul_bytes_in_paths(module):
    found = paths_with_nul_bytes(module.argument_spec, module.params)
    if found:
        module.fail_json(msg="%s must not contain a NUL byte" % ", ".join(found))
