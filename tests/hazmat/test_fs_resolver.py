"""The raw resolver: what the kernel (openat2) and the walk fallback refuse on their own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stockade import ConfigurationError, FSError
from stockade.hazmat.fs_resolver import (
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    NaiveResolver,
    Resolver,
    has_openat2,
    openat2,
    renameat2,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "d").mkdir(parents=True)
    (r / "d" / "f.txt").write_text("inside")
    (tmp_path / "out.txt").write_text("outside")
    os.symlink("../../out.txt", r / "d" / "up")
    os.symlink("f.txt", r / "d" / "same")
    os.symlink("/proc/self/root/etc/passwd", r / "magic")
    return r


def _read(r: Resolver | NaiveResolver, path: str) -> str:
    fd = r.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 100).decode()
    finally:
        os.close(fd)


def test_the_kernel_has_openat2() -> None:
    assert has_openat2()


@pytest.mark.parametrize("mode", ["openat2", "walk"])
@pytest.mark.parametrize(
    "path", ["../out.txt", "/etc/passwd", "d/../../out.txt", "d/up", "magic", "d/same", "x\0y"]
)
def test_refused_without_following(root: Path, mode: str, path: str) -> None:
    r = Resolver(root, mode=mode)  # type: ignore[arg-type]
    try:
        with pytest.raises(FSError):
            _read(r, path)
    finally:
        r.close()


@pytest.mark.parametrize("mode", ["openat2", "walk"])
def test_plain_paths_open(root: Path, mode: str) -> None:
    r = Resolver(root, mode=mode)  # type: ignore[arg-type]
    assert _read(r, "d/f.txt") == "inside"
    assert _read(r, "./d//f.txt") == "inside"
    fd = r.open("", os.O_RDONLY | os.O_DIRECTORY)
    os.close(fd)
    r.close()
    r.close()  # closing twice is harmless


def test_in_root_symlinks_follow_only_beneath(root: Path) -> None:
    r = Resolver(root, symlinks="in-root")
    assert _read(r, "d/same") == "inside"
    fd = r.open("d/same", os.O_RDONLY)
    assert r.fd_path(fd) == "d/f.txt"
    os.close(fd)
    for path in ("d/up", "magic"):
        with pytest.raises(FSError, match="leaves the root"):
            _read(r, path)
    r.close()


def test_open_parent_needs_a_name(root: Path) -> None:
    r = Resolver(root)
    for path in ("", ".", "d/..", "d/."):
        with pytest.raises(FSError, match="no name"):
            r.open_parent(path)
    fd, name = r.open_parent("d/f.txt")
    assert name == "f.txt" and os.path.samestat(os.fstat(fd), os.stat(root / "d"))
    os.close(fd)
    assert r.fd_path(r.root_fd) == "."
    r.close()


def test_missing_root_and_bad_modes(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot open"):
        Resolver(tmp_path / "missing")
    with pytest.raises(ConfigurationError, match="need openat2"):
        Resolver(tmp_path, symlinks="in-root", mode="walk")


def test_openat2_reports_errno(root: Path) -> None:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError) as info:
            openat2(fd, "../out.txt", os.O_RDONLY, 0, 0x08)
        assert info.value.errno == 18  # EXDEV
    finally:
        os.close(fd)


def test_renameat2_noreplace_and_exchange(root: Path) -> None:
    (root / "a").write_text("a")
    (root / "b").write_text("b")
    with pytest.raises(FileExistsError):
        renameat2(-100, str(root / "a"), -100, str(root / "b"), RENAME_NOREPLACE)
    renameat2(-100, str(root / "a"), -100, str(root / "b"), RENAME_EXCHANGE)
    assert (root / "a").read_text() == "b" and (root / "b").read_text() == "a"


def test_the_naive_resolver_is_not_confined(root: Path) -> None:
    """Why it lives in hazmat: it follows everything."""
    r = NaiveResolver(root)
    assert _read(r, "d/up") == "outside"
    assert _read(r, "../out.txt") == "outside"
    assert r.fd_path(r.root_fd) is None
    r.close()
