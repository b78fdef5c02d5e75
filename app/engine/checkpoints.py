"""Reading GPT-SoVITS checkpoint files without executing pickled code.

Upstream writes three kinds of single-file checkpoints, all ``torch.save`` zip archives:
- GPT (``.ckpt``): ``{"weight": state_dict, "config": dict, "info": str}``;
- SoVITS (``.pth``): the same keys, but ``config`` is upstream's ``utils.HParams`` object, and newer
  files replace the zip's leading ``PK`` with a two-byte version header (``03`` v3 LoRA, ``04`` v4
  LoRA, ``05`` v2Pro, ``06`` v2ProPlus);
- plain state dicts (speaker-verification model, vocoders).

Everything goes through ``torch.load(weights_only=True)``, whose unpickler only builds tensors,
containers and the globals we allow. The only global we allow is a stand-in for ``utils.HParams``,
which is turned into plain dicts right after loading, so nothing upstream-shaped leaks further.
A crafted pickle that names any other global (``os.system``, ``builtins.eval``...) is refused.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

# Version headers upstream writes over the zip magic. "00"-"02" are listed by upstream's reader
# too, so we accept them the same way.
VERSION_HEADERS: frozenset[bytes] = frozenset({b"00", b"01", b"02", b"03", b"04", b"05", b"06"})
ZIP_MAGIC = b"PK"


class CheckpointError(ValueError):
    """A weight file that cannot be used. The message names the file and what is wrong."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{Path(path).name}: {reason}")


class _HParamsStandIn:
    """Receives the attributes of a pickled ``utils.HParams``; converted to dicts right away."""


# Upstream pickles ``utils.HParams``; nested configs written by the conformance corpus's generator
# carry its own HParams class (``__main__`` when run as a script, ``weights`` when imported).
_HPARAMS_NAMES = ("utils.HParams", "__main__.HParams", "weights.HParams")
_SAFE_GLOBALS: list[Any] = [(_HParamsStandIn, name) for name in _HPARAMS_NAMES] + [_HParamsStandIn]


def _to_plain(value: Any) -> Any:
    """Recursively turn HParams stand-ins and mappings into dicts (tensors are left alone)."""
    if isinstance(value, _HParamsStandIn):
        return {k: _to_plain(v) for k, v in vars(value).items()}
    if isinstance(value, Mapping) and not isinstance(value, torch.Tensor):
        plain = {k: _to_plain(v) for k, v in value.items()}
        # Keep OrderedDict-ness irrelevant: state dicts are looked up by key, never by order.
        return plain
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_to_plain(v) for v in value)
    return value


def read_header(path: str | Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(2)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file safely and return it as plain data (dicts, lists, tensors, scalars)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            header = f.read(4)
    except OSError as exc:
        raise CheckpointError(path, f"cannot be read ({exc.strerror or exc})") from None
    if len(header) < 4:
        raise CheckpointError(path, "is empty or truncated")
    source: str | io.BytesIO
    if header[:2] == ZIP_MAGIC:
        # Memory-mapped: tensors are read from the page cache instead of a second in-memory copy of
        # the file (a v3 SoVITS file is 1.5 GB).
        source = str(path)
    elif header[:2] in VERSION_HEADERS:
        source = io.BytesIO(ZIP_MAGIC + path.read_bytes()[2:])
    else:
        raise CheckpointError(path, "is not a PyTorch checkpoint (unknown file header)")
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            obj = torch.load(source, map_location="cpu", weights_only=True, mmap=isinstance(source, str))
    except pickle.UnpicklingError as exc:
        # torch's message is long and suggests weights_only=False; we never do that.
        detail = str(exc).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
        raise CheckpointError(
            path, f"refused: it contains objects that are not plain weights ({detail})"
        ) from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, ValueError, KeyError) as exc:
        raise CheckpointError(path, f"is corrupt or truncated ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(path, f"holds a {type(obj).__name__}, expected a dictionary")
    return _to_plain(obj)


def weights_of(checkpoint: Mapping[str, Any], path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict inside an upstream GPT/SoVITS checkpoint (its ``weight`` entry)."""
    weight = checkpoint.get("weight")
    if not isinstance(weight, Mapping):
        raise CheckpointError(path, "has no 'weight' dictionary (not a GPT-SoVITS checkpoint)")
    return dict(weight)


def check_state_dict(
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, tuple[int, ...]],
    path: str | Path,
    ignore_unexpected: tuple[str, ...] = (),
) -> None:
    """Strictly compare a state dict with the keys and shapes a model expects.

    ``ignore_unexpected`` lists key prefixes that official files carry but inference never uses
    (upstream loads with ``strict=False`` for that reason); everything else must match exactly.
    Raises CheckpointError naming the first few missing, unexpected and mis-shaped keys.
    """
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected and not k.startswith(ignore_unexpected)]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(shape)}"
        for k, shape in expected.items()
        if k in state and tuple(state[k].shape) != tuple(shape)
    ]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
        if items:
            shown = ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise CheckpointError(path, "does not fit the model (" + "; ".join(problems) + ")")


def load_state_strictly(
    model: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str | Path,
    ignore_unexpected: tuple[str, ...] = (),
) -> None:
    """Load ``state`` (already in the model's key names) into ``model`` after ``check_state_dict``
    against the model's own keys and shapes. Tensors are copied into the model's dtype."""
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    check_state_dict(state, expected, source, ignore_unexpected=ignore_unexpected)
    model.load_state_dict({key: state[key] for key in expected}, strict=True)
