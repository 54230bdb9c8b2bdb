"""The vendored programs and snapshots are byte-for-byte the files PROVENANCE.md vouches for."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import services.chain.svm as svm_pkg

ROOT = Path(svm_pkg.__file__).parent
ROW = re.compile(r"^\| `([^`]+)` \| `([0-9a-f]{64})` \|$")


def _listed() -> dict[str, str]:
    rows = (ROW.match(line) for line in (ROOT / "PROVENANCE.md").read_text().splitlines())
    return {m.group(1): m.group(2) for m in rows if m}


def test_every_vendored_file_matches_its_checksum() -> None:
    listed = _listed()
    assert listed, "PROVENANCE.md lists no files"
    for name, digest in listed.items():
        assert hashlib.sha256((ROOT / name).read_bytes()).hexdigest() == digest, name


def test_every_vendored_file_is_listed() -> None:
    on_disk = {
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("*")
        if p.suffix in {".so", ".bin", ".json"} and "__pycache__" not in p.parts
    }
    assert on_disk == set(_listed())
