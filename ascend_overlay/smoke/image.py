"""The test image of the text+image request, made here: no download, no imaging library.

A red square on a white background, as a PNG written with zlib: simple enough that a working
vision-language model names the colour, so the answer in the report can be judged by eye.
"""

from __future__ import annotations

import base64
import struct
import zlib

EXPECTED_ANSWER = "red"
QUESTION = "What colour is the square in this image? Answer with one word."


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def red_square_png(size: int = 224, margin: int = 56) -> bytes:
    """An RGB PNG, ``size`` pixels square (224: the input size most vision towers resize to)."""
    white, red = b"\xff\xff\xff", b"\xdc\x14\x14"
    rows = []
    for y in range(size):
        inside_y = margin <= y < size - margin
        row = b"".join(red if inside_y and margin <= x < size - margin else white for x in range(size))
        rows.append(b"\x00" + row)  # filter type 0 (none) per scanline
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
            + _chunk(b"IEND", b""))


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()
