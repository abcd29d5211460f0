"""Turn whatever a user or client sends into a PIL image, or a clear error.

Accepted: a PIL image; a numpy array (H x W gray, H x W x 3 RGB, H x W x 4 RGBA;
uint8, or float in [0, 1]); encoded bytes (PNG, JPEG, WebP, GIF, BMP); a str
holding a data URL ("data:image/png;base64,...") or bare base64; a pathlib.Path
to an image file; a Gradio Sketchpad/ImageEditor value
{"background", "layers", "composite"}.

A str is never opened as a file path: strings arrive from the network, and
reading them as paths would let a client make the server open its own files.
Files are read only from a pathlib.Path, which only Python code can pass, and
from Gradio's editor dict, whose file paths Gradio writes into its own cache.

Every problem raises ImageInputError, whose message is shown to the user as is:
it says what is wrong and how to fix it.
"""
from __future__ import annotations

import base64
import binascii
import io
import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

try:  # optional: a faster PNG decoder where it has a wheel (see _decode_png_fast)
    import pyspng as _pyspng
except ImportError:  # pragma: no cover - depends on the platform
    _pyspng = None

MAX_ENCODED_BYTES = 5 * 1024 * 1024  # an encoded image; a 280x280 drawing is ~10 kB as PNG
MAX_PIXELS = 4096 * 4096  # width * height, checked from the header before decoding
# Decoding costs what the header declares, not what the file weighs: a 706-byte WebP declaring
# 4096x4096 took 1.3 s and +235 MB to decode (measured here under load 11; 655 ms on an idle
# machine). JPEG decodes at a reduced scale (Pillow's draft: the DCT scales by 1/2, 1/4, 1/8), so a
# phone photo stays allowed up to MAX_PIXELS at a fraction of the cost; the other formats decode
# every pixel and are limited to MAX_UNSCALED_PIXELS (a phone screenshot, ~3 MP, fits).
MAX_UNSCALED_PIXELS = 2048 * 2048
DRAFT_SIDE = 1024  # px: a large JPEG is decoded at the smallest scale still this large on its longer side
LARGE_PIXELS = 1024 * 1024  # above this a decode takes tens of ms: api/app.py runs few at once
DECLARED_SIZE_CHARS = 64 * 1024  # base64 read to find a non-PNG image's declared size (declared_size)
# Formats a client may send. Others (EPS would start Ghostscript, for one) are refused unread.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
# Modes preprocessing understands; everything else is converted to one of them.
PLAIN_MODES = ("L", "LA", "RGB", "RGBA")
EDITOR_KEYS = ("background", "layers", "composite")
_EXIF_ORIENTATION = 0x0112
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HOW_TO_SEND = "send a PNG/JPEG/WebP image as a data URL ('data:image/png;base64,...') or as bare base64"

# Image.open can warn about a decompression bomb before our own, lower limit is
# checked; the warning filter is process-wide, so opening is serialised (it only
# reads the header, microseconds).
_OPEN_LOCK = threading.Lock()


class ImageInputError(ValueError):
    """The input is not a usable image. The message is user-facing: what is wrong, and how to fix it."""


class EmptyImageError(ImageInputError):
    """There is nothing to classify: no image, or a blank canvas."""

    def __init__(self, message: str = "The canvas is empty: draw a digit first."):
        super().__init__(message)


def load_image(value: Any) -> Image.Image:
    """`value` as a PIL image in mode L, LA, RGB or RGBA. Raises ImageInputError / EmptyImageError."""
    if value is None:
        raise EmptyImageError("No image was given: draw a digit first.")
    if isinstance(value, Image.Image):
        image = value
    elif isinstance(value, np.ndarray):
        image = _from_array(value)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        image = decode_bytes(bytes(value))
    elif isinstance(value, str):
        image = decode_bytes(decode_base64(value), from_text=True)
    elif isinstance(value, Path):
        image = decode_bytes(read_image_file(value))
    elif isinstance(value, dict):
        return _from_editor(value)
    else:
        raise ImageInputError(
            f"Unsupported image input of type {type(value).__name__}: {HOW_TO_SEND}, "
            "or pass a PIL image, a numpy array or a pathlib.Path."
        )
    _check_pixels(*image.size)
    return _plain_mode(image)


def file_data_url(path: Path) -> str:
    """An image file as the data URL every prediction path takes (inference/lanes.py). The "image/png"
    label does not matter: the bytes are sniffed, never trusted by their label."""
    return "data:image/png;base64," + base64.b64encode(read_image_file(path)).decode("ascii")


def decode_base64(text: str) -> bytes:
    """The bytes of a data URL or of bare (standard, padded) base64. Never touches the file system."""
    text = text.strip()
    if not text:
        raise ImageInputError(f"The image string is empty: {HOW_TO_SEND}.")
    if text[:5].lower() == "data:":
        header, comma, text = text.partition(",")
        if not comma:
            raise ImageInputError("The data URL has no ',' before its data: expected 'data:image/png;base64,<data>'.")
        if not header.lower().endswith(";base64"):
            raise ImageInputError(f"The data URL is not base64-encoded (its header is {header[:60]!r}): "
                                  "expected 'data:image/png;base64,<data>'.")
    # Base64 is 4/3 the size of its bytes: refuse before decoding anything large.
    if len(text) > MAX_ENCODED_BYTES * 4 // 3 + 1024:
        raise _too_large(len(text) * 3 // 4)
    compact = "".join(text.split())  # MIME base64 may wrap lines
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ImageInputError(
            f"The image string is not valid base64: {HOW_TO_SEND}. "
            "(A string is never read as a file path; pass a pathlib.Path to load a file.)"
        ) from None
    if not data:
        raise ImageInputError(f"The image data is empty: {HOW_TO_SEND}.")
    return data


def png_size(text: str) -> tuple[int, int] | None:
    """(width, height) a base64 PNG (data URL or bare) declares in its header, from its first
    32 characters only; None for anything else. Cheap enough to decide where to decode it."""
    text = text.lstrip()
    if text[:5].lower() == "data:":
        text = text.partition(",")[2]
    try:
        header = base64.b64decode(text[:32], validate=True)  # 24 bytes: signature, IHDR length and type, size
    except (binascii.Error, ValueError):
        return None
    if len(header) < 24 or header[:8] != _PNG_SIGNATURE or header[12:16] != b"IHDR":
        return None
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def decode_bytes(data: bytes, *, from_text: bool = False) -> Image.Image:
    """Decode an encoded image, checking its size and pixel count before decoding the pixels."""
    if len(data) > MAX_ENCODED_BYTES:
        raise _too_large(len(data))
    if not data:
        raise ImageInputError(f"The image data is empty: {HOW_TO_SEND}.")
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise _too_many_pixels(None) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        hint = " (A string is never read as a file path.)" if from_text else ""
        raise ImageInputError(
            f"The data is not an image this app can read: {HOW_TO_SEND}; "
            f"supported formats are {', '.join(ALLOWED_FORMATS)}.{hint}"
        ) from None
    _check_pixels(*image.size)
    _bound_decoding(image)
    fast = _decode_png_fast(image, data)
    if fast is not None:
        return fast
    try:
        image.load()
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        raise ImageInputError(
            f"The {image.format or 'image'} data is damaged or truncated and cannot be decoded: send the complete file."
        ) from None
    if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)  # a phone photo, upright as its camera app shows it
    return image


def _bound_decoding(image: Image.Image) -> None:
    """Decode a large JPEG at a reduced scale; refuse other formats that declare over MAX_UNSCALED_PIXELS."""
    width, height = image.size
    if width * height <= MAX_UNSCALED_PIXELS:
        return
    if image.format == "JPEG":
        # The digit is found and scaled down to 20x20 anyway; 1024 px on the longer side keeps its strokes.
        scale = DRAFT_SIDE / max(width, height)
        image.draft(image.mode, (max(1, int(width * scale)), max(1, int(height * scale))))
        return
    side = int(MAX_UNSCALED_PIXELS ** 0.5)
    raise ImageInputError(
        f"The {image.format or 'image'} is {width}x{height} pixels; {image.format or 'this format'} images are "
        f"limited to {side}x{side} ({MAX_UNSCALED_PIXELS:,} pixels; JPEG photos to {int(MAX_PIXELS ** 0.5)}x"
        f"{int(MAX_PIXELS ** 0.5)}): resize it (a 280x280 drawing is plenty).")


def declared_size(text: str) -> tuple[int, int] | None:
    """(width, height) a base64 image (data URL or bare) declares in its header, reading at most
    DECLARED_SIZE_CHARS of it; None when that does not tell (not an image, or a header further in)."""
    size = png_size(text)
    if size is not None:
        return size
    text = text.lstrip()
    if text[:5].lower() == "data:":
        text = text.partition(",")[2]
    prefix = "".join(text[:DECLARED_SIZE_CHARS].split())
    try:
        header = base64.b64decode(prefix[:len(prefix) // 4 * 4], validate=True)
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Image.open(io.BytesIO(header), formats=ALLOWED_FORMATS).size
    except (binascii.Error, ValueError, OSError, SyntaxError, EOFError, UnidentifiedImageError,
            Image.DecompressionBombError):
        return None


def _decode_png_fast(image: Image.Image, data: bytes) -> Image.Image | None:
    """The pixels of a plain 8-bit PNG decoded by libspng (pyspng), else None (Pillow decodes it).

    Canvas drawings are 8-bit RGBA PNGs, and decoding them is the biggest single cost
    of a /predict: 280x280 measured 1.0 ms with Pillow, 0.6 ms with libspng, same
    pixels (tests/test_image_io.py compares them). Only the simple case takes this
    path: 8-bit L/LA/RGB/RGBA (Pillow's raw mode equals its mode), not animated, no
    transparency key and no EXIF orientation to apply; damaged data also falls back,
    so Pillow's decoder words every error. pyspng is an optional requirement (it has
    no wheel for every platform); without it, Pillow decodes everything.
    """
    if _pyspng is None or image.format != "PNG" or image.mode not in PLAIN_MODES:
        return None
    if "transparency" in image.info or "exif" in image.info or getattr(image, "is_animated", False):
        return None
    if len(image.tile) != 1 or image.tile[0].args != image.mode:  # 1/2/4/16-bit samples, palettes
        return None
    try:
        pixels = _pyspng.load(data, image.mode)
    except (RuntimeError, ValueError):
        return None
    if pixels.shape[:2] != (image.height, image.width):
        return None
    return Image.fromarray(pixels)  # L, LA, RGB or RGBA from the shape, as requested above


def _check_pixels(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ImageInputError(f"The image is {width}x{height} pixels, which has no pixels: send a real drawing.")
    if width * height > MAX_PIXELS:
        raise _too_many_pixels((width, height))


def _too_many_pixels(size: tuple[int, int] | None) -> ImageInputError:
    described = f"is {size[0]}x{size[1]} pixels" if size else "has far too many pixels"
    side = int(MAX_PIXELS ** 0.5)
    return ImageInputError(
        f"The image {described}; the limit is {side}x{side} ({MAX_PIXELS:,} pixels): "
        "resize it (a 280x280 drawing is plenty)."
    )


def _too_large(size: int) -> ImageInputError:
    return ImageInputError(
        f"The image is {size / 1e6:.1f} MB; the limit is {MAX_ENCODED_BYTES / 1e6:.0f} MB: "
        "send a smaller image (a 280x280 PNG drawing is about 10 kB)."
    )


def read_image_file(path: Path) -> bytes:
    """The bytes of an image file the caller chose (a pathlib.Path, or an upload Gradio received),
    refused over MAX_ENCODED_BYTES before reading."""
    # Messages name the file, never its folder: they can reach a web page, and a server path is
    # not for visitors to see.
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ImageInputError(f"{path.name!r} is not a file: pass the path of an image file.")
        if size > MAX_ENCODED_BYTES:
            raise _too_large(size)
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageInputError(f"No such image file: {path.name!r}.") from None
    except PermissionError:
        raise ImageInputError(f"The image file {path.name!r} cannot be read (permission denied).") from None


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageInputError(
            f"An image array must be H x W (gray), H x W x 3 (RGB) or H x W x 4 (RGBA); got shape {array.shape}."
        )
    _check_pixels(array.shape[1], array.shape[0])
    if array.dtype == np.uint8:
        pixels = array
    elif array.dtype == bool:
        pixels = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
            raise ImageInputError(
                "A float image array must hold finite values in [0, 1]; divide 0-255 values by 255 or pass uint8."
            )
        pixels = np.round(array * 255.0).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.integer):
        if array.min() < 0 or array.max() > 255:
            raise ImageInputError("An integer image array must hold values in 0-255; pass uint8.")
        pixels = array.astype(np.uint8)
    else:
        raise ImageInputError(f"Unsupported image array type {array.dtype}: pass uint8, or float in [0, 1].")
    return Image.fromarray(np.ascontiguousarray(pixels))  # L, RGB or RGBA from the shape


def _plain_mode(image: Image.Image) -> Image.Image:
    """The image in L, LA, RGB or RGBA, keeping transparency and 16-bit/float gray levels."""
    if image.mode in PLAIN_MODES:
        return image
    if image.mode in ("P", "PA"):
        has_alpha = image.mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if has_alpha else "RGB")
    if image.mode.startswith("I") or image.mode == "F":
        # Scale 16-bit (and float 0-1) gray levels to 0-255 instead of clipping them.
        levels = np.asarray(image, dtype=np.float64)
        peak = 1.0 if image.mode == "F" and levels.max() <= 1.0 else (255.0 if levels.max() <= 255 else 65535.0)
        return Image.fromarray(np.round(np.clip(levels / peak, 0, 1) * 255).astype(np.uint8))
    if image.mode == "1":
        return image.convert("L")
    return image.convert("RGBA" if "A" in image.getbands() else "RGB")


# ---- Gradio Sketchpad / ImageEditor values -----------------------------------

def is_editor_value(value: Any) -> bool:
    return isinstance(value, dict) and any(key in value for key in EDITOR_KEYS)


def _from_editor(value: dict) -> Image.Image:
    """The editor's composite when present, else its background and layers flattened in order."""
    if not is_editor_value(value):
        raise ImageInputError(
            "A dict image must be a Gradio Sketchpad/ImageEditor value with 'background', 'layers' and 'composite'."
        )
    composite = value.get("composite")
    if composite is not None:
        return load_image(_editor_entry(composite))
    background = value.get("background")
    layers = [layer for layer in (value.get("layers") or []) if layer is not None]
    if background is None and not layers:
        raise EmptyImageError()
    entries = ([background] if background is not None else []) + layers
    images = [load_image(_editor_entry(entry)).convert("RGBA") for entry in entries]
    size = images[0].size
    flat = Image.new("RGBA", size, (0, 0, 0, 0))
    for image in images:
        if image.size != size:
            # Layers share the canvas's size in Gradio; anything else is anchored top-left, like the editor.
            padded = Image.new("RGBA", size, (0, 0, 0, 0))
            padded.paste(image, (0, 0))
            image = padded
        flat = Image.alpha_composite(flat, image)
    return flat


def _editor_entry(entry: Any) -> Any:
    """An entry of an editor dict, with Gradio's cached file paths turned into Paths (data URLs stay text)."""
    if isinstance(entry, str) and entry.lstrip()[:5].lower() != "data:":
        return _gradio_cached_file(entry)
    if isinstance(entry, dict) and "path" in entry:  # Gradio's FileData as a plain dict
        return _gradio_cached_file(str(entry["path"]))
    return entry


def gradio_upload_folder() -> Path:
    """Where Gradio caches files it hands to event handlers (its utils.get_upload_folder())."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


def _gradio_cached_file(text: str) -> Path:
    # The editor dict reaches us from Gradio, which writes these files itself; still,
    # a path outside its cache folder is refused so no request can name a server file.
    path = Path(text).resolve()
    folder = gradio_upload_folder()
    if folder not in path.parents:
        raise ImageInputError(
            "A sketchpad entry names a file outside Gradio's upload folder; "
            "send the drawing itself (an array, a PIL image or a data URL)."
        )
    return path
