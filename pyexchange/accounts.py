"""Accounts and API keys of a data directory.

Files (each written atomically: temp file, fsync, rename, directory fsync):
- `accounts.json`: the accounts and their names; account ids start at 1 (0 is the engine's
  fee account).
- `keys.json`: API keys. The secret is needed in clear to check an HMAC signature, so it is
  stored **encrypted** (Fernet, AES-128-CBC + HMAC-SHA256) with the data directory's
  `master.key` (mode 0600); the passphrase is stored only as a salted scrypt hash. Neither a
  secret nor a passphrase is ever logged.
- `demo-credentials.json`: written once, on first start, for the demo accounts (clear text
  on purpose: it is how a newcomer logs in).

Funds are not here: they live in the engine's ledger (deposits are journaled commands).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

ACCOUNTS_FILE = "accounts.json"
KEYS_FILE = "keys.json"
MASTER_KEY_FILE = "master.key"
DEMO_CREDENTIALS_FILE = "demo-credentials.json"
_SCRYPT = {"n": 1 << 14, "r": 8, "p": 1}
PASSPHRASE_CHARS_MAX = 64


@dataclass(frozen=True, slots=True)
class ApiKey:
    api_key: str
    account: int
    secret: str
    passphrase_scrypt: bytes
    salt: bytes
    label: str


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a user needs to sign requests (returned once, at creation)."""

    account: int
    api_key: str
    secret_key: str
    passphrase: str

    def as_json(self) -> dict[str, Any]:
        return {"account": self.account, "apiKey": self.api_key, "secretKey": self.secret_key,
                "passphrase": self.passphrase}  # fmt: skip


def write_json_atomically(path: Path, value: Any, *, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as out:
        json.dump(value, out, indent=2)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Makes the names in `directory` durable (a file created, renamed or linked there)."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Accounts:
    """The accounts of a data directory (ids and names)."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / ACCOUNTS_FILE
        self._names: dict[int, str] = {}
        if self._path.exists():
            doc = json.loads(self._path.read_text())
            self._names = {int(a["account"]): str(a["name"]) for a in doc["accounts"]}

    def create(self, name: str) -> int:
        if not name or len(name) > 64:
            raise ValueError("an account name must have 1 to 64 characters")
        if name in self._names.values():
            raise ValueError(f"an account named {name!r} exists")
        account = max(self._names, default=0) + 1
        self._names[account] = name
        doc = {"accounts": [{"account": a, "name": n} for a, n in sorted(self._names.items())]}
        write_json_atomically(self._path, doc)
        return account

    def exists(self, account: int) -> bool:
        return account in self._names

    def names(self) -> dict[int, str]:
        return dict(self._names)


class KeyStore:
    """API keys, their encrypted secrets and hashed passphrases. The server reloads the file
    when a key it does not know is used and the file changed, so `pyexchange keys create`
    works while the server runs."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / KEYS_FILE
        self._fernet = Fernet(_master_key(data_dir))
        self._keys: dict[str, ApiKey] = {}
        self._mtime_ns = -1
        self._verified: dict[str, bytes] = {}  # api key -> sha256 of a passphrase scrypt accepted
        self._reload()

    def _reload(self) -> None:
        try:
            mtime_ns = self._path.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime_ns == self._mtime_ns:
            return
        keys: dict[str, ApiKey] = {}
        for row in json.loads(self._path.read_text()):
            try:
                secret = self._fernet.decrypt(row["secretEncrypted"].encode()).decode()
            except InvalidToken:
                raise ValueError(
                    f"{self._path}: the secret of key {row['apiKey']} does not decrypt with master.key"
                ) from None
            keys[row["apiKey"]] = ApiKey(row["apiKey"], int(row["account"]), secret,
                                         bytes.fromhex(row["passphraseScrypt"]), bytes.fromhex(row["salt"]),
                                         row.get("label", ""))  # fmt: skip
        self._keys, self._mtime_ns = keys, mtime_ns

    def create(self, account: int, *, passphrase: str | None = None, label: str = "") -> Credentials:
        self._reload()
        if passphrase is None:
            passphrase = secrets.token_urlsafe(12)
        if not 1 <= len(passphrase) <= PASSPHRASE_CHARS_MAX:
            raise ValueError(f"a passphrase must have 1 to {PASSPHRASE_CHARS_MAX} characters")
        api_key, secret, salt = str(uuid.uuid4()), secrets.token_hex(16).upper(), secrets.token_bytes(16)
        rows = self._rows()
        rows.append({"apiKey": api_key, "account": account, "label": label, "createdMs": time.time_ns() // 1_000_000,
                     "secretEncrypted": self._fernet.encrypt(secret.encode()).decode(),
                     "passphraseScrypt": _scrypt(passphrase, salt).hex(), "salt": salt.hex()})  # fmt: skip
        write_json_atomically(self._path, rows, mode=0o600)
        self._reload()
        return Credentials(account, api_key, secret, passphrase)

    def _rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads(self._path.read_text()) if self._path.exists() else []
        return rows

    def get(self, api_key: str) -> ApiKey | None:
        key = self._keys.get(api_key)
        if key is None:
            self._reload()
            key = self._keys.get(api_key)
        return key

    def remembered(self, key: ApiKey, passphrase: str) -> bool | None:
        """Whether `passphrase` is the key's, if a passphrase of this key was accepted before
        (then the check is quick); None if only `passphrase_ok` can tell."""
        remembered = self._verified.get(key.api_key)
        if remembered is None:
            return None
        return hmac.compare_digest(remembered, hashlib.sha256(passphrase.encode()).digest())

    def passphrase_ok(self, key: ApiKey, passphrase: str) -> bool:
        """Whether `passphrase` is the key's (scrypt: slow on purpose); a passphrase accepted is
        remembered, as a digest, for the life of the process."""
        digest = hashlib.sha256(passphrase.encode()).digest()
        if len(passphrase) > PASSPHRASE_CHARS_MAX or not hmac.compare_digest(
            _scrypt(passphrase, key.salt), key.passphrase_scrypt
        ):
            return False
        self._verified[key.api_key] = digest
        return True

    def list(self) -> list[tuple[str, int, str]]:
        """(api key, account, label) of every key; no secrets."""
        self._reload()
        return [(k.api_key, k.account, k.label) for k in self._keys.values()]


def _scrypt(passphrase: str, salt: bytes) -> bytes:
    return hashlib.scrypt(passphrase.encode(), salt=salt, **_SCRYPT, dklen=32)


def _master_key(data_dir: Path) -> bytes:
    path = data_dir / MASTER_KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key)
            out.flush()
            os.fsync(out.fileno())
        return key
    return path.read_bytes().strip()
