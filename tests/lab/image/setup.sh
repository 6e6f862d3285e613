# shellcheck shell=sh
# Runs inside the debootstrapped root filesystem (chroot) once, at image build.
# Changing this file changes the image tag, so the image is rebuilt.
set -eu

cat > /etc/apt/sources.list <<'SOURCES'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
apt-get update -qq
apt-get clean

# Every host must get its own SSH host keys and machine id, so none are baked into the image.
rm -f /etc/ssh/ssh_host_*
mkdir -p /etc/systemd/system/ssh.service.d
cat > /etc/systemd/system/ssh.service.d/lab-host-keys.conf <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
UNIT
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id

mkdir -p /root/.ssh
chmod 700 /root/.ssh

# Timers that take the apt lock at random times would make role tests flaky;
# units that need a console or real hardware only fail in a container;
# binfmt_misc is shared with this machine in a privileged container, so a host must never set it.
for unit in apt-daily.timer apt-daily-upgrade.timer getty@tty1.service console-getty.service \
            systemd-remount-fs.service e2scrub_all.timer e2scrub_reap.service fstrim.timer \
            systemd-binfmt.service proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount; do
    ln -sf /dev/null "/etc/systemd/system/$unit"
done
systemctl enable ssh.service >/dev/null 2>&1 || true
