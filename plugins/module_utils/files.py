# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Writing a file so that readers see the old content or the new, never a part of it."""

from __future__ import annotations

import contextlib
import os
import tempfile


def write_atomically(path, content, mode=None, move=os.replace):
    """Replace ``path`` with ``content`` (``bytes``, or ``str`` written as UTF-8) in one step.

    The content goes to a temporary file beside ``path`` (the same file system, so the move is a rename), is
    flushed to disk, then ``move(temporary, path)`` puts it in place: ``AnsibleModule.atomic_move`` in a module
    (it keeps the owner, mode and SELinux context of a file it replaces), ``os.replace`` elsewhere. ``mode`` is
    set on the temporary file before the move; without it the file has mkstemp's 0600.

    Raises what writing or moving raised (``OSError``), after removing the temporary file.
    """
    if isinstance(content, str):
        content = content.encode("utf-8")
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
