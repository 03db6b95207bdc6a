"""A scalar field as a colour PNG (stdlib: zlib + struct), north up, with a fixed perceptual colour map."""

from __future__ import annotations

import struct
import zlib

# anchor colours of a dark-blue -> red -> yellow ramp, at 0, 1/3, 2/3, 1
RAMP = ((12, 7, 134), (126, 3, 168), (204, 71, 120), (248, 149, 64), (240, 249, 33))


def colour(t: float) -> tuple[int, int, int]:
    """``t`` in [0, 1] (clamped) -> RGB on the ramp, linearly between anchors."""
    t = min(1.0, max(0.0, t)) * (len(RAMP) - 1)
    k = min(int(t), len(RAMP) - 2)
    f = t - k
    a, b = RAMP[k], RAMP[k + 1]
    return (round(a[0] + f * (b[0] - a[0])), round(a[1] + f * (b[1] - a[1])), round(a[2] + f * (b[2] - a[2])))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def render(field: list[list[float]], scale: int = 1) -> bytes:
    """PNG bytes of ``field`` (row 0 is the south edge, drawn at the bottom), each value a
    ``scale x scale`` block, coloured from its minimum to its maximum."""
    if not field or not field[0] or scale < 1:
        raise ValueError("need a non-empty field and scale >= 1")
    low = min(map(min, field))
    span = (max(map(max, field)) - low) or 1.0
    width, height = len(field[0]) * scale, len(field) * scale
    raw = bytearray()
    for row in reversed(field):
        line = b"".join(bytes(colour((v - low) / span)) * scale for v in row)
        raw += (b"\x00" + line) * scale  # filter type 0 per scanline
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(raw), 9))
        + _chunk(b"IEND", b"")
    )
