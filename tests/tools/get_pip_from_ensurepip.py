"""Stand-in for the pip bootstrap script that ansible-test downloads before it fills a sanity venv.

ansible-test fetches that script from a host outside the package registries, which CI machines cannot
reach; its own error message says the script may be provided by hand instead. This one does what the
script is for with what Python ships: ensurepip puts a pip into the empty venv, then that pip installs the
packages ansible-test asked for (pip itself at its pinned version among them) from the package index.
"""

from __future__ import annotations

import subprocess
import sys

# get-pip's own options; plain `pip install` installs neither setuptools nor wheel unless asked.
GET_PIP_ONLY_OPTIONS = {"--no-setuptools", "--no-wheel"}

subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True, stdout=subprocess.DEVNULL)
pip_arguments = [argument for argument in sys.argv[1:] if argument not in GET_PIP_ONLY_OPTIONS]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *pip_arguments]))
