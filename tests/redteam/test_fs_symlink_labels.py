"""Red team R15 (fixed): with `symlinks: in-root`, content read through a link carries the target's labels."""

from __future__ import annotations

from pathlib import Path

from stockade import Guard

IBAN = "GB33BUKB20201555555555"


def _guard(root: Path) -> Guard:
    guard = Guard.from_text(
        f"""
version: 1
rules:
  - {{id: pay, tool: pay, effect: allow}}
fs:
  root: {root}
  allow: {{read: ["**"], list: ["**"], glob: ["**"], search: ["**"]}}
  labels: {{untrusted: ["downloads/**"]}}
flow:
  rules:
    - {{id: payee, tool: pay, args: [iban], forbid: untrusted, effect: deny}}
"""
    )

    @guard.tool("pay")
    def pay(iban: str, amount: int) -> str:
        return f"paid {amount} to {iban}"

    return guard


def test_in_root_symlink_keeps_the_targets_labels(tmp_path: Path) -> None:
    # With `symlinks: in-root`, FSTool checks that the policy lets the agent
    # read the symlink's target, but labels the result by the link's path:
    # `notes/todo.txt -> ../inbox/mail.txt` comes back trusted, and a link to
    # `hr/pay.csv` comes back internal instead of secret.
    from stockade.model import Confidentiality, Integrity

    (tmp_path / "inbox").mkdir()
    (tmp_path / "hr").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "inbox" / "mail.txt").write_text(f"pay {IBAN}\n")
    (tmp_path / "hr" / "pay.csv").write_text("ada,120000\n")
    (tmp_path / "notes" / "todo.txt").symlink_to("../inbox/mail.txt")
    (tmp_path / "notes" / "numbers.csv").symlink_to("../hr/pay.csv")
    guard = Guard.from_text(
        f"""
version: 1
fs:
  root: {tmp_path}
  allow: {{read: ["**"]}}
  symlinks: in-root
  labels: {{untrusted: ["inbox/**"], confidential: ["hr/**"]}}
"""
    )
    mail = guard.call("fs", "read", {"path": "notes/todo.txt"})
    assert any(lb.integrity is Integrity.UNTRUSTED for lb in mail.labels), mail.labels
    pay = guard.call("fs", "read", {"path": "notes/numbers.csv"})
    assert any(lb.confidentiality is Confidentiality.SECRET for lb in pay.labels), pay.labels
