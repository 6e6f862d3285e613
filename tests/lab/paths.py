"""Where the lab keeps what it generates: lab down removes all of it except .lab/cache (built once, see lab.vllm)."""

import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = REPO_ROOT / ".lab"
SSH_DIR = STATE_DIR / "ssh"
KEY_PATH = SSH_DIR / "id_ed25519"
DISK_DIR = STATE_DIR / "disks"
ARTIFACT_BUILD_DIR = STATE_DIR / "artifact-tree"
INVENTORY_DIR = REPO_ROOT / "inventories" / "lab"
INVENTORY_PATH = INVENTORY_DIR / "hosts.yml"
ANSIBLE_CFG_PATH = INVENTORY_DIR / "ansible.cfg"
# Outside the repository so that lab down leaves nothing behind; shared by every checkout on the machine,
# as the network and container names are.
LOCK_PATH = Path(tempfile.gettempdir()) / "nti-lab.lock"
