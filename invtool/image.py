"""Image files <-> float tensors `[N, C, H, W]` in [0, 1] (C = 3, RGB, or 1, grey), with OpenCV; atomic PNG
writes; contact sheets.

A grey-input model (`FeatureModel.in_channels == 1`) gets colour images as their luminance, BT.601's
Y = 0.299 R + 0.587 G + 0.114 B (OpenCV's RGB2GRAY, `LUMA`), and its results are written as grey PNGs.

Example:
    >>> x, notes = read_image("examples/textures/brick.png", size=256)
    >>> g, notes = read_input("examples/textures/brick.png", channels=1)   # [1, 1, H, W] luminance
    >>> write_png("out/brick.png", x)
    >>> sheet = contact_sheet([x, x.flip(-1)], ["original", "flipped"])
"""
import io
import json
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import PIL.Image
import torch

from .errors import InvtoolError
from .memory import check_pixels
from .param import resize_image

_UMASK = os.umask(0)
os.umask(_UMASK)

LUMA = (0.299, 0.587, 0.114)   # BT.601 luminance weights of R, G, B (OpenCV's RGB2GRAY)


def read_input(source, *, channels: int = 3, size: int | tuple[int, int] | None = None,
               what: str = "image") -> tuple[torch.Tensor, list[str]]:
    """The one reader of command inputs: an image file or a tensor -> `[1, channels, H, W]` float in [0, 1] on
    the CPU, checked (finite, not too many pixels), converted to `channels` (`to_channels`) and resized to
    `size` (an int: the longer side, aspect kept; a (height, width) pair), plus notes for the run record."""
    if isinstance(source, (str, Path)):
        x, notes = read_image(source, channels=channels)
        name = Path(source).name
    elif isinstance(source, torch.Tensor) and source.dim() == 4 and source.shape[0] == 1 and source.shape[1] in (1, 3):
        x, notes, name = source.detach().float().cpu(), [], what
        if not torch.isfinite(x).all():
            raise InvtoolError(f"the {what} has NaN or infinite values; give values in [0, 1]")
        x = x.clamp(0, 1)
    else:
        shape = list(source.shape) if isinstance(source, torch.Tensor) else type(source).__name__
        raise InvtoolError(f"the {what} must be an image file or a [1, 3, H, W] (RGB) or [1, 1, H, W] (grey) tensor "
                           f"in [0, 1], got {shape}")
    x = to_channels(x, channels, notes, name)
    if size is not None:
        h, w = fit_size(*x.shape[-2:], size)
        check_pixels(1, h, w)
        x = resize_image(x, h, w)
    return x, notes


def to_channels(x: torch.Tensor, channels: int, notes: list[str] | None = None, name: str = "image") -> torch.Tensor:
    """Images `[N, C, H, W]` with `channels` channels: RGB to grey as luminance (`LUMA`), grey to RGB repeated;
    each conversion adds a note."""
    have = x.shape[1]
    if have == channels:
        return x
    if have == 3 and channels == 1:
        if notes is not None and not is_grey(x):
            notes.append(f"{name}: colour converted to luminance for a grey-input model "
                         f"(Y = {LUMA[0]} R + {LUMA[1]} G + {LUMA[2]} B, BT.601)")
        return torch.einsum("nchw,c->nhw", x, torch.tensor(LUMA, dtype=x.dtype, device=x.device))[:, None]
    if have == 1 and channels == 3:
        if notes is not None:
            notes.append(f"{name}: grey image repeated to RGB")
        return x.expand(-1, 3, -1, -1).contiguous()
    raise InvtoolError(f"{name} has {have} channels; invtool reads grey (1) and RGB (3) images")


def is_grey(image: torch.Tensor) -> bool:
    """Whether images `[N, C, H, W]` are grey: one channel, or channels equal within 1/255."""
    return image.shape[1] == 1 or bool((image.amax(1) - image.amin(1)).max() <= 1 / 255 + 1e-6)


def read_image(path, size: int | tuple[int, int] | None = None, channels: int = 3) -> tuple[torch.Tensor, list[str]]:
    """Read an image file as `[1, 3, H, W]` RGB float in [0, 1], plus notes on any conversion made.

    Grayscale is repeated to RGB (kept as `[1, 1, H, W]` with `channels=1`), alpha is composited on white, palette and 16-bit images are expanded,
    and a photo is turned upright as its EXIF orientation says (OpenCV's IMREAD_UNCHANGED, which keeps
    alpha and 16-bit depth, ignores it); each conversion adds a note for the run record. `size` resizes: an int sets the longer side (aspect
    kept), a (height, width) pair sets both.
    """
    path = Path(path)
    if not path.is_file():
        raise InvtoolError(f"{path}: no such file")
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise InvtoolError(f"{path}: not an image OpenCV can read (PNG, JPEG, BMP, TIFF, WebP…)")
    notes = []
    if (orientation := exif_orientation(data.tobytes())) > 1:
        img = np.ascontiguousarray(orient(img, orientation))
        notes.append(f"{path.name}: turned upright as its EXIF orientation ({orientation}) says")
    if data[:4].tobytes() == b"\x89PNG" and data.size > 25 and data[25] == 3:
        notes.append(f"{path.name}: palette image expanded to RGB")
    if img.dtype == np.uint16:
        notes.append(f"{path.name}: 16-bit image scaled to [0, 1]")
        img = img.astype(np.float32) / 65535.0
    elif img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    else:
        notes.append(f"{path.name}: {img.dtype} image clipped to [0, 1]")
        img = np.clip(img.astype(np.float32), 0, 1)
    if (img.ndim == 2 or img.shape[2] == 1) and channels == 1:
        img = img.reshape(*img.shape[:2], 1)
    elif img.ndim == 2 or img.shape[2] == 1:
        notes.append(f"{path.name}: grayscale image repeated to RGB")
        img = cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        if (img[..., 3] < 1).any():
            notes.append(f"{path.name}: transparency composited on white")
        alpha = img[..., 3:]
        img = cv2.cvtColor(np.ascontiguousarray(img[..., :3] * alpha + (1 - alpha)), cv2.COLOR_BGR2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].contiguous()
    if size is not None:
        h, w = fit_size(*x.shape[-2:], size)
        x = resize_image(x, h, w)
    return x, notes


EXIF_ORIENTATION_TAG = 0x0112


def exif_orientation(data: bytes) -> int:
    """The EXIF Orientation (1-8; 1 = upright as stored) of image file bytes (JPEG, PNG, WebP, TIFF), read
    by Pillow without decoding the pixels; 1 if there is none."""
    try:
        with PIL.Image.open(io.BytesIO(data)) as im:
            value = im.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except (OSError, SyntaxError, ValueError):   # a format Pillow does not read, or a broken EXIF block
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """An H x W (x C) array as stored, turned upright for EXIF `orientation` (6: rotate 90° clockwise)."""
    t = np.swapaxes(img, 0, 1) if orientation >= 5 else img   # 5-8 swap the axes (a transpose) first
    flip_rows, flip_cols = {2: (0, 1), 3: (1, 1), 4: (1, 0), 5: (0, 0), 6: (0, 1), 7: (1, 1), 8: (1, 0)}.get(
        orientation, (0, 0))
    return t[::-1 if flip_rows else 1, ::-1 if flip_cols else 1]


def fit_size(h: int, w: int, size: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) for `size`: an int is the longer side (aspect kept), a pair is (height, width), as every
    size in invtool's code (records write [h, w]; only the command line reads WxH, as images are named)."""
    if isinstance(size, int):
        k = size / max(h, w)
        return max(1, round(h * k)), max(1, round(w * k))
    return int(size[0]), int(size[1])


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """`[1, C, H, W]` or `[C, H, W]` float in [0, 1] (RGB or grey) -> H x W x C uint8."""
    x = x.detach().cpu().float()
    x = x[0] if x.ndim == 4 else x
    return (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def encode_png(x: torch.Tensor) -> bytes:
    """PNG bytes of an image tensor (for files and for embedding in HTML): a grey PNG for one channel."""
    img = to_uint8(x)
    ok, buf = cv2.imencode(".png", img[..., 0] if img.shape[2] == 1 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InvtoolError("could not encode the image as PNG")
    return buf.tobytes()


def write_atomic(path, data: bytes) -> Path:
    """Write bytes to `path` through a temporary file in the same folder and a rename, so a reader never
    sees a half-written file; the folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)   # mkstemp makes it private; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_png(path, x: torch.Tensor) -> Path:
    """Write an image tensor as a PNG, atomically."""
    return write_atomic(path, encode_png(x))


class ResultCache:
    """Finished results under `root`, each a record `KEY.json` beside its PNGs, `KEY-NAME.png` for each of `images`
    (`KEY.png` for the name ""): a video's frames (one image), an atlas's units (positive and negative). The record
    is written last, so its presence means the result is complete; files are written atomically."""

    def __init__(self, root, images=("",)):
        self.root, self.images = Path(root), tuple(images)

    def meta(self, key: str) -> dict | None:
        """A finished result's record (None: not finished)."""
        path = self.root / f"{key}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def png(self, key: str, name: str = "") -> bytes:
        """A finished result's image `name` (one of `images`)."""
        return self._png_path(key, name).read_bytes()

    def put(self, key: str, meta: dict, pngs: dict[str, bytes]) -> None:
        for name in self.images:
            write_atomic(self._png_path(key, name), pngs[name])
        write_atomic(self.root / f"{key}.json", json.dumps(meta, indent=1).encode())

    def _png_path(self, key: str, name: str) -> Path:
        return self.root / (f"{key}-{name}.png" if name else f"{key}.png")


def contact_sheet(images: list[torch.Tensor], labels: list[str], cols: int | None = None,
                  pad: int = 6, caption_height: int = 22) -> torch.Tensor:
    """A grid of images (RGB or grey) with a caption under each, on white: `[1, 3, H, W]` in [0, 1].

    Images of different sizes are centred in cells of the largest size; captions too long for a cell
    are cut short with '...'.
    """
    if not images:
        raise InvtoolError("a contact sheet needs at least one image")
    tiles = [to_uint8(x) for x in images]
    cols = cols or min(len(tiles), 4)
    rows = -(-len(tiles) // cols)
    ch, cw = max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)
    cell_h, cell_w = ch + caption_height, cw
    sheet = np.full((pad + rows * (cell_h + pad), pad + cols * (cell_w + pad), 3), 255, np.uint8)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.45
    for i, (tile, label) in enumerate(zip(tiles, labels)):
        r, c = divmod(i, cols)
        y0, x0 = pad + r * (cell_h + pad), pad + c * (cell_w + pad)
        th, tw = tile.shape[:2]
        sheet[y0 + (ch - th) // 2: y0 + (ch - th) // 2 + th, x0 + (cw - tw) // 2: x0 + (cw - tw) // 2 + tw] = tile
        text, cut = label, len(label)
        while cut > 0 and cv2.getTextSize(text, font, scale, 1)[0][0] > cell_w:
            cut -= 1
            text = label[:cut] + "..."
        (tw_text, th_text), _ = cv2.getTextSize(text, font, scale, 1)
        cv2.putText(sheet, text, (x0 + max(0, (cw - tw_text) // 2), y0 + ch + (caption_height + th_text) // 2),
                    font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    out = torch.from_numpy(sheet).permute(2, 0, 1)[None].float() / 255.0
    return out[:, :1] if all(t.shape[2] == 1 for t in tiles) else out   # grey tiles: a grey sheet


# --- colour (style transfer's colour preservation, Gatys et al. 2016) ------------------------------

def _per_image(x: torch.Tensor, fn) -> torch.Tensor:
    """Apply `fn` (H x W x 3 float32 numpy -> same) to each image of a `[N, 3, H, W]` tensor."""
    out = [fn(np.ascontiguousarray(im.detach().cpu().float().permute(1, 2, 0).numpy())) for im in x]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous().to(x.device)


def rgb_to_yuv(x: torch.Tensor) -> torch.Tensor:
    """RGB `[N, 3, H, W]` in [0, 1] -> YUV (OpenCV, BT.601): Y in [0, 1], U and V centred on 0.5."""
    return _per_image(x, lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2YUV))


def yuv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """The inverse of `rgb_to_yuv`, clamped to [0, 1]."""
    return _per_image(x, lambda im: cv2.cvtColor(im, cv2.COLOR_YUV2RGB)).clamp(0, 1)


def match_histograms(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """`x` with each RGB channel's histogram matched to the same channel of `reference` `[1, 3, H', W']`
    (scikit-image), so it takes on the reference's colours whatever the two sizes."""
    from skimage.exposure import match_histograms as match

    ref = reference[0].detach().cpu().float().permute(1, 2, 0).numpy()
    return _per_image(x, lambda im: match(im, ref, channel_axis=-1).astype(np.float32)).clamp(0, 1)
