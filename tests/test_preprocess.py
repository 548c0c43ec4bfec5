"""Tests of the "wiwd" style (signature_onnx.preprocessing.wiwd): the sigver_wiwd goldens, the array contracts, bad input."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from signature_onnx.errors import ImageError
from signature_onnx.preprocessing.wiwd import (
    crop_center,
    load_signature,
    normalize_image,
    preprocess_signature,
    remove_background,
    resize_image,
)
from stages.core.cli import report_errors
from stages.core.errors import PipelineError

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
SIGVER = FIXTURES / "sigver_wiwd"
SOME_SIGNATURE = SIGVER / "some_signature.png"
CANVAS = (952, 1360)  # the canvas of the seed's SigNet models


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"fixture {path} is missing (shared/fixtures is not checked out here)")
    return path


def _real_scans() -> list[Path]:
    scans = sorted((FIXTURES / "signatures").glob("*.png"))
    scans += [SIGVER / f"{name}.png" for name in ("a1", "a2", "b1", "b2")]
    return [p for p in scans if p.exists()]


@pytest.fixture(scope="module")
def signature() -> np.ndarray:
    """The seed's example signature, as load_signature gives it (float32, 373x680)."""
    return load_signature(_require(SOME_SIGNATURE))


@pytest.fixture
def synthetic() -> np.ndarray:
    """A 200x300 white page with a dark, textured stroke: float32, values 0..255."""
    page = np.full((200, 300), 255.0, dtype=np.float32)
    rows, cols = np.mgrid[60:140, 40:260]
    page[60:140, 40:260] = ((rows * 7 + cols * 3) % 60).astype(np.float32)
    return page


def _png(path: Path, image: Image.Image) -> Path:
    image.save(path)
    return path


def _forged_png(path: Path, width: int, height: int) -> Path:
    """A tiny PNG file whose header declares width x height (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit gray
    pixels = zlib.compress(b"\x00" * 64)  # far too little data: only the header matters
    body = chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


# ------------------------------------------------------------------------------------------
# Goldens (zero differing pixels)
# ------------------------------------------------------------------------------------------


def test_preprocess_signature_matches_golden(signature: np.ndarray) -> None:
    expected = np.load(_require(SIGVER / "processed_py3.npy"))
    processed = preprocess_signature(signature, CANVAS)
    assert processed.dtype == np.uint8 and processed.shape == (150, 220)
    assert np.count_nonzero(processed != expected) == 0
    assert np.array_equal(processed, expected)


def test_remove_background_matches_spp_golden(signature: np.ndarray) -> None:
    expected = np.load(_require(SIGVER / "processed_spp_py3.npy"))
    processed = 255 - remove_background(signature)
    assert processed.dtype == np.uint8 and processed.shape == (373, 680)
    assert np.count_nonzero(processed != expected) == 0
    assert np.array_equal(processed, expected)


# ------------------------------------------------------------------------------------------
# Contracts of each function
# ------------------------------------------------------------------------------------------


def test_load_signature_contract(signature: np.ndarray) -> None:
    assert signature.dtype == np.float32 and signature.ndim == 2
    assert signature.shape == (373, 680)
    assert 0 <= signature.min() < signature.max() <= 255
    # An 8-bit gray file loads to exactly its gray values (PIL's "F" conversion).
    assert np.array_equal(signature, np.asarray(Image.open(SOME_SIGNATURE), dtype=np.float32))


def test_load_signature_rgb_uses_itu_601_luminance(tmp_path: Path) -> None:
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    loaded = load_signature(_png(tmp_path / "rgb.png", Image.fromarray(rgb)))
    assert loaded.dtype == np.float32 and loaded.shape == (4, 5)
    np.testing.assert_allclose(loaded, 0.299 * 200 + 0.587 * 100 + 0.114 * 50, atol=1e-3)


def test_normalize_image_contract(signature: np.ndarray) -> None:
    before = signature.copy()
    normalized = normalize_image(signature.astype(np.uint8), CANVAS)
    assert normalized.dtype == np.uint8 and normalized.shape == CANVAS
    assert normalized.min() < 100 and normalized.max() == 255
    assert np.array_equal(signature, before)
    # The default canvas of the seed.
    assert normalize_image(signature.astype(np.uint8)).shape == (840, 1360)


def test_normalize_image_centers_the_ink(synthetic: np.ndarray) -> None:
    normalized = normalize_image(synthetic, (400, 600))
    rows, cols = np.where(normalized < 255)
    # The stroke is symmetric, so its center of mass lands at the canvas center (+-2 pixels:
    # the seed's box excludes its last row and column and truncates the offsets).
    assert abs(rows.mean() - 200) <= 2 and abs(cols.mean() - 300) <= 2


def test_remove_background_contract(synthetic: np.ndarray) -> None:
    noisy = synthetic.copy()
    noisy[0:10, 0:10] = 240  # light scanner noise, far above the Otsu threshold
    before = noisy.copy()
    cleaned = remove_background(noisy)
    assert cleaned.dtype == np.uint8 and cleaned.shape == noisy.shape
    assert (cleaned[0:10, 0:10] == 255).all()
    assert np.array_equal(cleaned[60:140, 40:260], synthetic[60:140, 40:260].astype(np.uint8))
    assert np.array_equal(noisy, before)  # the input is not modified


def test_remove_background_of_uniform_page_is_blank() -> None:
    cleaned = remove_background(np.full((20, 30), 200, dtype=np.uint8))
    assert cleaned.dtype == np.uint8 and (cleaned == 255).all()


@pytest.mark.parametrize(
    ("shape", "size"),
    [
        ((952, 1360), (170, 242)),  # wider than the target ratio: crop columns
        ((1360, 952), (170, 242)),  # taller: crop rows
        ((50, 60), (170, 242)),  # smaller than the target: upsample
        ((170, 242), (170, 242)),  # already the target size
    ],
)
def test_resize_image_contract(shape: tuple[int, int], size: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=shape).astype(np.uint8)
    resized = resize_image(image, size)
    assert resized.dtype == np.uint8 and resized.shape == size


def test_resize_image_byte_scales_like_scipy() -> None:
    # scipy.misc.imresize stretched the value range to 0..255 before resizing.
    ramp = np.tile(np.linspace(0.0, 1.0, 100, dtype=np.float32), (50, 1))
    resized = resize_image(ramp, (50, 100))
    assert resized.min() == 0 and resized.max() == 255
    # A constant image byte-scales to zeros (scipy used a scale of 1 then).
    assert (resize_image(np.full((40, 40), 7.0), (20, 20)) == 0).all()


def test_crop_center_contract() -> None:
    image = np.arange(170 * 242).reshape(170, 242)
    cropped = crop_center(image, (150, 220))
    assert cropped.shape == (150, 220) and cropped.dtype == image.dtype
    assert cropped[0, 0] == image[10, 11]  # start = (shape - size) // 2
    assert np.array_equal(crop_center(image, (170, 242)), image)


def test_preprocess_signature_custom_sizes_and_float_truncation(signature: np.ndarray) -> None:
    out = preprocess_signature(signature, CANVAS, img_size=(100, 150), input_size=(90, 140))
    assert out.dtype == np.uint8 and out.shape == (90, 140)
    # Float input is truncated to uint8 first, as in the seed.
    noisy_float = signature + np.float32(0.75)
    noisy_float[noisy_float > 255] = 255
    assert np.array_equal(
        preprocess_signature(noisy_float, CANVAS),
        preprocess_signature(noisy_float.astype(np.uint8), CANVAS),
    )


def test_image_error_is_a_value_error_reported_by_stages_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert issubclass(ImageError, ValueError) and not issubclass(ImageError, PipelineError)

    def fail() -> None:
        raise ImageError("scan.png: the image data is truncated")

    assert report_errors(fail) == 1
    assert capsys.readouterr().err == "error: scan.png: the image data is truncated\n"


# ------------------------------------------------------------------------------------------
# Real scans
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scan", _real_scans(), ids=lambda p: p.name)
def test_real_scans_preprocess_on_signet_canvas(scan: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a real scan must fit the canvas
        out = preprocess_signature(load_signature(scan), CANVAS, source=scan)
    assert out.dtype == np.uint8 and out.shape == (150, 220)
    ink = np.count_nonzero(out) / out.size
    assert 0.005 < ink < 0.5, f"{scan.name}: ink fraction {ink:.3f}"
    assert out.max() >= 100
    assert (out[0, :] == 0).all() or (out[-1, :] == 0).all()  # background is 0 after inversion


def test_real_scans_are_present() -> None:
    if not (FIXTURES / "signatures").exists():
        pytest.skip(f"fixture folder {FIXTURES / 'signatures'} is missing")
    assert len(_real_scans()) == 40


# ------------------------------------------------------------------------------------------
# Bad files
# ------------------------------------------------------------------------------------------


def _assert_image_error(excinfo: pytest.ExceptionInfo[ImageError], path: Path, *words: str) -> None:
    message = str(excinfo.value)
    assert path.name in message, message
    for word in words:
        assert word in message, message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.png"
    with pytest.raises(ImageError) as excinfo:
        load_signature(path)
    _assert_image_error(excinfo, path, "no such file")


def test_directory_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as excinfo:
        load_signature(tmp_path)
    _assert_image_error(excinfo, tmp_path, "not a regular file")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError) as excinfo:
        load_signature(path)
    _assert_image_error(excinfo, path, "empty")


def test_random_bytes_are_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "noise.png"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ImageError) as excinfo:
        load_signature(path)
    _assert_image_error(excinfo, path, "not a recognised image")


def test_truncated_png(tmp_path: Path) -> None:
    data = _require(SOME_SIGNATURE).read_bytes()
    path = tmp_path / "truncated.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as excinfo:
        load_signature(path)
    _assert_image_error(excinfo, path, "truncated or corrupt")


def test_blank_white_page_has_no_ink(tmp_path: Path) -> None:
    path = _png(tmp_path / "blank.png", Image.new("L", (400, 300), 255))
    page = load_signature(path)
    assert (page == 255).all()
    with pytest.raises(ImageError) as excinfo:
        preprocess_signature(page, CANVAS, source=path)
    _assert_image_error(excinfo, path, "no ink")
    with pytest.raises(ImageError) as excinfo:
        normalize_image(page, CANVAS, source=path)
    _assert_image_error(excinfo, path, "no ink")


def test_uniform_black_page_has_no_ink() -> None:
    with pytest.raises(ImageError, match="no ink"):
        preprocess_signature(np.zeros((100, 100), dtype=np.uint8), CANVAS)


def test_sixteen_bit_png_is_scaled_to_0_255(tmp_path: Path, signature: np.ndarray) -> None:
    wide = (signature.astype(np.uint16) * 257).astype(np.uint16)  # 0..255 -> 0..65535
    path = _png(tmp_path / "sixteen.png", Image.fromarray(wide))
    assert Image.open(path).mode.startswith("I")
    loaded = load_signature(path)
    assert loaded.dtype == np.float32 and np.array_equal(loaded, signature)
    assert np.array_equal(preprocess_signature(loaded, CANVAS), preprocess_signature(signature, CANVAS))


def test_32_bit_integer_image_out_of_16_bit_range_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "int32.tiff"
    Image.fromarray(np.full((10, 10), 100_000, dtype=np.int32), mode="I").save(path)
    with pytest.raises(ImageError) as excinfo:
        load_signature(path)
    _assert_image_error(excinfo, path, "0..65535")


def test_float_image_out_of_range_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "float.tiff"
    Image.fromarray(np.full((10, 10), 1000.0, dtype=np.float32), mode="F").save(path)
    with pytest.raises(ImageError) as excinfo:
        load_signature(path)
    _assert_image_error(excinfo, path, "outside 0..255")


def test_palette_png_is_expanded_to_rgb(tmp_path: Path, signature: np.ndarray) -> None:
    palette_image = Image.fromarray(signature.astype(np.uint8)).convert("P")
    path = _png(tmp_path / "palette.png", palette_image)
    assert Image.open(path).mode == "P"
    loaded = load_signature(path)
    assert loaded.dtype == np.float32 and loaded.shape == signature.shape
    assert np.array_equal(loaded, np.asarray(palette_image.convert("RGB").convert("F")))


def test_palette_png_with_transparency_is_composited_on_white(tmp_path: Path) -> None:
    image = Image.new("P", (40, 30), 0)
    image.putpalette([0, 0, 0, 10, 10, 10] + [0] * (256 * 3 - 6))
    image.paste(1, (10, 10, 30, 20))  # ink, color index 1
    image.info["transparency"] = 0  # index 0 (black) is the transparent background
    path = tmp_path / "palette_alpha.png"
    image.save(path, transparency=0)
    loaded = load_signature(path)
    assert (loaded[:10] == 255).all()  # transparent black became white paper
    np.testing.assert_allclose(loaded[10:20, 10:30], 10, atol=1e-3)


def test_rgba_with_transparent_background_is_composited_on_white(tmp_path: Path, signature: np.ndarray) -> None:
    gray = signature.astype(np.uint8)
    ink = gray < 128
    rgba = np.zeros(gray.shape + (4,), dtype=np.uint8)  # transparent black everywhere
    rgba[ink, :3] = gray[ink, None]
    rgba[ink, 3] = 255
    path = _png(tmp_path / "rgba.png", Image.fromarray(rgba, mode="RGBA"))
    loaded = load_signature(path)
    expected = np.where(ink, gray, 255).astype(np.float32)
    assert loaded.dtype == np.float32 and np.array_equal(loaded, expected)
    out = preprocess_signature(loaded, CANVAS, source=path)
    assert out.shape == (150, 220) and out.max() > 100


def test_opaque_rgba_and_la_load_like_their_color_part(tmp_path: Path, signature: np.ndarray) -> None:
    gray = signature.astype(np.uint8)
    opaque = np.full_like(gray, 255)
    la_path = _png(tmp_path / "la.png", Image.fromarray(np.stack([gray, opaque], -1), mode="LA"))
    assert np.array_equal(load_signature(la_path), signature)
    rgba = np.stack([gray, gray, gray, opaque], -1)
    rgba_path = _png(tmp_path / "rgba_opaque.png", Image.fromarray(rgba, mode="RGBA"))
    assert np.array_equal(load_signature(rgba_path), signature)


def test_half_transparent_la_pixel_is_blended_with_white(tmp_path: Path) -> None:
    pixels = np.zeros((2, 2, 2), dtype=np.uint8)
    pixels[..., 1] = 51  # alpha 0.2 over black ink: 0.2 * 0 + 0.8 * 255
    path = _png(tmp_path / "la_half.png", Image.fromarray(pixels, mode="LA"))
    np.testing.assert_allclose(load_signature(path), 204, atol=1e-3)


def test_cmyk_is_converted_through_rgb(tmp_path: Path) -> None:
    image = Image.new("CMYK", (20, 10), (0, 0, 0, 200))
    path = tmp_path / "cmyk.tiff"
    image.save(path)
    loaded = load_signature(path)
    assert loaded.dtype == np.float32 and loaded.shape == (10, 20)
    assert np.array_equal(loaded, np.asarray(image.convert("RGB").convert("F")))


def test_decompression_bomb_over_pillows_hard_limit(tmp_path: Path) -> None:
    path = _forged_png(tmp_path / "bomb.png", 20000, 20000)  # 400 Mpx declared, 100 bytes
    with pytest.raises(ImageError) as excinfo:
        load_signature(path)
    _assert_image_error(excinfo, path, "too large")
    with pytest.raises(ImageError) as excinfo:
        load_signature(path, max_pixels=10**12)
    _assert_image_error(excinfo, path, "too large")


def test_decompression_bomb_over_pillows_warning_limit(tmp_path: Path) -> None:
    path = _forged_png(tmp_path / "bomb100.png", 10000, 10000)  # 100 Mpx: Pillow only warns
    with pytest.raises(ImageError) as excinfo:
        load_signature(path, max_pixels=10**9)
    _assert_image_error(excinfo, path, "too large")


def test_image_over_max_pixels_is_refused_before_decoding(tmp_path: Path) -> None:
    path = _forged_png(tmp_path / "big.png", 10000, 6000)  # 60 Mpx: over the 50 Mpx default
    with pytest.raises(ImageError) as excinfo:
        load_signature(path)
    _assert_image_error(excinfo, path, "max_pixels=50000000", "10000x6000")
    # A per-call limit: a real scan is refused under a small one, accepted by default.
    scan = _require(SOME_SIGNATURE)
    with pytest.raises(ImageError) as excinfo:
        load_signature(scan, max_pixels=1000)
    _assert_image_error(excinfo, scan, "max_pixels=1000")


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "10"])
def test_max_pixels_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(ValueError, match="max_pixels"):
        load_signature(_require(SOME_SIGNATURE), max_pixels=bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# Bad arrays
# ------------------------------------------------------------------------------------------


def test_signature_bigger_than_canvas_keeps_middle_with_warning(tmp_path: Path, signature: np.ndarray) -> None:
    path = _png(tmp_path / "huge.png", Image.fromarray(signature.astype(np.uint8)))
    with pytest.warns(UserWarning, match="larger than the canvas") as record:
        out = preprocess_signature(load_signature(path), (100, 200), source=path)
    assert out.dtype == np.uint8 and out.shape == (150, 220)
    assert path.name in str(record[0].message)


def test_bigger_than_canvas_places_the_middle_part_at_zero(synthetic: np.ndarray) -> None:
    gray = synthetic.astype(np.uint8)
    # The ink box as the seed finds it: blur, Otsu, foreground = 0, last row/col excluded.
    threshold, binarized = cv2.threshold(ndimage.gaussian_filter(gray, 2), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    r, c = np.where(binarized == 0)
    box = gray[r.min() : r.max(), c.min() : c.max()]
    canvas = (box.shape[0] + 20, box.shape[1] - 40)  # taller than the box, narrower
    with pytest.warns(UserWarning, match="larger than the canvas"):
        normalized = normalize_image(gray, canvas)
    expected_cols = box[:, 20 : 20 + canvas[1]].copy()  # middle part: (width diff) // 2 = 20
    expected_cols[expected_cols > threshold] = 255
    rows_with_ink = np.where((normalized < 255).any(axis=1))[0]
    r_start = rows_with_ink.min()
    assert np.array_equal(normalized[r_start : r_start + box.shape[0], :], expected_cols)


@pytest.mark.parametrize("shape", [(10, 10, 3), (100,), (2, 3, 4, 5)])
def test_non_2d_input_is_refused_with_its_shape(shape: tuple[int, ...]) -> None:
    image = np.full(shape, 128, dtype=np.uint8)
    for call in (
        lambda: preprocess_signature(image, CANVAS, source="scan.png"),
        lambda: normalize_image(image, CANVAS, source="scan.png"),
        lambda: remove_background(image, source="scan.png"),
        lambda: resize_image(image, (170, 242), source="scan.png"),
        lambda: crop_center(image, (1, 1), source="scan.png"),
    ):
        with pytest.raises(ImageError, match=r"2-D") as excinfo:
            call()
        assert str(shape) in str(excinfo.value) and "scan.png" in str(excinfo.value)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(synthetic: np.ndarray, bad_value: float) -> None:
    image = synthetic.copy()
    image[5, 5] = bad_value
    for call in (
        lambda: preprocess_signature(image, CANVAS, source="scan.png"),
        lambda: normalize_image(image, CANVAS, source="scan.png"),
        lambda: remove_background(image, source="scan.png"),
        lambda: resize_image(image, (170, 242), source="scan.png"),
    ):
        with pytest.raises(ImageError, match="NaN or infinite") as excinfo:
            call()
        assert "scan.png" in str(excinfo.value)


@pytest.mark.parametrize("bad_value", [-1.0, 256.0, 1000.0])
def test_values_outside_0_255_are_refused(synthetic: np.ndarray, bad_value: float) -> None:
    image = synthetic.copy()
    image[5, 5] = bad_value
    with pytest.raises(ImageError, match="outside 0..255"):
        preprocess_signature(image, CANVAS)
    with pytest.raises(ImageError, match="outside 0..255"):
        remove_background(image)


def test_empty_and_non_numeric_arrays_are_refused() -> None:
    with pytest.raises(ImageError, match="empty"):
        preprocess_signature(np.zeros((0, 10), dtype=np.uint8), CANVAS)
    with pytest.raises(ImageError, match="dtype"):
        remove_background(np.full((4, 4), "a"))


def test_crop_center_larger_than_image_is_refused() -> None:
    image = np.zeros((100, 200), dtype=np.uint8)
    with pytest.raises(ImageError, match="cannot crop 150x220 from an image of 100x200") as excinfo:
        crop_center(image, (150, 220), source="scan.png")
    assert "scan.png" in str(excinfo.value)
    with pytest.raises(ImageError, match="cannot crop"):
        crop_center(image, (50, 201))


def test_input_size_larger_than_img_size_is_refused(signature: np.ndarray) -> None:
    with pytest.raises(ImageError, match="cannot crop"):
        preprocess_signature(signature, CANVAS, img_size=(100, 100), input_size=(150, 220))


@pytest.mark.parametrize("bad_size", [(0, 10), (-1, 10), (10,), (10, 10, 10), (1.5, 10), (True, 10), "ab", None])
def test_malformed_sizes_are_refused(synthetic: np.ndarray, bad_size: object) -> None:
    for call in (
        lambda: normalize_image(synthetic, bad_size),  # type: ignore[arg-type]
        lambda: resize_image(synthetic, bad_size),  # type: ignore[arg-type]
        lambda: crop_center(synthetic, bad_size),  # type: ignore[arg-type]
        lambda: preprocess_signature(synthetic, bad_size),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValueError, match=r"\(rows, cols\) pair of positive integers"):
            call()


def test_load_rgb_gives_uint8_rgb_and_refuses_bad_files(tmp_path):
    from PIL import Image

    from signature_onnx.preprocessing.files import load_rgb

    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[0, 0, 3] = 255  # one opaque red-ish pixel, the rest transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    loaded = load_rgb(tmp_path / "alpha.png")
    assert loaded.shape == (4, 5, 3) and loaded.dtype == np.uint8
    assert tuple(loaded[0, 0]) == (200, 0, 0) and tuple(loaded[1, 1]) == (255, 255, 255)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ImageError, match="junk.png"):
        load_rgb(tmp_path / "junk.png")
