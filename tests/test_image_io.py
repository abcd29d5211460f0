"""inference/image_io.py: every accepted input type loads; every bad input is a clear ImageInputError."""
from __future__ import annotations

import base64
import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw, features

from inference import image_io
from inference.image_io import EmptyImageError, ImageInputError, load_image


def checkerboard(height: int = 30, width: int = 40) -> np.ndarray:
    """RGB uint8 with distinct values everywhere, so a lossless round trip is checkable pixel by pixel."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([rows * 8 % 256, cols * 6 % 256, (rows + cols) * 4 % 256], axis=2).astype(np.uint8)


def encode(array: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **options)
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (its pixel data is a stub)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    stub = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stub) + chunk(b"IEND", b"")


RGB = checkerboard()


# ---- accepted inputs ---------------------------------------------------------------

def test_pil_image_passes_through():
    image = Image.fromarray(RGB)
    loaded = load_image(image)
    assert loaded.mode == "RGB" and np.array_equal(np.asarray(loaded), RGB)


@pytest.mark.parametrize("array, mode", [
    (RGB[:, :, 0], "L"),
    (RGB[:, :, :1], "L"),
    (RGB, "RGB"),
    (np.dstack([RGB, np.full(RGB.shape[:2], 128, np.uint8)]), "RGBA"),
], ids=["gray", "gray-HxWx1", "rgb", "rgba"])
def test_uint8_arrays_round_trip(array, mode):
    loaded = load_image(array)
    assert loaded.mode == mode
    assert np.array_equal(np.asarray(loaded), array.reshape(np.asarray(loaded).shape))


def test_float_arrays_in_unit_range_become_uint8():
    values = np.linspace(0.0, 1.0, 30 * 40, dtype=np.float64).reshape(30, 40)
    loaded = np.asarray(load_image(values))
    assert loaded.dtype == np.uint8
    assert np.array_equal(loaded, np.round(values * 255).astype(np.uint8))
    assert np.array_equal(np.asarray(load_image(values.astype(np.float32) > 0.5)), (values > 0.5) * 255)


def test_png_bytes_data_url_bare_base64_and_path_round_trip(tmp_path):
    png = encode(RGB)
    path = tmp_path / "digit.png"
    path.write_bytes(png)
    wrapped = "\n".join(base64.b64encode(png).decode()[i:i + 76] for i in range(0, len(png) * 2, 76))
    for value in (png, bytearray(png), memoryview(png), data_url(png), "  " + data_url(png) + "\n",
                  base64.b64encode(png).decode(), wrapped, path):
        loaded = load_image(value)
        assert loaded.mode == "RGB", type(value)
        assert np.array_equal(np.asarray(loaded), RGB), type(value)


@pytest.mark.parametrize("fmt, mime", [("JPEG", "image/jpeg"), ("WEBP", "image/webp"),
                                       ("GIF", "image/gif"), ("BMP", "image/bmp")])
def test_other_common_formats_decode(fmt, mime):
    if fmt == "WEBP" and not features.check("webp"):
        pytest.skip("this Pillow build has no WebP support")
    gray = np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (30, 1))
    loaded = np.asarray(load_image(data_url(encode(gray, fmt, quality=95) if fmt in ("JPEG", "WEBP")
                                            else encode(gray, fmt), mime)).convert("L"), dtype=int)
    assert loaded.shape == (30, 40)
    assert np.abs(loaded - gray).max() <= 8  # lossy formats stay close


def test_jpeg_photo_is_turned_upright_by_its_exif_orientation():
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    buffer = io.BytesIO()
    Image.fromarray(RGB).save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    loaded = load_image(buffer.getvalue())
    assert loaded.size == (30, 40)  # 40x30 stored, shown 30 wide and 40 tall


def test_palette_png_with_transparency_keeps_it():
    image = Image.new("P", (20, 20), 0)
    image.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    image.paste(1, (5, 5, 15, 15))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", transparency=0)
    loaded = load_image(buffer.getvalue())
    assert loaded.mode == "RGBA"
    alpha = np.asarray(loaded)[:, :, 3]
    assert alpha[0, 0] == 0 and alpha[10, 10] == 255


def test_sixteen_bit_gray_png_is_scaled_not_clipped():
    levels = (np.arange(20 * 20).reshape(20, 20) * 160).astype(np.uint16)  # up to 63,840
    buffer = io.BytesIO()
    Image.fromarray(levels).save(buffer, "PNG")
    loaded = np.asarray(load_image(buffer.getvalue()))
    assert loaded.dtype == np.uint8 and loaded.max() >= 240 and loaded[0, 0] == 0


def png_variants() -> dict[str, bytes]:
    """PNGs of every layout a client may send: each must load to the same pixels on either decoder."""
    rng = np.random.default_rng(3)
    noise = {bands: rng.integers(0, 256, (37, 53, bands), dtype=np.uint8) for bands in (2, 3, 4)}
    gray = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    variants = {
        "L": encode(gray),
        "LA": encode(noise[2]),
        "RGB": encode(noise[3]),
        "RGBA": encode(noise[4]),
        "RGBA, no compression": encode(noise[4], compress_level=0),
        "RGBA, optimized": encode(noise[4], optimize=True),
        "RGB with a transparent colour": encode(noise[3], transparency=(1, 2, 3)),
        "16-bit gray": encode((gray.astype(np.uint16) * 257)),
    }
    for name, mode in (("1-bit", "1"), ("palette", "P")):
        buffer = io.BytesIO()
        Image.fromarray(gray).convert(mode).save(buffer, "PNG")
        variants[name] = buffer.getvalue()
    return variants


@pytest.mark.parametrize("name", list(png_variants()))
def test_fast_png_decoder_gives_pillows_pixels(name, monkeypatch):
    png = png_variants()[name]
    fast = load_image(png)
    monkeypatch.setattr(image_io, "_pyspng", None)
    pillow = load_image(png)
    assert fast.mode == pillow.mode and fast.size == pillow.size
    assert np.array_equal(np.asarray(fast), np.asarray(pillow))


@pytest.mark.skipif(image_io._pyspng is None, reason="pyspng has no wheel for this platform: Pillow decodes PNGs")
def test_canvas_pngs_take_the_fast_decoder(monkeypatch):
    calls = []
    real = image_io._pyspng

    class Counting:
        @staticmethod
        def load(data, fmt):
            calls.append(fmt)
            return real.load(data, fmt)

    monkeypatch.setattr(image_io, "_pyspng", Counting)
    canvas = np.full((280, 280, 4), 255, np.uint8)
    canvas[100:180, 130:150, :3] = 0
    assert np.array_equal(np.asarray(load_image(data_url(encode(canvas)))), canvas)
    assert calls == ["RGBA"]
    with pytest.raises(ImageInputError, match="damaged or truncated"):  # Pillow words the error
        load_image(encode(canvas)[:300])


def test_png_size_reads_only_the_header():
    png = encode(checkerboard(30, 40))
    assert image_io.png_size(data_url(png)) == (40, 30)
    assert image_io.png_size(base64.b64encode(png).decode()) == (40, 30)
    assert image_io.png_size(data_url(png_header_only(4096, 3000))[:60]) == (4096, 3000)  # the rest is not needed
    for other in (data_url(encode(checkerboard(), "JPEG"), "image/jpeg"), "data:,plain text", "not base64!", "",
                  "\ud800"):
        assert image_io.png_size(other) is None


# ---- Gradio Sketchpad / ImageEditor values -----------------------------------------

def sketch_layer() -> np.ndarray:
    """RGBA like Gradio 6's sketchpad layer: transparent (RGB 0 under alpha 0), black strokes."""
    layer = np.zeros((50, 60, 4), np.uint8)
    layer[10:40, 25:30, 3] = 255
    return layer


def test_editor_composite_is_used_in_every_form_gradio_produces(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    layer = sketch_layer()
    cached = tmp_path / "abc123" / "composite.png"
    cached.parent.mkdir()
    cached.write_bytes(encode(layer))
    for composite in (layer, Image.fromarray(layer), str(cached), data_url(encode(layer))):
        value = {"background": None, "layers": [np.zeros_like(layer)], "composite": composite}
        loaded = load_image(value)
        assert loaded.mode == "RGBA" and np.array_equal(np.asarray(loaded), layer), type(composite)


def test_editor_without_composite_flattens_background_and_layers():
    background = np.full((50, 60, 4), 255, np.uint8)  # opaque white
    first, second = sketch_layer(), np.zeros((50, 60, 4), np.uint8)
    second[5:8, 5:50] = (255, 0, 0, 255)  # a red stroke on top
    flat = np.asarray(load_image({"background": background, "layers": [first, second], "composite": None}))
    assert tuple(flat[0, 0]) == (255, 255, 255, 255)
    assert tuple(flat[20, 27]) == (0, 0, 0, 255)
    assert tuple(flat[6, 27]) == (255, 0, 0, 255)
    # No background: the layers alone, transparent elsewhere.
    only_layers = np.asarray(load_image({"background": None, "layers": [first], "composite": None}))
    assert np.array_equal(only_layers, first)


def test_editor_file_outside_gradio_cache_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    outside = tmp_path / "secret.png"
    outside.write_bytes(encode(RGB))
    with pytest.raises(ImageInputError, match="outside Gradio's upload folder"):
        load_image({"background": None, "layers": [], "composite": str(outside)})
    with pytest.raises(ImageInputError, match="outside Gradio's upload folder"):
        load_image({"composite": str(tmp_path / "gradio" / ".." / "secret.png")})


@pytest.mark.parametrize("value", [None, {"background": None, "layers": [], "composite": None},
                                   {"background": None, "layers": [None], "composite": None}],
                         ids=["none", "empty-editor", "editor-with-none-layer"])
def test_nothing_drawn_is_an_empty_image(value):
    with pytest.raises(EmptyImageError, match="draw a digit first"):
        load_image(value)


# ---- bad inputs: each a clear ImageInputError ---------------------------------------

def test_a_string_is_never_opened_as_a_file(tmp_path):
    path = tmp_path / "digit.png"
    path.write_bytes(encode(RGB))
    for text in (str(path), "/etc/passwd", "/etc/hosts", "digit.png"):
        with pytest.raises(ImageInputError) as error:
            load_image(text)
        message = str(error.value)
        assert "base64" in message and "file path" in message, message
    assert load_image(path).size == (40, 30)  # the same file as a Path is fine


@pytest.mark.parametrize("text, expected", [
    ("not base64 at all!", "not valid base64"),
    ("data:image/png;base64,@@@@", "not valid base64"),
    ("aGVsbG8", "not valid base64"),  # missing padding
    ("data:image/png,iVBORw0KGgo=", "not base64-encoded"),
    ("data:image/png;base64", "no ','"),
    ("", "empty"),
    ("   ", "empty"),
    ("data:image/png;base64,", "empty"),
])
def test_malformed_strings(text, expected):
    with pytest.raises(ImageInputError, match=expected) as error:
        load_image(text)
    assert "data:image/png;base64" in str(error.value)


@pytest.mark.parametrize("data", [b"hello, world", b"GIF89a broken", encode(RGB)[:40], b"%!PS-Adobe-3.0 EPSF-3.0\n"],
                         ids=["text", "fake-gif", "truncated-png-header", "eps"])
def test_bytes_that_are_not_a_readable_image(data):
    for value in (data, data_url(data), base64.b64encode(data).decode()):
        with pytest.raises(ImageInputError, match="not an image this app can read|damaged or truncated"):
            load_image(value)


def test_truncated_pixel_data_is_reported_as_damaged():
    png = encode((np.random.default_rng(0).random((200, 200)) * 255).astype(np.uint8))
    with pytest.raises(ImageInputError, match="damaged or truncated"):
        load_image(png[: len(png) // 2])


def test_tiff_is_not_an_accepted_format():
    with pytest.raises(ImageInputError, match="supported formats are PNG, JPEG, WEBP, GIF, BMP"):
        load_image(encode(RGB, "TIFF"))


@pytest.mark.parametrize("width, height", [(50_000, 50_000), (10_000, 10_000), (5000, 5000), (100_000, 200)],
                         ids=["pil-bomb-error", "pil-bomb-warning", "over-our-limit", "long-strip"])
def test_header_claiming_too_many_pixels_is_refused_before_decoding(width, height):
    data = png_header_only(width, height)
    assert len(data) < 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning must not escape either
        with pytest.raises(ImageInputError, match="limit is 4096x4096") as error:
            load_image(data)
    assert f"{width}x{height}" in str(error.value) or "far too many pixels" in str(error.value)


def test_real_5000x5000_png_is_refused():
    buffer = io.BytesIO()
    Image.new("L", (5000, 5000), 255).save(buffer, "PNG")
    assert len(buffer.getvalue()) < image_io.MAX_ENCODED_BYTES  # small file, huge image
    with pytest.raises(ImageInputError, match="5000x5000 pixels; the limit is 4096x4096"):
        load_image(data_url(buffer.getvalue()))


def test_arrays_and_pil_images_get_the_same_pixel_limit():
    with pytest.raises(ImageInputError, match="limit is 4096x4096"):
        load_image(np.zeros((5000, 4000), np.uint8))
    with pytest.raises(ImageInputError, match="limit is 4096x4096"):
        load_image(Image.new("L", (8000, 3000)))


def test_oversize_payloads_are_refused_before_decoding(tmp_path):
    big = b"\x89PNG" + bytes(6 * 1024 * 1024)
    with pytest.raises(ImageInputError, match="6.3 MB; the limit is 5 MB"):
        load_image(big)
    with pytest.raises(ImageInputError, match="the limit is 5 MB"):
        load_image(data_url(big))
    with pytest.raises(ImageInputError, match="the limit is 5 MB"):
        load_image("A" * (8 * 1024 * 1024))  # never base64-decoded
    path = tmp_path / "big.png"
    path.write_bytes(big)
    with pytest.raises(ImageInputError, match="the limit is 5 MB"):
        load_image(path)


def test_missing_file_and_folder_paths(tmp_path):
    with pytest.raises(ImageInputError, match="No such image file") as error:
        load_image(tmp_path / "missing.png")
    assert "'missing.png'" in str(error.value) and str(tmp_path) not in str(error.value)  # no server path
    with pytest.raises(ImageInputError, match="is not a file") as error:
        load_image(tmp_path)
    assert str(tmp_path.parent) not in str(error.value)


@pytest.mark.parametrize("array, expected", [
    (np.zeros((10, 10, 2), np.uint8), "H x W x 3"),
    (np.zeros((10,), np.uint8), "H x W x 3"),
    (np.zeros((2, 10, 10, 3), np.uint8), "H x W x 3"),
    (np.full((10, 10), 2.0), r"float image array must hold finite values in \[0, 1\]"),
    (np.full((10, 10), np.nan), "finite values"),
    (np.full((10, 10), -1, np.int16), "0-255"),
    (np.full((10, 10), 300, np.int32), "0-255"),
    (np.full((10, 10), 1 + 1j), "Unsupported image array type"),
    (np.zeros((0, 10), np.uint8), "has no pixels"),
], ids=["2-channels", "1-d", "4-d", "float-over-1", "nan", "negative-int", "int-over-255", "complex", "zero-height"])
def test_bad_arrays(array, expected):
    with pytest.raises(ImageInputError, match=expected):
        load_image(array)


@pytest.mark.parametrize("value", [42, 3.5, ["data:image/png;base64,"], {"image": "x"}, object()],
                         ids=["int", "float", "list", "dict-not-editor", "object"])
def test_unsupported_types_say_what_to_send(value):
    with pytest.raises(ImageInputError, match="data:image/png;base64|Gradio Sketchpad"):
        load_image(value)


def test_every_error_is_a_value_error_with_a_user_facing_message():
    assert issubclass(ImageInputError, ValueError) and issubclass(EmptyImageError, ImageInputError)
    assert "draw a digit first" in str(EmptyImageError())


# -- decoding cost is bounded by what the header declares (issue 9) --------------------------

def tiny_file_declaring(width: int, height: int, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["WEBP", "PNG", "GIF", "BMP"])
def test_a_small_file_declaring_a_huge_image_is_refused_before_decoding(fmt, monkeypatch):
    from PIL import ImageFile

    data = tiny_file_declaring(4096, 4096, fmt) if fmt != "BMP" else bmp_header_only(4096, 4096)
    assert image_io.declared_size(base64.b64encode(data).decode()) == (4096, 4096)
    # Refused from the header: no decoder ever runs (decoding took 0.6-1.3 s). Asserted by spies, not by
    # a time bound, which a loaded machine can break (issue 18 item 15: timing races in the suite).
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self, *a, **k: decoded.append("Pillow"))
    monkeypatch.setattr(image_io, "_decode_png_fast", lambda *a, **k: decoded.append("libspng"))
    with pytest.raises(ImageInputError, match="limited to 2048x2048"):
        load_image(data)
    assert decoded == []


def bmp_header_only(width: int, height: int) -> bytes:
    """A BMP header declaring width x height, without the pixels (a BMP is never small)."""
    import struct
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + width * height * 3, 0, 0, 54) + info


def test_a_large_jpeg_photo_is_decoded_at_a_reduced_scale_and_still_read():
    photo = Image.new("RGB", (4000, 3000), "white")
    ImageDraw.Draw(photo).line([(1500, 500), (2500, 500), (1800, 2500)], fill="black", width=200)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    loaded = load_image(buffer.getvalue())
    assert max(loaded.size) <= 2000 and loaded.size[0] / loaded.size[1] == pytest.approx(4 / 3)
    assert np.asarray(loaded.convert("L")).min() < 50  # the stroke survived


def test_declared_size_reads_only_the_header():
    jpeg = base64.b64encode(encode(checkerboard(), "JPEG")).decode()
    assert image_io.declared_size(jpeg) == (checkerboard().shape[1], checkerboard().shape[0])
    assert image_io.declared_size("not base64!") is None and image_io.declared_size("") is None
