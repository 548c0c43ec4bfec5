"""The package's preprocessing styles: sigver (scikit-image) against sigver's own code, the goldens
reproduced by the `preprocess` command, and bad input refused in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, shared_fixture
from PIL import Image
from skimage import filters, img_as_ubyte, io, transform

from signature_onnx.errors import ImageError
from signature_onnx.preprocessing import Preprocessing, sigver, wiwd
from stages.core.drawings import signature_gray

GOLDEN = REPO / "tests" / "golden" / "sigver"
CANVAS = (952, 1360)


# ---- sigver's normalize.py, transcribed literally (luizgh/sigver, sigver/preprocessing) ---------


def upstream_normalize_image(img, canvas_size=(840, 1360)):
    blur_radius = 2
    blurred_image = filters.gaussian(img, blur_radius, preserve_range=True)
    threshold = filters.threshold_otsu(img)
    binarized_image = blurred_image > threshold
    r, c = np.where(binarized_image == 0)
    r_center = int(r.mean() - r.min())
    c_center = int(c.mean() - c.min())
    cropped = img[r.min() : r.max(), c.min() : c.max()]
    img_rows, img_cols = cropped.shape
    max_rows, max_cols = canvas_size
    r_start = max_rows // 2 - r_center
    c_start = max_cols // 2 - c_center
    if img_rows > max_rows:
        r_start = 0
        difference = img_rows - max_rows
        crop_start = difference // 2
        cropped = cropped[crop_start : crop_start + max_rows, :]
        img_rows = max_rows
    else:
        extra_r = (r_start + img_rows) - max_rows
        if extra_r > 0:
            r_start -= extra_r
        if r_start < 0:
            r_start = 0
    if img_cols > max_cols:
        c_start = 0
        difference = img_cols - max_cols
        crop_start = difference // 2
        cropped = cropped[:, crop_start : crop_start + max_cols]
        img_cols = max_cols
    else:
        extra_c = (c_start + img_cols) - max_cols
        if extra_c > 0:
            c_start -= extra_c
        if c_start < 0:
            c_start = 0
    normalized_image = np.ones((max_rows, max_cols), dtype=np.uint8) * 255
    normalized_image[r_start : r_start + img_rows, c_start : c_start + img_cols] = cropped
    normalized_image[normalized_image > threshold] = 255
    return normalized_image


def upstream_remove_background(img):
    img = img.astype(np.uint8)
    threshold = filters.threshold_otsu(img)
    img[img > threshold] = 255
    return img


def upstream_resize_image(img, size):
    height, width = size
    width_ratio = float(img.shape[1]) / width
    height_ratio = float(img.shape[0]) / height
    if width_ratio > height_ratio:
        resize_height = height
        resize_width = int(round(img.shape[1] / height_ratio))
    else:
        resize_width = width
        resize_height = int(round(img.shape[0] / width_ratio))
    img = transform.resize(img, (resize_height, resize_width), mode="constant", anti_aliasing=True, preserve_range=True)
    img = img.astype(np.uint8)
    if width_ratio > height_ratio:
        start = int(round((resize_width - width) / 2.0))
        return img[:, start : start + width]
    start = int(round((resize_height - height) / 2.0))
    return img[start : start + height, :]


def upstream_crop_center(img, input_shape):
    img_shape = img.shape
    start_y = (img_shape[0] - input_shape[0]) // 2
    start_x = (img_shape[1] - input_shape[1]) // 2
    return img[start_y : start_y + input_shape[0], start_x : start_x + input_shape[1]]


def upstream_preprocess_signature(img, canvas_size, img_size=(170, 242), input_size=(150, 220)):
    img = img.astype(np.uint8)
    centered = upstream_normalize_image(img, canvas_size)
    inverted = 255 - centered
    resized = upstream_resize_image(inverted, img_size)
    if input_size is not None and input_size != img_size:
        return upstream_crop_center(resized, input_size)
    return resized


def upstream_load(path: Path) -> np.ndarray:
    return img_as_ubyte(io.imread(path, as_gray=True))


def real_scans() -> list[Path]:
    folder = REPO.parent / "shared" / "fixtures"
    scans = sorted((folder / "signatures").glob("*.png"))
    return scans + [folder / "sigver_wiwd" / f"{n}.png" for n in ("a1", "a2", "b1", "b2", "some_signature")]


# ---- the sigver style is sigver's code, pixel for pixel --------------------------------------


def test_sigver_style_equals_sigvers_code_on_every_real_scan():
    scans = [p for p in real_scans() if p.exists()]
    if len(scans) < 40:
        pytest.skip("../shared/fixtures is not beside the project")
    for scan in scans:
        gray = sigver.load_signature(scan)
        np.testing.assert_array_equal(gray, upstream_load(scan), err_msg=scan.name)
        for img_size in ((170, 242), (256, 256)):
            ours = sigver.preprocess_signature(gray, CANVAS, img_size)
            np.testing.assert_array_equal(
                ours, upstream_preprocess_signature(gray, CANVAS, img_size), err_msg=f"{scan.name} {img_size}"
            )
        np.testing.assert_array_equal(
            sigver.remove_background(gray), upstream_remove_background(gray.copy()), err_msg=scan.name
        )


@pytest.mark.parametrize("seed", range(4))
def test_sigver_style_equals_sigvers_code_on_drawn_signatures(seed: int):
    gray = signature_gray(seed, 300 + 53 * seed, 500 + 91 * seed).astype(np.uint8)
    np.testing.assert_array_equal(
        sigver.preprocess_signature(gray, CANVAS), upstream_preprocess_signature(gray, CANVAS)
    )
    # input_size == img_size: sigver skips the crop (the wiwd style would crop to 150x220)
    same = sigver.preprocess_signature(gray, CANVAS, (150, 220), (150, 220))
    np.testing.assert_array_equal(same, upstream_preprocess_signature(gray, CANVAS, (150, 220), (150, 220)))


def test_a_single_changed_step_is_caught_by_the_transcription():
    """The comparison above can fail: the wiwd resize in place of sigver's differs on the same scan."""
    gray = signature_gray(7, 400, 700).astype(np.uint8)
    inverted = 255 - sigver.normalize_image(gray, CANVAS)
    assert not np.array_equal(wiwd.resize_image(inverted, (170, 242)), upstream_resize_image(inverted, (170, 242)))
    assert not np.array_equal(wiwd.normalize_image(gray, CANVAS), upstream_normalize_image(gray, CANVAS))


def test_sigver_loading_uses_scikit_image_luminance(tmp_path: Path):
    rgb = np.zeros((20, 30, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    path = tmp_path / "color.png"
    Image.fromarray(rgb).save(path)
    expected = round(255 * (0.2125 * 200 + 0.7154 * 100 + 0.0721 * 50) / 255)  # 121.8 -> 122
    assert sigver.load_signature(path)[0, 0] == expected
    assert round(float(wiwd.load_signature(path)[0, 0])) == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)  # 124


# ---- goldens, through the command line -------------------------------------------------------


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "signature_onnx", *args], capture_output=True, text=True, cwd=cwd or REPO
    )


def png(path: Path) -> np.ndarray:
    return np.array(Image.open(path))


@pytest.mark.parametrize(
    ("golden", "flags"),
    [
        ("signet", ["--canvas", "952", "1360"]),
        ("siamese", ["--canvas", "952", "1360", "--img-size", "256", "256"]),
        ("spp", ["--spp"]),
    ],
)
def test_preprocess_command_reproduces_the_sigver_goldens(tmp_path: Path, golden: str, flags: list[str]):
    source = shared_fixture("sigver_wiwd", "some_signature.png")
    result = run_cli("preprocess", "--style", "sigver", *flags, str(source), "--out", str(tmp_path), "-q")
    assert result.returncode == 0, result.stderr
    out = png(tmp_path / "some_signature.png")
    expected = png(GOLDEN / golden / "some_signature.png")
    assert out.dtype == np.uint8 and out.shape == expected.shape
    assert int((out != expected).sum()) == 0


def test_preprocess_command_reproduces_the_sigver_wiwd_goldens(tmp_path: Path):
    folder = shared_fixture("sigver_wiwd")
    for flags, golden in ((["--canvas", "952", "1360"], "processed_py3.npy"), (["--spp"], "processed_spp_py3.npy")):
        result = run_cli(
            "preprocess", "--style", "wiwd", *flags, str(folder / "some_signature.png"), "--out", str(tmp_path), "-q"
        )
        assert result.returncode == 0, result.stderr
        expected = np.load(folder / golden)  # the SPP golden is already 255 - remove_background(img)
        assert int((png(tmp_path / "some_signature.png") != expected).sum()) == 0


def test_the_goldens_tell_the_styles_and_sizes_apart():
    """The golden comparisons can fail: each golden differs from the other style or size."""
    folder = shared_fixture("sigver_wiwd")
    wiwd_golden = np.load(folder / "processed_py3.npy")
    assert (png(GOLDEN / "signet" / "some_signature.png") != wiwd_golden).sum() > 100
    assert (png(GOLDEN / "signet" / "some_signature.png") != png(GOLDEN / "siamese" / "some_signature.png")).sum() > 100


def test_a_model_folders_preprocessing_is_used_by_preprocess(tmp_path: Path):
    folder = tmp_path / "siamese"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"not needed by preprocess")
    from signature_onnx.folder import preprocessing_json

    style = Preprocessing("sigver", (150, 220), (952, 1360), (256, 256))
    (folder / "preprocessing.json").write_bytes(preprocessing_json("siamese", "verify", style))
    source = shared_fixture("sigver_wiwd", "some_signature.png")
    result = run_cli("preprocess", "--model", str(folder), str(source), "--out", str(tmp_path / "out"), "-q")
    assert result.returncode == 0, result.stderr
    assert (png(tmp_path / "out" / "some_signature.png") == png(GOLDEN / "siamese" / "some_signature.png")).all()


# ---- bad input: one line, nothing written ----------------------------------------------------


def test_bad_images_fail_in_one_line_and_write_nothing(tmp_path: Path):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((60, 80), 255, dtype=np.uint8)).save(blank)
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    truncated = tmp_path / "cut.png"
    Image.fromarray(np.zeros((80, 90), dtype=np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    for style in ("sigver", "wiwd"):
        for bad, words in (
            (blank, "uniform"),
            (garbage, "garbage.png"),
            (truncated, "cut.png"),
            (tmp_path / "none.png", "no such file"),
        ):
            out = tmp_path / f"out_{style}"
            result = run_cli(
                "preprocess", "--style", style, "--canvas", "952", "1360", str(bad), "--out", str(out), "-q"
            )
            assert result.returncode == 1
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], result.stderr
            assert not out.exists() or not any(out.iterdir())


def test_two_inputs_with_one_name_are_refused_before_writing(tmp_path: Path):
    source = shared_fixture("sigver_wiwd", "some_signature.png")
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "some_signature.png").write_bytes(source.read_bytes())
    result = run_cli(
        "preprocess",
        "--style",
        "sigver",
        "--canvas",
        "952",
        "1360",
        str(source),
        str(other / "some_signature.png"),
        "--out",
        str(tmp_path / "out"),
    )
    assert result.returncode == 1 and "would both be written" in result.stderr
    assert not (tmp_path / "out").exists()


def test_hostile_file_name_is_escaped_in_the_error(tmp_path: Path):
    name = tmp_path / "evil\x1b[31mred\nnext.png"
    result = run_cli(
        "preprocess", "--style", "sigver", "--canvas", "952", "1360", str(name), "--out", str(tmp_path / "o")
    )
    assert result.returncode == 1
    assert "\x1b" not in result.stderr and result.stderr.count("\n") == 1 and "\\x1b" in result.stderr


def test_sigver_blank_array_and_too_small_spp_are_image_errors():
    with pytest.raises(ImageError, match="uniform"):
        sigver.preprocess_signature(np.full((50, 50), 255, dtype=np.uint8), CANVAS)
    spp = Preprocessing("wiwd", (37, 37), spp=True)
    with pytest.raises(ImageError, match="smaller than the 37x37"):
        spp.image(np.zeros((20, 100), dtype=np.uint8), source="tiny.png")


@pytest.mark.parametrize("command", ["preprocess", "clean", "verify", "embed", "check-vectors"])
def test_every_command_has_help(command: str):
    result = run_cli(command, "--help")
    assert result.returncode == 0 and "usage: signature-onnx " + command in result.stdout


def test_the_fast_antialiased_resize_is_scikit_images_bit_for_bit():
    """`sigver.antialiased_resize` blurs only around the ink; scikit-image blurs the whole canvas.
    Equal on ink in the middle, touching every border, a single pixel, and the fallbacks (float
    input, no 0 pixel, upsampling); and the window must be as wide as the kernel: one pixel
    narrower and a border pixel changes."""
    rng = np.random.default_rng(3)

    def skimage_resize(image, shape):
        return transform.resize(image, shape, mode="constant", anti_aliasing=True, preserve_range=True)

    canvases = []
    middle = np.zeros((952, 1360), np.uint8)
    middle[300:600, 400:900] = rng.integers(0, 256, (300, 500))
    canvases.append(middle)
    borders = np.zeros((400, 600), np.uint8)
    borders[0, :] = borders[-1, :] = borders[:, 0] = borders[:, -1] = 255
    canvases.append(borders)
    single = np.zeros((500, 700), np.uint8)
    single[250, 350] = 200
    corner = np.zeros((25, 8), np.uint8)
    corner[-3:, -2:] = 200  # ink on the border of an axis that is enlarged while the other shrinks
    canvases += [
        single,
        corner,
        middle.astype(np.float64),
        np.full((300, 300), 7, np.uint8),
        np.zeros((40, 40), np.uint8),
    ]
    for image in canvases:
        shapes = ((256, 366), (100, 90)) if image.size > 10**6 else ((256, 366), (100, 90), (1000, 1400), (1, 11))
        for shape in shapes:
            np.testing.assert_array_equal(sigver.antialiased_resize(image, shape), skimage_resize(image, shape))

    from scipy import ndimage

    sigma = np.maximum(0, (np.divide(single.shape, (100, 90)) - 1) / 2)
    radius = [int(4.0 * s + 0.5) - 1 for s in sigma]  # one pixel short of SciPy's truncation
    narrow = np.zeros(single.shape)
    window = (slice(250 - radius[0], 251 + radius[0]), slice(350 - radius[1], 351 + radius[1]))
    narrow[window] = ndimage.gaussian_filter(single.astype(np.float64)[window], sigma, mode="constant")
    assert not np.array_equal(narrow, ndimage.gaussian_filter(single.astype(np.float64), sigma, mode="constant"))


@pytest.mark.parametrize(
    "mode, suffix",
    [
        ("L", ".png"),
        ("RGB", ".png"),
        ("RGBA", ".png"),
        ("RGB", ".jpg"),
        ("L", ".jpg"),
        ("P", ".png"),
        ("I;16", ".png"),
        ("LA", ".png"),
        ("RGB", ".gif"),
        ("1", ".png"),
    ],
)
def test_sigver_loading_equals_scikit_images_reader_in_every_mode(tmp_path: Path, mode: str, suffix: str):
    """PNG and JPEG in L, RGB, RGBA reuse Pillow's decoded array; every other file goes to
    scikit-image: both give exactly what sigver's `img_as_ubyte(imread(path, as_gray=True))` gives."""
    rgba = np.zeros((40, 60, 4), dtype=np.uint8)
    rgba[..., :3] = np.random.default_rng(5).integers(0, 256, (40, 60, 3))
    rgba[..., 3] = np.linspace(0, 255, 60).astype(np.uint8)[None, :]
    image = Image.fromarray(rgba, "RGBA")
    image = image.convert("I;16") if mode == "I;16" else image.convert(mode)
    path = tmp_path / f"scan{suffix}"
    image.save(path)
    try:
        expected = upstream_load(path)
    except ValueError:  # sigver's own reader cannot make a gray image of LA
        expected = None
    if expected is None or expected.ndim != 2:  # nor of a GIF, read as a stack of frames
        with pytest.raises(ImageError, match="scan"):
            sigver.load_signature(path)
        return
    loaded = sigver.load_signature(path)
    np.testing.assert_array_equal(loaded, expected)
    assert loaded.flags.writeable  # as scikit-image's reader returns it


def test_an_animated_png_is_read_as_scikit_image_reads_it(tmp_path: Path):
    """imageio stacks an animated PNG's frames: not a gray image, refused as before (never frame 0 alone)."""
    frames = [Image.fromarray(np.full((20, 30), value, np.uint8)) for value in (40, 200)]
    path = tmp_path / "animated.png"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(ValueError, match=r"\(2, 20, 30\)"):  # sigver's reader: a stack of two frames
        upstream_load(path)
    with pytest.raises(ImageError, match="animated"):
        sigver.load_signature(path)
