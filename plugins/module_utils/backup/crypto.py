# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Client-side encryption of a backup's archive stream: AES-256-GCM in authenticated frames, so it streams.

The key is derived from the operator's secret with scrypt and a random salt per backup; the manifest keeps the
salt and a key check (an HMAC under the derived key), so a wrong key is refused before any part is read.
Stream layout: ``MAGIC`` then frames of ``flag (1 byte) | length (4 bytes) | ciphertext+tag``. Frame ``i`` uses
the nonce ``i`` (96-bit big endian) and authenticates ``flag | i``; the last frame has flag 1, so a stream cut
short, frames swapped or dropped all fail authentication.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import os
import struct
import traceback

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
except ImportError:
    AESGCM = None
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()
else:
    CRYPTOGRAPHY_IMPORT_ERROR = None

from ansible_collections.namtech.internal_ai.plugins.module_utils.backup.common import BackupError

HAS_CRYPTOGRAPHY = AESGCM is not None
ALGORITHM = "AES-256-GCM"
MAGIC = b"NTAIBAK1"
FRAME_SIZE = 1024 * 1024
TAG_SIZE = 16
FRAME_HEADER = struct.Struct(">BI")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 15, 8, 1
KEY_CHECK_TEXT = b"namtech.internal_ai backup key check"
MIN_SECRET_LENGTH = 16


def require_cryptography():
    if not HAS_CRYPTOGRAPHY:
        raise BackupError("client-side encryption needs the Python library cryptography on the host that runs the "
                          "backup (Debian: python3-cryptography)")


def _derive(secret, salt, n, r, p):
    if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
        raise BackupError("encryption_key must be at least %d characters; keep a long random secret in Ansible "
                          "Vault, for example from 'openssl rand -base64 32'" % MIN_SECRET_LENGTH)
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(secret.encode("utf-8"))


def _key_check(key):
    return hmac.new(key, KEY_CHECK_TEXT, hashlib.sha256).hexdigest()


def new_encryption(secret):
    """``(manifest fields, key)`` for a new backup: a fresh salt, so every backup has its own key."""
    require_cryptography()
    salt = os.urandom(16)
    key = _derive(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    params = {
        "algorithm": ALGORITHM,
        "frame_size": FRAME_SIZE,
        "kdf": "scrypt",
        "salt": base64.b64encode(salt).decode("ascii"),
        "n": SCRYPT_N,
        "r": SCRYPT_R,
        "p": SCRYPT_P,
        "key_check": _key_check(key),
    }
    return params, key


def key_for_backup(secret, params, backup_id):
    """The key of an encrypted backup; a clear error when ``secret`` is missing or not the one it was made with."""
    if not params:
        return None
    if params.get("algorithm") != ALGORITHM or params.get("kdf") != "scrypt":
        raise BackupError("backup %s is encrypted with %s/%s, which this version cannot read"
                          % (backup_id, params.get("algorithm"), params.get("kdf")))
    if not secret:
        raise BackupError("backup %s is encrypted: give the encryption_key it was made with" % backup_id)
    require_cryptography()
    try:
        salt = base64.b64decode(params["salt"])
        key = _derive(secret, salt, int(params["n"]), int(params["r"]), int(params["p"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise BackupError("the encryption fields of backup %s's manifest are damaged (%s)" % (backup_id, exc)) from None
    if not hmac.compare_digest(_key_check(key), str(params.get("key_check", ""))):
        raise BackupError("wrong encryption key: backup %s was encrypted with another key. Nothing was restored; "
                          "give the encryption_key that was in use when it was made" % backup_id)
    return key


def _manifest_bytes(manifest):
    unsigned = copy.deepcopy(manifest)
    unsigned["encryption"].pop("manifest_hmac", None)
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sign_manifest(manifest, key):
    """Add an HMAC of the whole manifest under the backup's key, so an altered manifest is detected on restore."""
    manifest["encryption"]["manifest_hmac"] = hmac.new(key, _manifest_bytes(manifest), hashlib.sha256).hexdigest()


def verify_manifest(manifest, key):
    expected = hmac.new(key, _manifest_bytes(manifest), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, str(manifest["encryption"].get("manifest_hmac", ""))):
        raise BackupError("the manifest of backup %s was altered after the backup (its HMAC does not match). Nothing "
                          "was restored; restore another backup (backup=<id>)" % manifest["id"])


def _nonce(index):
    return index.to_bytes(12, "big")


def _associated_data(flag, index):
    return bytes([flag]) + index.to_bytes(8, "big")


class EncryptingWriter:
    """A writable that encrypts what it is given in frames and writes them to ``sink``."""

    def __init__(self, sink, key, frame_size=FRAME_SIZE):
        self.sink = sink
        self.cipher = AESGCM(key)
        self.frame_size = frame_size
        self.buffer = bytearray()
        self.index = 0
        self.closed = False
        sink.write(MAGIC)

    def write(self, data):
        self.buffer += data
        while len(self.buffer) > self.frame_size:
            self._emit(bytes(self.buffer[:self.frame_size]), final=False)
            del self.buffer[:self.frame_size]
        return len(data)

    def _emit(self, plaintext, final):
        flag = 1 if final else 0
        ciphertext = self.cipher.encrypt(_nonce(self.index), plaintext, _associated_data(flag, self.index))
        self.sink.write(FRAME_HEADER.pack(flag, len(ciphertext)))
        self.sink.write(ciphertext)
        self.index += 1

    def close(self):
        """Write the last frame (possibly empty), which marks the end of the stream."""
        if not self.closed:
            self._emit(bytes(self.buffer), final=True)
            self.buffer = bytearray()
            self.closed = True


class DecryptingReader:
    """A readable over an encrypted stream; every frame is authenticated before its bytes are handed out."""

    def __init__(self, source, key, backup_id, frame_size=FRAME_SIZE):
        self.source = source
        self.cipher = AESGCM(key)
        self.backup_id = backup_id
        self.max_frame = frame_size + TAG_SIZE
        self.frame = b""
        self.offset = 0
        self.index = 0
        self.finished = False
        if self._read_exactly(len(MAGIC)) != MAGIC:
            raise BackupError("backup %s does not start like an encrypted archive of this collection; its parts are "
                              "damaged or not encrypted" % backup_id)

    def _read_exactly(self, size):
        data = b""
        while len(data) < size:
            chunk = self.source.read(size - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def _damaged(self, what):
        return BackupError("backup %s: encrypted frame %d %s; the backup is damaged or was altered. Nothing was "
                           "restored from it" % (self.backup_id, self.index, what))

    def _next_frame(self):
        header = self._read_exactly(FRAME_HEADER.size)
        if not header:
            raise self._damaged("is missing: the archive ends before its last frame (truncated)")
        if len(header) < FRAME_HEADER.size:
            raise self._damaged("has a cut-off header")
        flag, length = FRAME_HEADER.unpack(header)
        if flag not in (0, 1) or length < TAG_SIZE or length > self.max_frame:
            raise self._damaged("has an invalid header")
        ciphertext = self._read_exactly(length)
        if len(ciphertext) < length:
            raise self._damaged("is cut off")
        try:
            plaintext = self.cipher.decrypt(_nonce(self.index), ciphertext, _associated_data(flag, self.index))
        except InvalidTag:
            raise self._damaged("failed authentication") from None
        if flag == 1:
            if self.source.read(1):
                raise self._damaged("is followed by unexpected data")
            self.finished = True
        self.index += 1
        return plaintext

    def read(self, size=-1):
        pieces = []
        wanted = size
        while wanted != 0:
            available = len(self.frame) - self.offset
            if available <= 0:
                if self.finished:
                    break
                self.frame, self.offset = self._next_frame(), 0
                continue
            take = available if wanted < 0 else min(wanted, available)
            pieces.append(self.frame[self.offset:self.offset + take])
            self.offset += take
            if wanted > 0:
                wanted -= take
        return b"".join(pieces)
