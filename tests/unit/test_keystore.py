"""The encrypted keystore with real PyNaCl and real files (Argon2id runs ~10 times)."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
from nacl.pwhash import argon2id

from consensus.rules import keys
from transxnode.datadir.keystore import Keystore, KeystoreError, read_password

PASSWORD = "correct horse battery staple"
SEED = bytes(range(32))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Keystore, str]:
    """A keystore, in a directory it had to create, holding one new key."""
    ks = Keystore(tmp_path_factory.mktemp("home") / "nested" / "keystore")
    return ks, ks.create(PASSWORD)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _edit(path: Path, change) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def test_round_trip_create_list_unlock_sign(store):
    ks, address = store
    assert address.startswith("trx1")
    assert ks.addresses() == [address]
    assert ks.has(address) and ks.has(address.upper())
    key = ks.unlock(address, PASSWORD)
    assert keys.encode_address(keys.address_of_key(key)) == address
    assert ks.public_key(address) == keys.public_key(key)
    signature = keys.sign(key, b"sell 3 kWh at 0.21")
    assert keys.verify_signature(ks.public_key(address), b"sell 3 kWh at 0.21", signature)


def test_wrong_password_is_rejected(store):
    ks, address = store
    with pytest.raises(KeystoreError, match=f"^wrong password for {address}$"):
        ks.unlock(address, PASSWORD + "!")


def test_file_is_0600_and_directory_0700(store):
    ks, address = store
    assert _mode(ks.directory) == 0o700
    assert _mode(ks.directory / f"{address}.json") == 0o600
    assert [p.name for p in ks.directory.iterdir()] == [f"{address}.json"]


def test_file_format_and_no_plaintext_seed(tmp_path):
    ks = Keystore(tmp_path)
    address = ks.import_seed(SEED, PASSWORD)
    raw = (tmp_path / f"{address}.json").read_bytes()
    assert SEED not in raw and SEED.hex().encode() not in raw and SEED.hex().upper().encode() not in raw
    document = json.loads(raw)
    assert document["version"] == 1 and document["address"] == address
    assert document["kdf"]["name"] == "argon2id"
    assert document["kdf"]["opslimit"] == argon2id.OPSLIMIT_INTERACTIVE
    assert document["kdf"]["memlimit"] == argon2id.MEMLIMIT_INTERACTIVE
    assert document["cipher"]["name"] == "xsalsa20poly1305"
    assert bytes.fromhex(document["public_key"]) == keys.public_key(ks.unlock(address, PASSWORD))


def test_import_same_seed_twice_is_refused(tmp_path):
    ks = Keystore(tmp_path)
    address = ks.import_seed(SEED, PASSWORD)
    before = (tmp_path / f"{address}.json").read_bytes()
    with pytest.raises(KeystoreError, match="already exists"):
        ks.import_seed(SEED, "another password")
    assert (tmp_path / f"{address}.json").read_bytes() == before


def test_tampered_ciphertext_is_corrupt_not_wrong_password(tmp_path):
    ks = Keystore(tmp_path)
    address = ks.import_seed(SEED, PASSWORD)
    path = tmp_path / f"{address}.json"

    def flip_last_byte(document):
        ciphertext = bytearray.fromhex(document["cipher"]["ciphertext"])
        ciphertext[-1] ^= 1
        document["cipher"]["ciphertext"] = ciphertext.hex()

    _edit(path, flip_last_byte)
    with pytest.raises(KeystoreError, match=f"corrupt .*{path.name}.*does not decrypt"):
        ks.unlock(address, PASSWORD)


def test_public_key_not_matching_address_is_corrupt(store, tmp_path):
    ks, address = store
    path = tmp_path / f"{address}.json"
    path.write_bytes((ks.directory / f"{address}.json").read_bytes())
    _edit(path, lambda d: d.update(public_key=keys.public_key(keys.generate()).hex()))
    copy = Keystore(tmp_path)
    for call in (lambda: copy.public_key(address), lambda: copy.unlock(address, PASSWORD)):
        with pytest.raises(KeystoreError, match=f"corrupt .*{path.name}.*public key does not match the address"):
            call()


def test_seed_not_matching_public_key_is_corrupt(tmp_path):
    """A file consistent in its name, address and public key, but with another key's ciphertext."""
    ks = Keystore(tmp_path)
    victim = ks.import_seed(SEED, PASSWORD)
    other = ks.import_seed(bytes(32), PASSWORD)
    victim_path, other_path = tmp_path / f"{victim}.json", tmp_path / f"{other}.json"
    other_document = json.loads(other_path.read_text())
    _edit(victim_path, lambda d: d.update(kdf=other_document["kdf"], cipher=other_document["cipher"]))
    with pytest.raises(KeystoreError, match=f"corrupt .*{victim_path.name}.*does not match the public key"):
        ks.unlock(victim, PASSWORD)


def test_foreign_files_unknown_and_invalid_addresses(store, tmp_path):
    ks, address = store
    stray = Keystore(tmp_path)
    assert stray.addresses() == [] and not stray.has(address)
    with pytest.raises(KeystoreError, match=f"^no key for {address} in {re.escape(str(tmp_path))}$"):
        stray.unlock(address, PASSWORD)
    with pytest.raises(KeystoreError, match="bad address checksum"):
        stray.has(address[:-1] + ("q" if address[-1] != "q" else "p"))
    with pytest.raises(KeystoreError, match="not a TransX address"):
        stray.public_key("0xdeadbeef")

    (tmp_path / f"{address}.json").write_text("not json at all")
    (tmp_path / f".{address}.abc.tmp").write_text("{}")
    (tmp_path / "notes.json").write_text("{}")
    assert stray.addresses() == [address]
    with pytest.raises(KeystoreError, match=f"corrupt .*{address}.json: not JSON"):
        stray.public_key(address)
    (tmp_path / f"{address}.json").write_text(json.dumps({"version": 3, "crypto": {}}))
    with pytest.raises(KeystoreError, match=f"corrupt .*{address}.json: not a version 1"):
        stray.unlock(address, PASSWORD)


def test_costs_are_read_from_the_file(tmp_path):
    cheap = Keystore(tmp_path, opslimit=argon2id.OPSLIMIT_MIN, memlimit=argon2id.MEMLIMIT_MIN)
    address = cheap.create("pw")
    kdf = json.loads((tmp_path / f"{address}.json").read_text())["kdf"]
    assert (kdf["opslimit"], kdf["memlimit"]) == (argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)
    key = Keystore(tmp_path).unlock(address, "pw")
    assert keys.encode_address(keys.address_of_key(key)) == address


def test_bad_seed_and_empty_password_are_refused(tmp_path):
    ks = Keystore(tmp_path)
    with pytest.raises(KeystoreError, match="32 bytes"):
        ks.import_seed(b"short", PASSWORD)
    with pytest.raises(KeystoreError, match="empty"):
        ks.create("")
    assert ks.addresses() == []


# -- read_password ---------------------------------------------------------------


def test_password_from_file_first_line_wins_over_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSX_PASSWORD", "from env")
    path = tmp_path / "pw"
    path.write_text(" spaces kept \nsecond line\n")
    assert read_password(password_file=str(path), prompt=False) == " spaces kept "
    path.write_bytes(b"windows\r\n")
    assert read_password(password_file=str(path), prompt=True) == "windows"


def test_password_from_env(monkeypatch):
    monkeypatch.setenv("TRANSX_PASSWORD", "from env")
    assert read_password(password_file=None, prompt=False) == "from env"
    monkeypatch.setenv("MY_PW", "other")
    assert read_password(password_file=None, env="MY_PW", prompt=False) == "other"


def test_no_password_source(monkeypatch):
    monkeypatch.delenv("TRANSX_PASSWORD", raising=False)
    with pytest.raises(KeystoreError) as info:
        read_password(password_file=None, prompt=False)
    assert str(info.value) == "no password: give --password-file, set TRANSX_PASSWORD, or run in a terminal"


def test_empty_password_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSX_PASSWORD", "")
    with pytest.raises(KeystoreError, match="empty"):
        read_password(password_file=None, prompt=True)
    path = tmp_path / "pw"
    path.write_text("\nsecond line is not the password\n")
    with pytest.raises(KeystoreError, match="empty"):
        read_password(password_file=str(path), prompt=False)


def test_unreadable_password_file_is_named(tmp_path):
    missing = tmp_path / "no-such-file"
    with pytest.raises(KeystoreError, match=f"cannot read password file {re.escape(str(missing))}"):
        read_password(password_file=str(missing), prompt=False)
    with pytest.raises(KeystoreError, match=f"cannot read password file {re.escape(str(tmp_path))}: Is a directory"):
        read_password(password_file=str(tmp_path), prompt=False)
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.write_text("secret\n")
        locked.chmod(0)
        expected = f"cannot read password file {re.escape(str(locked))}: Permission denied"
        with pytest.raises(KeystoreError, match=expected):
            read_password(password_file=str(locked), prompt=False)
