"""Byte sizes as people type and read them: ``16K``, ``1MiB`` (binary units).

The one home of the rule for size arguments (``--batch-size``, ``--chunk-size``,
``bench --sizes``, ``benches/peers.py --sizes``) and of how sizes are printed.
"""

from __future__ import annotations

__all__ = ["KIB", "MIB", "MAX_SIZE", "parse_size", "format_size"]

KIB = 1024
MIB = 1024 * KIB
#: The largest size an argument may give: a batch, frame or benchmark message.
MAX_SIZE = 64 * MIB


def parse_size(text: str) -> int:
    """``"64"``, ``"16K"``, ``"16KiB"``, ``"1M"``, ``"1MiB"`` -> bytes (binary units);
    ValueError unless 1 byte to 64 MiB."""
    raw = text.strip().lower().removesuffix("ib").removesuffix("b")
    scale = 1
    if raw and raw[-1] in "km":
        scale = KIB if raw[-1] == "k" else MIB
        raw = raw[:-1]
    try:
        value = int(raw) * scale
    except ValueError:
        raise ValueError(f"not a size: {text!r} (examples: 64, 16K, 1M)") from None
    if not 1 <= value <= MAX_SIZE:
        raise ValueError(f"size {text!r} must be from 1 byte to 64 MiB")
    return value


def format_size(size: int) -> str:
    """1048576 -> ``"1 MiB"``, 16384 -> ``"16 KiB"``, 100 -> ``"100 B"``."""
    if size >= MIB and size % MIB == 0:
        return f"{size // MIB} MiB"
    if size >= KIB and size % KIB == 0:
        return f"{size // KIB} KiB"
    return f"{size} B"
