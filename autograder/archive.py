"""A folder as bytes and back: how a submission travels to a grading worker and its graded notebooks back
(a zip with a fixed date and order, so that the same content is the same bytes and the same digest)."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import zipfile
from pathlib import Path, PurePosixPath

#: Every entry gets this date: the bytes depend on the content alone.
_DATE = (1980, 1, 1, 0, 0, 0)


def pack(folder: Path) -> bytes:
    """The regular files under ``folder`` (symbolic links and other files are left out), as zip bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for here, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                path = Path(here) / name
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    continue
                info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), _DATE)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, path.read_bytes())
    return out.getvalue()


def digest(data: bytes) -> str:
    """The hex sha256 of packed bytes."""
    return hashlib.sha256(data).hexdigest()


def unpack(data: bytes, dst: Path) -> None:
    """Write the files of :func:`pack`'s bytes under ``dst``; a name that would leave ``dst`` is refused."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            rel = PurePosixPath(info.filename)
            if rel.is_absolute() or ".." in rel.parts or info.is_dir():
                raise ValueError(f"refused a packed name: {info.filename!r}")
            target = dst / Path(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(info))
