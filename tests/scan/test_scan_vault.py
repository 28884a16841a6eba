from __future__ import annotations

import os
from pathlib import Path

import pytest

from stockade.errors import ConfigurationError, ScanError
from stockade.scan._base import Hit
from stockade.scan.vault import EncryptedFileStore, Vault, key_from_env, mask_text

KEY = bytes(range(32))


def test_same_value_same_pseudonym_per_session() -> None:
    v = Vault()
    a = v.pseudonym("s", "email", "ada@example.org")
    assert a == "<EMAIL_1>"
    assert v.pseudonym("s", "email", "ada@example.org") == a
    assert v.pseudonym("s", "email", "bob@example.org") == "<EMAIL_2>"
    assert v.pseudonym("s", "national-id", "123-45-6789") == "<NATIONAL_ID_1>"
    assert v.pseudonym("other", "email", "bob@example.org") == "<EMAIL_1>"


def test_restore_only_within_the_session() -> None:
    v = Vault()
    v.pseudonym("s", "email", "ada@example.org", source="tool:crm")
    text, restored = v.restore("s", "to <EMAIL_1>, not <EMAIL_9>")
    assert text == "to ada@example.org, not <EMAIL_9>"
    assert restored[0][1].source == "tool:crm"
    assert v.restore("t", "to <EMAIL_1>")[0] == "to <EMAIL_1>"


def test_modes() -> None:
    v = Vault(key=KEY)
    text = "mail ada@example.org and ada@example.org, key AKIA0000"
    hits = [
        Hit("pii", "email", 5, 20),
        Hit("pii", "email", 25, 40),
        Hit("secrets", "aws-access-key", 46, 54),
    ]
    out, done = mask_text(
        text, hits, {"email": "pseudonym", "secrets": "redact"}, vault=v, session="s"
    )
    assert out == "mail <EMAIL_1> and <EMAIL_1>, key [REDACTED:AWS-ACCESS-KEY]"
    assert all(m for _, m in done)
    out, _ = mask_text(text, hits[:1], {"email": "hash"}, vault=v, session="s")
    assert out.startswith("mail <EMAIL#") and "ada@" not in out.split(" and ")[0]
    assert out == mask_text(text, hits[:1], {"email": "hash"}, vault=v, session="t")[0]
    out, done = mask_text(text, hits[:1], {"email": "label"}, vault=v, session="s")
    assert out == text and done[0][1] is False


def test_overlapping_hits_are_masked_as_their_union() -> None:
    text = "xx SECRETVALUE-with-tail yy"
    hits = [Hit("secrets", "generic-secret", 3, 14), Hit("pii", "email", 10, 24)]
    out, _ = mask_text(text, hits, {}, vault=Vault(), session="s")
    assert out == "xx [REDACTED:GENERIC-SECRET] yy"


def test_persisted_vault_round_trip(tmp_path: Path) -> None:
    v = Vault(EncryptedFileStore(tmp_path, KEY), key=KEY)
    token = v.pseudonym("sess-1", "email", "ada@example.org")
    files = list(tmp_path.glob("*.vault"))
    assert len(files) == 1
    assert b"ada@example.org" not in files[0].read_bytes()
    assert b"sess-1" not in files[0].name.encode()
    again = Vault(EncryptedFileStore(tmp_path, KEY), key=KEY)
    assert again.restore("sess-1", token)[0] == "ada@example.org"


def test_persisted_vault_fails_closed_on_tamper_and_wrong_key(tmp_path: Path) -> None:
    Vault(EncryptedFileStore(tmp_path, KEY), key=KEY).pseudonym("s", "email", "a@b.example")
    wrong = Vault(EncryptedFileStore(tmp_path, bytes(32)), key=bytes(32))
    # the wrong key does not even find the file name: an empty table, nothing restored
    assert wrong.restore("s", "<EMAIL_1>")[0] == "<EMAIL_1>"
    path = next(tmp_path.glob("*.vault"))
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(ScanError):
        Vault(EncryptedFileStore(tmp_path, KEY), key=KEY).restore("s", "<EMAIL_1>")


def test_a_file_moved_to_another_session_does_not_open(tmp_path: Path) -> None:
    store = EncryptedFileStore(tmp_path, KEY)
    Vault(store, key=KEY).pseudonym("alice", "email", "a@b.example")
    Vault(store, key=KEY).pseudonym("mallory", "email", "m@b.example")
    os.replace(store._path("alice"), store._path("mallory"))
    with pytest.raises(ScanError):
        Vault(store, key=KEY).restore("mallory", "<EMAIL_1>")


def test_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VK", KEY.hex())
    assert key_from_env("VK") == KEY
    monkeypatch.setenv("VK", "c2hvcnQ=")
    with pytest.raises(ConfigurationError):
        key_from_env("VK")
    monkeypatch.delenv("VK")
    with pytest.raises(ConfigurationError):
        key_from_env("VK")


def test_workers_in_other_processes_share_one_consistent_table(tmp_path: Path) -> None:
    import subprocess
    import sys

    here = Vault(EncryptedFileStore(tmp_path, KEY), key=KEY)
    assert here.pseudonym("s", "email", "a@example.org") == "<EMAIL_1>"
    worker = (
        "import sys\n"
        "from stockade.scan.vault import EncryptedFileStore, Vault\n"
        f"v = Vault(EncryptedFileStore({str(tmp_path)!r}, bytes(range(32))), key=bytes(range(32)))\n"
        "print(v.pseudonym('s', 'email', sys.argv[1]), v.restore('s', '<EMAIL_1>')[0])\n"
    )
    outs = [
        subprocess.run(
            [sys.executable, "-c", worker, f"w{i}@example.org"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.split()
        for i in range(3)
    ]
    # each worker saw the others' entries: no number was handed out twice
    assert [o[0] for o in outs] == ["<EMAIL_2>", "<EMAIL_3>", "<EMAIL_4>"]
    assert all(o[1] == "a@example.org" for o in outs)
    # and this process, which made <EMAIL_1> earlier, resolves theirs (no stale cache)
    assert here.restore("s", "<EMAIL_3>")[0] == "w1@example.org"
    assert here.pseudonym("s", "email", "new@example.org") == "<EMAIL_5>"


def test_concurrent_writers_lose_no_entries(tmp_path: Path) -> None:
    import subprocess
    import sys

    worker = (
        "import sys\n"
        "from stockade.scan.vault import EncryptedFileStore, Vault\n"
        f"v = Vault(EncryptedFileStore({str(tmp_path)!r}, bytes(range(32))), key=bytes(range(32)))\n"
        "for i in range(25):\n"
        "    v.pseudonym('s', 'email', f'{sys.argv[1]}-{i}@example.org')\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", worker, f"p{n}"]) for n in range(3)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    v = Vault(EncryptedFileStore(tmp_path, KEY), key=KEY)
    values = {v.restore("s", f"<EMAIL_{i}>")[0] for i in range(1, 76)}
    assert len(values) == 75 and all(x.endswith("@example.org") for x in values)


def test_origins_link_a_real_value_back_to_its_pseudonym() -> None:
    v = Vault()
    v.pseudonym("s", "email", "ada@example.org", source="tool:crm")
    found = v.origins("s", "mail ada@example.org now")
    assert [(t, e.source) for t, e in found] == [("<EMAIL_1>", "tool:crm")]
    assert v.origins("t", "mail ada@example.org now") == []
