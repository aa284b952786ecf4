"""Models shipped with lgn-fpga. ``lgn-fpga build`` uses :data:`DEFAULT` when no model is given."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import UserError

DEFAULT = "digits"


def shipped() -> dict[str, Path]:
    """Name → file of every model inside the package."""
    found = {}
    for entry in resources.files(__name__).iterdir():
        name = entry.name
        if name.endswith((".json", ".npz")) and not name.startswith("_"):
            found[name.rsplit(".", 1)[0]] = Path(str(entry))
    return dict(sorted(found.items()))


def resolve(model: str | Path | None) -> Path:
    """A model argument to a file: an existing path, or the name of a shipped model."""
    if model is None:
        model = DEFAULT
    path = Path(model)
    if path.exists():
        return path
    models = shipped()
    if str(model) in models:
        return models[str(model)]
    names = ", ".join(models) or "none"
    raise UserError(f"{model}: no such file, and no shipped model of that name "
                    f"(shipped: {names})")
