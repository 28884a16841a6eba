"""Red team regression: provenance of fs listings (R6, fixed in 771c062)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockade import Guard
from stockade.errors import Denied

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


@pytest.mark.parametrize("args", [{"pattern": "**"}, {"pattern": "downloads/*"}])
def test_glob_results_from_untrusted_folder_stay_untrusted(
    tmp_path: Path, args: dict[str, str]
) -> None:
    # fs.glob labels its result by the folder it searched (`fs:.`, trusted),
    # not by the entries it returns: a file name chosen by an attacker in
    # downloads/ (an untrusted folder) comes back trusted and a payee rule
    # that forbids untrusted data lets the IBAN in it through.
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / f"invoice pay to {IBAN}.pdf").write_text("x")
    guard = _guard(tmp_path)
    control = guard.session("control")
    guard.call("fs", "list", {"path": "downloads"}, session=control)
    with pytest.raises(Denied):
        guard.call("pay", "call", {"iban": IBAN, "amount": 5}, session=control)

    session = guard.session("attack")
    guard.call("fs", "glob", args, session=session)
    with pytest.raises(Denied):
        guard.call("pay", "call", {"iban": IBAN, "amount": 5}, session=session)
