"""The broken-policy corpus: every file must fail with the expected, located message.

Each file in ``broken/`` starts with ``# error: ...`` lines: the text each
problem must contain (after the file name), in order.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stockade import Policy, PolicyError

BROKEN = sorted((Path(__file__).parent / "broken").glob("*.yaml"))


def _expected(path: Path) -> list[str]:
    return [
        line.removeprefix("# error:").strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith("# error:")
    ]


def test_corpus_is_large_enough() -> None:
    assert len(BROKEN) >= 30


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_policy_is_rejected_with_a_located_message(path: Path) -> None:
    expected = _expected(path)
    assert expected, f"{path.name} has no `# error:` line"
    with pytest.raises(PolicyError) as info:
        Policy.from_file(path)
    problems = info.value.problems
    messages = [str(p).removeprefix(f"{path}:") for p in problems]
    assert len(problems) >= len(expected), messages
    for want, got in zip(expected, messages, strict=False):
        assert want in got, f"expected {want!r} in {got!r}"
    for p in problems:
        assert p.file == str(path)
        assert p.line >= 1 and p.column >= 1


def test_error_message_style() -> None:
    """Lowercase start, one line, no trailing period."""
    for path in BROKEN:
        try:
            Policy.from_file(path)
        except PolicyError as exc:
            for p in exc.problems:
                assert "\n" not in p.message
                assert not p.message.endswith(".")
                assert p.message[:1] == p.message[:1].lower()


def test_unreadable_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        Policy.from_file(tmp_path / "missing.yaml")


def test_non_utf8_file_is_a_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"version: 1\nname: caf\xe9\n")
    with pytest.raises(PolicyError, match="not UTF-8"):
        Policy.from_file(path)
