"""Put get_pip_from_ensurepip.py where ansible-test looks for its cached pip bootstrap script."""

from __future__ import annotations

import pathlib
import re
import shutil

from ansible_test._internal import python_requirements


def pinned_pip_version():
    """The pip version this ansible-test bootstraps (its infrastructure packages pin it)."""
    source = pathlib.Path(python_requirements.__file__).read_text(encoding="utf-8")
    return re.search(r"pip='([0-9.]+)'", source).group(1)


def main():
    cache = pathlib.Path.home() / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / ("get_pip_%s.py" % pinned_pip_version().replace(".", "_"))
    shutil.copyfile(pathlib.Path(__file__).with_name("get_pip_from_ensurepip.py"), target)
    print("pip bootstrap for ansible-test: %s" % target)


if __name__ == "__main__":
    main()
