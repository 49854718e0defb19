"""The guards of an OCI layer's extraction (workers.fetch.ocitar), on archives built here."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from shared.errors import SourceError
from workers.fetch.ocitar import Limits, check_declared, extract_layer, member_problem


def archive(*members: tuple[str, str, bytes | str], compress: bool = True) -> bytes:
    """A tar (gzipped) of (name, kind, content): kind file, dir, sym, link, fifo."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, content in members:
            info = tarfile.TarInfo(name)
            data = content.encode() if isinstance(content, str) else content
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE,
                         "link": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE,
                         "dev": tarfile.CHRTYPE}[kind]
            if kind in ("sym", "link"):
                info.linkname = data.decode()
            tar.addfile(info)
    raw = buf.getvalue()
    return gzip.compress(raw) if compress else raw


def extract(blob: bytes, dest: Path, limits: Limits = Limits(), declared: int | None = None,
            digest: str | None = None) -> int:
    dest.mkdir(exist_ok=True)
    return extract_layer(io.BytesIO(blob), dest, limits=limits, where="source config: layer",
                         declared=len(blob) if declared is None else declared,
                         digest=digest or "sha256:" + hashlib.sha256(blob).hexdigest())


def test_a_tree_of_yaml_is_extracted_with_dirs_and_inner_symlinks(tmp_path):
    blob = archive(("./", "dir", ""), ("apps/", "dir", ""),
                   ("apps/web.yaml", "file", "kind: ConfigMap\n"),
                   ("apps/same.yaml", "sym", "web.yaml"), ("top.yaml", "sym", "apps/web.yaml"))
    assert extract(blob, tmp_path / "t") == 5
    assert (tmp_path / "t/apps/web.yaml").read_text() == "kind: ConfigMap\n"
    assert (tmp_path / "t/top.yaml").read_text() == "kind: ConfigMap\n"


def test_a_plain_tar_is_read_too(tmp_path):
    extract(archive(("a.yaml", "file", "a: 1\n"), compress=False), tmp_path / "t")
    assert (tmp_path / "t/a.yaml").is_file()


@pytest.mark.parametrize("name", ["../evil.yaml", "apps/../../evil.yaml", "/etc/evil.yaml"])
def test_paths_that_leave_the_tree_are_refused(tmp_path, name):
    with pytest.raises(SourceError, match="refused") as err:
        extract(archive(("ok.yaml", "file", "a: 1\n"), (name, "file", "x")), tmp_path / "t")
    assert repr(name) in str(err.value) and "source config" in str(err.value)
    assert not (tmp_path / "evil.yaml").exists()


@pytest.mark.parametrize("link", ["/etc/passwd", "../outside", "a/../../outside"])
def test_a_symlink_out_is_refused(tmp_path, link):
    with pytest.raises(SourceError, match=r"is a symlink to .*outside the artifact"):
        extract(archive(("evil.yaml", "sym", link)), tmp_path / "t")


def test_writing_through_an_inner_symlink_is_refused(tmp_path):
    blob = archive(("d/", "dir", ""), ("l", "sym", "d"), ("l/x.yaml", "file", "a: 1\n"))
    with pytest.raises(SourceError, match="written through the symlink 'l'"):
        extract(blob, tmp_path / "t")


@pytest.mark.parametrize("kind,said", [("link", "hard link"), ("fifo", "FIFO"),
                                       ("dev", "device")])
def test_special_members_are_refused(tmp_path, kind, said):
    blob = archive(("a.yaml", "file", "a: 1\n"), ("b", kind, "a.yaml" if kind == "link" else ""))
    with pytest.raises(SourceError, match=said):
        extract(blob, tmp_path / "t")


def test_too_many_files_and_too_many_bytes_are_refused(tmp_path):
    many = archive(*[(f"f{i}.yaml", "file", "a: 1\n") for i in range(5)])
    with pytest.raises(SourceError, match="more than 4 files"):
        extract(many, tmp_path / "a", Limits(files=4))
    bomb = archive(("big.yaml", "file", b"0" * 2_000_000))      # inflates 1000-fold
    assert len(bomb) < 10_000
    with pytest.raises(SourceError, match="add up to more than 1000000 bytes"):
        extract(bomb, tmp_path / "b", Limits(tree_bytes=1_000_000))


def test_the_declared_size_is_checked_before_reading():
    with pytest.raises(SourceError, match="1073741824 bytes, larger than the 67108864 byte "
                                          "limit .*not downloaded"):
        check_declared("source config: layer", 2**30, Limits())


def test_more_bytes_than_declared_or_other_bytes_are_refused(tmp_path):
    blob = archive(("a.yaml", "file", "a: 1\n"))
    with pytest.raises(SourceError, match="more than the 10 bytes"):
        extract(blob, tmp_path / "a", declared=10)
    with pytest.raises(SourceError, match="do not match its manifest"):
        extract(blob, tmp_path / "b", digest="sha256:" + "0" * 64)


def test_garbage_is_not_a_tar(tmp_path):
    with pytest.raises(SourceError, match="not a readable tar archive"):
        extract(b"this is no archive at all" * 40, tmp_path / "t")


def test_member_names():
    assert member_problem("a/b.yaml") is None
    assert member_problem("./a/b.yaml") is None
    assert "absolute" in member_problem("/a")
    assert ".." in member_problem("a/../../b")
    assert member_problem("") is not None
