"""A tiny registry of the course's weights, verified by sha256 on every load (d2l's DATA_HUB habit).

Nothing is ever downloaded: each checkpoint ships inside the package (``lrdiff_helpers/weights/``) and is
re-made by the script named in its entry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["CHECKPOINTS", "Checkpoint", "ChecksumError", "checkpoint_path", "load_state_dict", "save_backbone", "sha256_of"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class Checkpoint:
    file: str
    sha256: str
    made_by: str


CHECKPOINTS: dict[str, Checkpoint] = {
    "small_resnet_digits": Checkpoint(
        file="small_resnet_digits.pt",
        sha256="af5cf4e1fa2d2a65a98f3eb1692d1988297664458fbf94be3ee6952426fc5bb8",
        made_by="scripts/pretrain_backbone.py",
    ),
    "small_resnet_digits_0to4": Checkpoint(
        file="small_resnet_digits_0to4.pt",
        sha256="409b36110fc6706f1d5cb2a4fdc4e4e3aba248b7ccd681d2f4b2f79f9d27ad45",
        made_by="scripts/pretrain_backbone.py --checkpoint small_resnet_digits_0to4",
    ),
    "tiny_vit_digits": Checkpoint(
        file="tiny_vit_digits.pt",
        sha256="7e0c2297ea7e482119cefd4b5af1ab9ab9bc94a710027c61775c20b16cd10cf4",
        made_by="scripts/pretrain_vit.py",
    ),
}


class ChecksumError(RuntimeError):
    """A checkpoint's bytes are not the ones the registry names."""


def sha256_of(path: Path | str) -> str:
    """The sha256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_path(name: str) -> Path:
    """Where the registered checkpoint ``name`` lives."""
    try:
        entry = CHECKPOINTS[name]
    except KeyError:
        raise KeyError(f"no checkpoint named {name!r}; known: {sorted(CHECKPOINTS)}") from None
    return WEIGHTS_DIR / entry.file


def load_state_dict(name: str, path: Path | str | None = None) -> dict[str, torch.Tensor]:
    """Load a registered checkpoint after checking its sha256.

    Args:
        name: registry name, e.g. ``"small_resnet_digits"``.
        path: read this file instead of the packaged one (it must still have the registered checksum).

    Raises:
        FileNotFoundError: the file is missing; re-make it with the script named in the registry.
        ChecksumError: the file's sha256 differs from the registry's.
    """
    packaged = checkpoint_path(name)  # raises a clear KeyError for an unknown name
    file = packaged if path is None else Path(path)
    entry = CHECKPOINTS[name]
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint {name!r} not found at {file}; re-make it with `python {entry.made_by}`")
    digest = sha256_of(file)
    if digest != entry.sha256:
        raise ChecksumError(
            f"checkpoint {name!r} at {file} has sha256 {digest}, expected {entry.sha256}; "
            f"the file is corrupt or stale: re-make it with `python {entry.made_by}`"
        )
    return torch.load(file, map_location="cpu", weights_only=True)


def save_backbone(model: torch.nn.Module, out: Path | str, head_prefix: str) -> str:
    """Save ``model``'s state dict without its head (the keys under ``head_prefix``) for the registry.

    Used by the scripts that make the checkpoints (``scripts/pretrain_*.py``); returns the line they print:
    where the file went, its size and the sha256 to put in :data:`CHECKPOINTS`.
    """
    out = Path(out)
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(head_prefix)}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    return f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB), sha256 {sha256_of(out)}"
