"""JPEGs carrying EXIF Orientation 1..8 and the pixel arrays OpenCV's
imdecode(IMREAD_COLOR) gives for them, for tests/unit/test_image_exif.c.

A 48 x 32 image of flat 16 x 16 color blocks (so JPEG's 4:2:0 blocks decode
back to nearly the same colors) is encoded once; orient_<k>.jpg is that JPEG
with an APP1 "Exif" segment (little-endian TIFF, IFD0 holding only tag 0x0112
= k) inserted after SOI; orient_8_be.jpg uses a big-endian TIFF header.
expected_<k>.png is the decoded base image rotated/flipped in numpy as the
EXIF specification (and OpenCV's ApplyExifOrientation) says.

Run from the repository root: python3 tests/golden/exif_golden.py
"""
import os
import struct
import zlib

import numpy as np
import torch
from torchvision.io import decode_jpeg, encode_jpeg

OUT = "tests/fixtures/exif"


def exif_segment(orientation, big_endian=False):
    e = ">" if big_endian else "<"
    tiff = (b"MM" if big_endian else b"II") + struct.pack(e + "HI", 42, 8)
    ifd = struct.pack(e + "H", 1) + struct.pack(e + "HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(e + "I", 0)
    payload = b"Exif\0\0" + tiff + ifd
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def png(path, arr):
    h, w, _ = arr.shape
    raw = b"".join(b"\0" + arr[y].tobytes() for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    data += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


def oriented(a, k):
    """The image a viewer shows for orientation k of stored pixels a (HWC)."""
    if k == 1:
        return a
    if k == 2:
        return a[:, ::-1]
    if k == 3:
        return a[::-1, ::-1]
    if k == 4:
        return a[::-1]
    t = a.transpose(1, 0, 2)
    if k == 5:
        return t
    if k == 6:
        return np.rot90(a, k=-1)       # 90 degrees clockwise
    if k == 7:
        return t[::-1, ::-1]
    return np.rot90(a, k=1)            # 8: 90 degrees counter-clockwise


def main():
    os.makedirs(OUT, exist_ok=True)
    colors = [[200, 30, 30], [30, 200, 30], [30, 30, 200], [220, 220, 40], [40, 200, 200], [120, 60, 160]]
    img = np.zeros((32, 48, 3), np.uint8)
    for i, c in enumerate(colors):
        by, bx = divmod(i, 3)
        img[16 * by:16 * by + 16, 16 * bx:16 * bx + 16] = c
    base = encode_jpeg(torch.from_numpy(img).permute(2, 0, 1).contiguous(), quality=95).numpy().tobytes()
    decoded = decode_jpeg(torch.frombuffer(bytearray(base), dtype=torch.uint8)).permute(1, 2, 0).numpy()
    assert np.abs(decoded[4::16, 4::16].astype(int) - img[4::16, 4::16]).max() <= 8   # block centres
    assert oriented(decoded, 6)[0, -1].tolist() == decoded[0, 0].tolist()     # top-left goes to top-right
    assert oriented(decoded, 8)[-1, 0].tolist() == decoded[0, 0].tolist()     # ... or bottom-left
    for k in range(1, 9):
        with open(f"{OUT}/orient_{k}.jpg", "wb") as f:
            f.write(base[:2] + exif_segment(k) + base[2:])
        png(f"{OUT}/expected_{k}.png", np.ascontiguousarray(oriented(decoded, k)))
    with open(f"{OUT}/orient_8_be.jpg", "wb") as f:
        f.write(base[:2] + exif_segment(8, big_endian=True) + base[2:])


if __name__ == "__main__":
    main()
