"""Reading images: EXIF orientation (photos upright), with alpha and 16-bit depth kept as before."""
import struct

import cv2
import numpy as np
import pytest

from invtool import image
from invtool.image import read_image


def exif_app1(orientation: int) -> bytes:
    """A JPEG APP1 segment holding a little-endian TIFF header and one IFD with the Orientation tag."""
    tiff = b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff += struct.pack("<I", 0)   # no next IFD
    body = b"Exif\0\0" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def pattern(h=16, w=24) -> np.ndarray:
    """BGR uint8 with a white top-left block on black and a grey bottom row: every turn and flip differs."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:8, :8] = 255
    img[-4:] = 128
    return img


def jpeg_with_orientation(path, img: np.ndarray, orientation: int):
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    data = buf.tobytes()
    path.write_bytes(data[:2] + exif_app1(orientation) + data[2:])   # right after SOI
    return path


def test_jpeg_exif_orientation_6_reads_upright(tmp_path):
    """Orientation 6: the stored 24x16 (WxH) picture is shown rotated 90° clockwise, 16x24, with the white
    block (stored top-left) at the top right; OpenCV's IMREAD_UNCHANGED alone gave it as stored."""
    path = jpeg_with_orientation(tmp_path / "photo.jpg", pattern(), 6)
    x, notes = read_image(path)
    assert x.shape == (1, 3, 24, 16)
    assert x[0, :, :8, -8:].mean() > 0.9 and x[0, :, :8, 4:8].mean() < 0.1   # white block top right
    assert x[0, :, :, :4].mean() == pytest.approx(128 / 255, abs=0.02)     # grey row now the left column
    assert any("EXIF orientation (6)" in n for n in notes)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_opencv_upright_decode(tmp_path, orientation):
    """All eight orientations as OpenCV's own colour decode turns them (it applies EXIF orientation)."""
    path = jpeg_with_orientation(tmp_path / f"o{orientation}.jpg", pattern(), orientation)
    assert image.exif_orientation(path.read_bytes()) == orientation
    ref = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    x = read_image(path)[0][0].permute(1, 2, 0).numpy()
    assert x.shape == ref.shape
    assert np.abs(x - ref).max() < 1e-6


def test_png_alpha_and_16_bit_kept_with_orientation(tmp_path):
    """A 16-bit RGBA PNG with an eXIf chunk: turned upright, still composited on white, still 16-bit."""
    img = np.zeros((4, 6, 4), np.uint16)
    img[0, 0] = (65535, 0, 0, 65535)     # opaque blue (BGRA) top left
    img[..., 3][1:] = 0                  # the rest transparent below the first row
    ok, buf = cv2.imencode(".png", img)
    data = buf.tobytes()
    tiff = exif_app1(8)[10:]             # the same TIFF payload; eXIf chunk before IEND
    chunk = struct.pack(">I", len(tiff)) + b"eXIf" + tiff + b"\0\0\0\0"   # CRC unchecked by the reader
    iend = data.rindex(b"IEND") - 4
    assert image.exif_orientation(data[:iend] + chunk + data[iend:]) == 8
    x, notes = read_image(_write(tmp_path / "a.png", data[:iend] + chunk + data[iend:]))
    assert x.shape == (1, 3, 6, 4)                              # 90° counter-clockwise: top left -> bottom left
    assert x[0, :, -1, 0].tolist() == [0.0, 0.0, 1.0]           # the blue pixel
    assert (x[0, :, :, 1:] == 1).all()                          # transparent -> white
    assert any("16-bit" in n for n in notes) and any("transparency" in n for n in notes)


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_no_exif_is_upright():
    assert image.exif_orientation(b"\xff\xd8\xff\xd9") == 1
    assert image.exif_orientation(b"not an image") == 1
