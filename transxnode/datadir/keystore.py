"""An encrypted keystore: private keys at rest, one password-protected file per key.

Like geth's keystore, a node never keeps a bare private key on disk. Each key is a
JSON file ``<bech32 address>.json`` (mode 0600, in a 0700 directory) holding the
32-byte Ed25519 seed encrypted with XSalsa20-Poly1305 (`nacl.secret.SecretBox`)
under a key derived from the password with Argon2id and a random salt. The Argon2id
limits are stored in the file, so the defaults can be raised later without breaking
old keys. Files are written atomically: a crash leaves the old state or the new
one, never half a key.

The file also holds ``kdf.check``, a 16-byte BLAKE2b digest of the derived key. It
tells a wrong password (check differs) from a damaged ciphertext (check matches but
decryption fails). It reveals nothing the authenticated ciphertext does not already:
either one lets an attacker test a password guess, at the cost of one Argon2id run.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import os
import tempfile
from pathlib import Path

from nacl.exceptions import CryptoError
from nacl.pwhash import argon2id
from nacl.secret import SecretBox
from nacl.signing import SigningKey

from consensus.rules.keys import PUBLIC_KEY_BYTES, AddressError, address_of, decode_address, encode_address

VERSION = 1
SEED_BYTES = 32
_CHECK_BYTES = 16
_CIPHERTEXT_BYTES = SecretBox.NONCE_SIZE + SEED_BYTES + SecretBox.MACBYTES
_MAX_FILE_BYTES = 64 * 1024


class KeystoreError(Exception):
    """A keystore operation failed; the message is one line a CLI can print as is."""


class Keystore:
    """The encrypted keys in one directory, looked up by Bech32 address."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        opslimit: int = argon2id.OPSLIMIT_INTERACTIVE,
        memlimit: int = argon2id.MEMLIMIT_INTERACTIVE,
    ) -> None:
        """`opslimit` and `memlimit` are the Argon2id costs for keys this keystore writes;
        reading always uses the costs stored in each file."""
        self.directory = Path(directory)
        self.opslimit = opslimit
        self.memlimit = memlimit

    def create(self, password: str) -> str:
        """Encrypt a new random key under `password`; return its address."""
        return self.import_seed(os.urandom(SEED_BYTES), password)

    def import_seed(self, seed: bytes, password: str) -> str:
        """Encrypt the key with this 32-byte Ed25519 seed; return its address.

        Refuses to replace a key file that already exists for the address."""
        if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
            raise KeystoreError(f"an Ed25519 seed is {SEED_BYTES} bytes")
        _check_password(password)
        public_key = bytes(SigningKey(seed).verify_key)
        address = encode_address(address_of(public_key))
        path = self._path(address)
        if path.exists():
            raise KeystoreError(f"a key for {address} already exists: {path}")
        salt = os.urandom(argon2id.SALTBYTES)
        key = _derive(password, salt, self.opslimit, self.memlimit)
        document = {
            "version": VERSION,
            "address": address,
            "public_key": public_key.hex(),
            "kdf": {
                "name": "argon2id",
                "salt": salt.hex(),
                "opslimit": self.opslimit,
                "memlimit": self.memlimit,
                "check": _check_value(key).hex(),
            },
            "cipher": {
                "name": "xsalsa20poly1305",
                "ciphertext": bytes(SecretBox(key).encrypt(seed)).hex(),
            },
        }
        self._write_new(path, json.dumps(document, indent=2) + "\n")
        return address

    def addresses(self) -> list[str]:
        """The addresses with a key file here, sorted; other files are ignored."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.glob("*.json"):
            try:
                if encode_address(decode_address(path.stem)) == path.stem and path.is_file():
                    found.append(path.stem)
            except AddressError:
                continue
        return sorted(found)

    def has(self, address: str) -> bool:
        """True when there is a key file for `address`."""
        return self._path(_canonical(address)).is_file()

    def public_key(self, address: str) -> bytes:
        """The 32-byte public key of `address`, read from its file without a password."""
        return bytes.fromhex(self._load(_canonical(address))["public_key"])

    def unlock(self, address: str, password: str) -> SigningKey:
        """The signing key of `address`, decrypted with `password`."""
        address = _canonical(address)
        document = self._load(address)
        kdf, path = document["kdf"], self._path(address)
        key = _derive(password, bytes.fromhex(kdf["salt"]), kdf["opslimit"], kdf["memlimit"])
        if not hmac.compare_digest(_check_value(key), bytes.fromhex(kdf["check"])):
            raise KeystoreError(f"wrong password for {address}")
        try:
            seed = SecretBox(key).decrypt(bytes.fromhex(document["cipher"]["ciphertext"]))
        except CryptoError:
            raise _corrupt(path, "the ciphertext does not decrypt") from None
        signing_key = SigningKey(seed)
        if bytes(signing_key.verify_key).hex() != document["public_key"]:
            raise _corrupt(path, "the decrypted key does not match the public key")
        return signing_key

    # -- files -----------------------------------------------------------------

    def _path(self, address: str) -> Path:
        return self.directory / f"{address}.json"

    def _load(self, address: str) -> dict:
        """The checked contents of `address`'s key file (everything but the ciphertext's
        integrity, which only the password can check)."""
        path = self._path(address)
        try:
            with open(path, "rb") as f:
                raw = f.read(_MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            raise KeystoreError(f"no key for {address} in {self.directory}") from None
        except OSError as e:
            raise KeystoreError(f"cannot read {path}: {e.strerror or e}") from None
        if len(raw) > _MAX_FILE_BYTES:
            raise _corrupt(path, "too large for a key file")
        try:
            document = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _corrupt(path, "not JSON") from None
        problem = _format_problem(document, address)
        if problem:
            raise _corrupt(path, problem)
        return document

    def _write_new(self, path: Path, text: str) -> None:
        """Write `path` atomically with mode 0600: temp file, fsync, rename, fsync dir."""
        if not self.directory.exists():
            self.directory.mkdir(mode=0o700, parents=True)
            os.chmod(self.directory, 0o700)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def read_password(
    *, password_file: str | None, env: str = "TRANSX_PASSWORD", prompt: bool, confirm: bool = False
) -> str:
    """The password from `password_file` (its first line), else the `env` variable,
    else the terminal when `prompt` (asked twice when `confirm`); never empty."""
    if password_file is not None:
        try:
            with open(password_file, encoding="utf-8") as f:
                password = f.readline().removesuffix("\n").removesuffix("\r")
        except (OSError, UnicodeDecodeError) as e:
            reason = getattr(e, "strerror", None) or "not UTF-8 text"
            raise KeystoreError(f"cannot read password file {password_file}: {reason}") from None
    elif env in os.environ:
        password = os.environ[env]
    elif prompt:
        password = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Repeat password: ") != password:
            raise KeystoreError("the passwords do not match")
    else:
        raise KeystoreError(f"no password: give --password-file, set {env}, or run in a terminal")
    _check_password(password)
    return password


# -- helpers -------------------------------------------------------------------


def _canonical(address: str) -> str:
    try:
        return encode_address(decode_address(address))
    except AddressError as e:
        raise KeystoreError(str(e)) from None


def _check_password(password: str) -> None:
    if not isinstance(password, str) or not password:
        raise KeystoreError("the password is empty")


def _derive(password: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    return argon2id.kdf(SecretBox.KEY_SIZE, password.encode("utf-8"), salt, opslimit=opslimit, memlimit=memlimit)


def _check_value(key: bytes) -> bytes:
    return hashlib.blake2b(key, digest_size=_CHECK_BYTES, person=b"transx-keycheck").digest()


def _corrupt(path: Path, reason: str) -> KeystoreError:
    return KeystoreError(f"corrupt or foreign key file {path}: {reason}")


def _hex_of_length(value: object, length: int) -> bool:
    if not isinstance(value, str) or len(value) != 2 * length:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


def _int_within(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _format_problem(document: object, address: str) -> str | None:
    """What is wrong with a parsed key file named after `address`, or None."""
    if not isinstance(document, dict) or document.get("version") != VERSION:
        return f"not a version {VERSION} TransX key file"
    if document.get("address") != address:
        return "the address inside does not match the file name"
    public_key = document.get("public_key")
    if not _hex_of_length(public_key, PUBLIC_KEY_BYTES) or public_key != public_key.lower():
        return "bad public_key"
    if encode_address(address_of(bytes.fromhex(public_key))) != address:
        return "the public key does not match the address"
    kdf, cipher = document.get("kdf"), document.get("cipher")
    if not isinstance(kdf, dict) or kdf.get("name") != "argon2id":
        return "unknown key derivation (expected argon2id)"
    if not _hex_of_length(kdf.get("salt"), argon2id.SALTBYTES) or not _hex_of_length(kdf.get("check"), _CHECK_BYTES):
        return "bad kdf salt or check"
    if not _int_within(kdf.get("opslimit"), argon2id.OPSLIMIT_MIN, argon2id.OPSLIMIT_MAX) or not _int_within(
        kdf.get("memlimit"), argon2id.MEMLIMIT_MIN, argon2id.MEMLIMIT_MAX
    ):
        return "kdf opslimit or memlimit out of range"
    if not isinstance(cipher, dict) or cipher.get("name") != "xsalsa20poly1305":
        return "unknown cipher (expected xsalsa20poly1305)"
    if not _hex_of_length(cipher.get("ciphertext"), _CIPHERTEXT_BYTES):
        return "bad ciphertext length"
    return None
