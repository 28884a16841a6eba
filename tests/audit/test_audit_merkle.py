"""RFC 6962 tree, proofs and verifiers against the transparency-dev vectors."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockade.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    tree_root,
    verify_consistency,
    verify_inclusion,
)
from stockade.errors import AuditIntegrityError

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "data" / "merkle-vectors"

# the leaves of the upstream test tree (RFC 6962 test data)
LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]


def _b(s: str | None) -> bytes:
    return base64.b64decode(s) if s else b""


def _vectors(kind: str) -> list[Any]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    return [pytest.param(json.loads(f.read_text()), id=str(f.relative_to(VECTORS))) for f in files]


def test_vectors_are_there() -> None:
    assert len(_vectors("inclusion")) > 80
    assert len(_vectors("consistency")) > 80
    mutated = [p for p in _vectors("inclusion") + _vectors("consistency") if p.values[0]["wantErr"]]
    assert len(mutated) > 100


@pytest.mark.parametrize("vector", _vectors("inclusion"))
def test_inclusion_vector(vector: dict[str, Any]) -> None:
    args = (
        _b(vector["leafHash"]),
        vector["leafIdx"],
        vector["treeSize"],
        [_b(p) for p in vector["proof"] or []],
        _b(vector["root"]),
    )
    if vector["wantErr"]:
        with pytest.raises(AuditIntegrityError) as info:
            verify_inclusion(*args)
        assert info.value.kind == "invalid"
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("vector", _vectors("consistency"))
def test_consistency_vector(vector: dict[str, Any]) -> None:
    args = (
        vector["size1"],
        vector["size2"],
        [_b(p) for p in vector["proof"] or []],
        _b(vector["root1"]),
        _b(vector["root2"]),
    )
    if vector["wantErr"]:
        with pytest.raises(AuditIntegrityError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_root_of_upstream_tree_matches_the_vectors() -> None:
    happy = json.loads((VECTORS / "inclusion" / "1" / "happy-path.json").read_text())
    hashes = [leaf_hash(x) for x in LEAVES]
    assert tree_root(hashes) == _b(happy["root"])
    assert hashes[happy["leafIdx"]] == _b(happy["leafHash"])
    assert inclusion_proof(hashes, happy["leafIdx"]) == [_b(p) for p in happy["proof"]]


def test_our_proofs_equal_the_vectors() -> None:
    hashes = [leaf_hash(x) for x in LEAVES]
    for f in sorted((VECTORS / "consistency").glob("*/happy-path.json")):
        v = json.loads(f.read_text())
        if v["size1"] == 0:
            continue
        assert consistency_proof(hashes, v["size1"], v["size2"]) == [
            _b(p) for p in v["proof"] or []
        ]
        assert tree_root(hashes[: v["size2"]]) == _b(v["root2"])


def test_empty_tree_and_hashes() -> None:
    assert tree_root([]) == EMPTY_ROOT
    assert CompactRange().root() == EMPTY_ROOT
    assert leaf_hash(b"x") != node_hash(b"", b"x")  # domain separation


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=40), st.data())
def test_generated_trees_prove_and_mutations_fail(leaves: list[bytes], data: st.DataObject) -> None:
    hashes = [leaf_hash(x) for x in leaves]
    n = len(hashes)
    size = data.draw(st.integers(1, n))
    index = data.draw(st.integers(0, size - 1))
    root = tree_root(hashes[:size])
    cr = CompactRange()
    for h in hashes[:size]:
        cr.append(h)
    assert cr.root() == root and cr.copy().root() == root
    proof = inclusion_proof(hashes, index, size)
    verify_inclusion(hashes[index], index, size, proof, root)
    if proof:
        bad = list(proof)
        k = data.draw(st.integers(0, len(bad) - 1))
        bad[k] = bytes([bad[k][0] ^ 1]) + bad[k][1:]
        with pytest.raises(AuditIntegrityError):
            verify_inclusion(hashes[index], index, size, bad, root)
        with pytest.raises(AuditIntegrityError):
            verify_inclusion(hashes[index], index, size, proof[:-1], root)
    old = data.draw(st.integers(1, size))
    cproof = consistency_proof(hashes, old, size)
    verify_consistency(old, size, cproof, tree_root(hashes[:old]), root)
    if cproof:
        with pytest.raises(AuditIntegrityError):
            verify_consistency(old, size, [*cproof, cproof[0]], tree_root(hashes[:old]), root)
        with pytest.raises(AuditIntegrityError):
            verify_consistency(old, size, cproof, tree_root(hashes[:old]), EMPTY_ROOT)


def test_proof_arguments_out_of_range() -> None:
    hashes = [leaf_hash(b"a"), leaf_hash(b"b")]
    with pytest.raises(ValueError, match="not in a tree"):
        inclusion_proof(hashes, 2)
    with pytest.raises(ValueError, match="no consistency proof"):
        consistency_proof(hashes, 0, 2)
