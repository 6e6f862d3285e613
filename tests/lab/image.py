"""The lab base image: a debootstrapped Debian 12 root fs, tagged with the hash of its recipe."""

import hashlib
import shutil
import tempfile
from pathlib import Path

from lab import PREFIX, podman
from lab.proc import run

RECIPE_DIR = Path(__file__).resolve().parent / "image"
IMAGE_NAME = f"localhost/{PREFIX}base"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
DEBOOTSTRAP_TIMEOUT_S = 900


def recipe_hash() -> str:
    """Hash of every recipe file (names and contents): the image tag."""
    digest = hashlib.sha256()
    for path in sorted(RECIPE_DIR.iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def image_ref() -> str:
    return f"{IMAGE_NAME}:{recipe_hash()}"


def recipe_packages() -> list[str]:
    lines = (RECIPE_DIR / "packages.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def ensure_image(log=print) -> tuple[str, bool]:
    """Return (image reference, whether it was built now); build only when no image has this recipe's tag."""
    ref = image_ref()
    if podman.image_exists(ref):
        return ref, False
    log(f"building {ref} (debootstrap {SUITE}, about a minute and a half)")
    build_image(ref)
    remove_older_images(ref, log)
    return ref, True


def remove_older_images(keep: str, log=print) -> None:
    """Drop base images of earlier recipes; one still used by a container stays (rmi without --force fails)."""
    for ref in podman.image_refs(IMAGE_NAME):
        if ref != keep and podman.remove_image(ref):
            log(f"removed the outdated image {ref}")


def build_image(ref: str) -> None:
    # /var/tmp, not /tmp: the root fs is about 350 MB and /tmp may be a small tmpfs.
    workdir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}rootfs-", dir="/var/tmp"))
    rootfs = workdir / "rootfs"
    try:
        debootstrap(rootfs)
        configure_rootfs(rootfs)
        import_rootfs(rootfs, ref)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def debootstrap(rootfs: Path) -> None:
    include = ",".join(recipe_packages())
    args = ["debootstrap", "--variant=minbase", f"--include={include}", SUITE, str(rootfs), MIRROR]
    run(args, timeout=DEBOOTSTRAP_TIMEOUT_S)


def configure_rootfs(rootfs: Path) -> None:
    """Run the recipe's setup.sh inside the root fs (it needs DNS for apt-get update)."""
    resolv = rootfs / "etc" / "resolv.conf"
    resolv.unlink(missing_ok=True)
    shutil.copyfile("/etc/resolv.conf", resolv)
    shutil.copyfile(RECIPE_DIR / "setup.sh", rootfs / "lab-setup.sh")
    try:
        run(["chroot", str(rootfs), "/bin/sh", "/lab-setup.sh"], timeout=600)
    finally:
        (rootfs / "lab-setup.sh").unlink(missing_ok=True)
        resolv.unlink(missing_ok=True)
        resolv.write_text("")


def import_rootfs(rootfs: Path, ref: str) -> None:
    archive = rootfs.parent / "rootfs.tar"
    run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(archive), "."], timeout=600)
    run(["podman", "import", "--change", "CMD=/sbin/init", str(archive), ref], timeout=600)
