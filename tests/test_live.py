"""The live explorer (``vaekit explore``): its web API, its CLI and its page in a real browser."""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vaekit
from vaekit.analysis.explorer import Explorer
from vaekit.app import LiveState, create_app
from vaekit.app.state import MAX_UPLOAD_BYTES
from vaekit.cli import main
from vaekit.data import registry
from vaekit.data.images import load_image
from vaekit.data.shapes import SHAPES_CLASSES, make_shapes
from vaekit.errors import DataError
from vaekit.files import read_json, write_json
from vaekit.runs import Run

with warnings.catch_warnings():  # newer Starlette prefers httpx2 to httpx; either works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

LIMIT = 500  # test images on the fashion scatter


def png_of(array: np.ndarray) -> bytes:
    """uint8 ``(H, W)`` or ``(H, W, 3)`` as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def image_of(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


@pytest.fixture(scope="module")
def fashion_state(fashion_run) -> LiveState:
    run = Run.open(fashion_run, device="cpu", precision="fp32")
    return LiveState(Explorer(run, limit=LIMIT))


@pytest.fixture(scope="module")
def client(fashion_state) -> TestClient:
    return TestClient(create_app(fashion_state))


@pytest.fixture(scope="module")
def nn3_state(tmp_path_factory) -> LiveState:
    """An untrained nn3-128 model (128x128x3, 256 latent units) over 12 coloured shapes of 128x128."""
    name = "live-test-shapes-128"
    registry.register_dataset(name, lambda split="test", **_: make_shapes(n=12, image_size=128, channels=3,
                                                                         split=split, seed=1))
    torch.manual_seed(0)
    model_dir = vaekit.build_model("nn3-128").save_pretrained(tmp_path_factory.mktemp("nn3") / "model")
    config = read_json(Path(model_dir) / "config.json")
    config["dataset"] = {"name": name, "class_names": list(SHAPES_CLASSES)}
    write_json(Path(model_dir) / "config.json", config)
    try:
        yield LiveState(Explorer(Run.open(model_dir, device="cpu", precision="fp32"), limit=12))
    finally:
        registry.DATASETS.pop(name, None)


# ----------------------------------------------------------------------------
# The web API (no browser)


def test_the_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<canvas id="scatter"' in page.text and "/static/app.js" in page.text
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
    # Nothing the page loads comes from another host (the browser may have no internet).
    assert not re.search(r"""(src|href)=["']https?:""", page.text)


def test_points_are_the_test_codes_with_their_classes(client, fashion_state):
    info, points = client.get("/api/info").json(), client.get("/api/points").json()
    assert info["count"] == LIMIT and len(points["x"]) == len(points["y"]) == len(points["labels"]) == LIMIT
    assert info["latent_dim"] == 2 and info["image_shape"] == [1, 28, 28]
    assert [c["name"] for c in info["classes"]] == list(fashion_state.class_names)
    assert len(info["classes"]) == 10 and set(points["labels"]) <= set(range(10))
    assert len(set(points["labels"])) == 10
    # d = 2: the plane is the latent space itself, no PCA.
    assert info["plane"]["pca"] is False
    assert np.allclose(np.c_[points["x"], points["y"]], fashion_state.codes.z_mean, atol=1e-4)
    # Both units get a slider, highest mean KL first.
    kls = [u["kl"] for u in info["units"]]
    assert sorted(u["unit"] for u in info["units"]) == [0, 1] and kls == sorted(kls, reverse=True)


def test_decode_is_a_png_of_the_model_image_size_and_follows_the_point(client, fashion_state):
    first = client.get("/api/decode", params={"x": -1.0, "y": 0.5})
    assert first.status_code == 200 and first.headers["content-type"] == "image/png"
    image = image_of(first.content)
    assert image.size == (28, 28) and image.mode == "L"
    # It is the real decoder's image of (x, y).
    expected = np.clip(fashion_state.model.decode(np.array([[-1.0, 0.5]])).numpy()[0, 0] * 255 + 0.5, 0, 255)
    assert np.array_equal(np.asarray(image), expected.astype(np.uint8))
    second = client.get("/api/decode", params={"x": 1.5, "y": -0.5})
    assert np.abs(np.asarray(image_of(second.content), float) - np.asarray(image, float)).mean() > 1
    # A slider offset moves that unit: (x, y) + 1 on unit 0 is (x + 1, y).
    moved = client.get("/api/decode", params={"x": 0.5, "y": -0.5, "offset": "0:1.0"}).content
    assert moved == second.content or np.array_equal(np.asarray(image_of(moved)), np.asarray(image_of(second.content)))


def test_interpolation_returns_the_requested_frames(client, fashion_state):
    names = fashion_state.class_names
    for method in ("linear", "slerp"):
        response = client.post("/api/interpolate", json={"from": {"class": names[0]}, "to": {"class": names[9]},
                                                         "steps": 5, "method": method})
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["method"] == method and len(result["images"]) == 5 and len(result["path"]) == 5
        frames = [image_of(_data_url_bytes(src)) for src in result["images"]]
        assert all(f.size == (28, 28) for f in frames)
        # The ends are the class means, on the plane where the page draws them.
        means = [c["mean"] for c in client.get("/api/info").json()["classes"]]
        assert np.allclose(result["path"][0], means[0], atol=1e-4) and np.allclose(result["path"][-1], means[9],
                                                                                   atol=1e-4)
    between_points = client.post("/api/interpolate", json={"from": {"x": -2, "y": 0}, "to": {"x": 2, "y": 0},
                                                           "steps": 3}).json()
    assert np.allclose(between_points["path"], [[-2, 0], [0, 0], [2, 0]], atol=1e-6)


def test_an_uploaded_image_lands_where_its_code_is(client, fashion_state):
    image = fashion_state.explorer.dataset.images[3, 0].numpy()
    response = client.post("/api/encode", content=png_of(image), headers={"X-File-Name": "shirt.png"})
    assert response.status_code == 200, response.text
    result = response.json()
    assert np.allclose([result["x"], result["y"]], fashion_state.codes.z_mean[3], atol=1e-3)
    assert image_of(_data_url_bytes(result["reconstruction"])).size == (28, 28)
    assert np.array_equal(np.asarray(image_of(_data_url_bytes(result["input"]))), image)
    # A colour photo of another size is fitted to the model's input too.
    photo = (np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)
    assert client.post("/api/encode?invert=1", content=png_of(photo)).status_code == 200


def test_an_upload_too_large_is_refused_without_reading_it_whole(client):
    huge = b"x" * (MAX_UPLOAD_BYTES + 1)
    response = client.post("/api/encode", content=huge)
    assert response.status_code == 413 and "MiB accepted" in response.json()["error"]

    def chunked():  # no Content-Length: the limit holds while streaming
        for _ in range(MAX_UPLOAD_BYTES // 2**20 + 2):
            yield b"x" * 2**20

    response = client.post("/api/encode", content=chunked())
    assert response.status_code == 413 and "more than" in response.json()["error"]


@pytest.mark.parametrize("body, message", [
    (b"this is not an image", r"^shirt\.txt: not a readable image"),
    (b"still not an image", r"^my photo\.png: not a readable image"),
    (b"", r"^uploaded image: empty upload"),
])
def test_a_bad_upload_is_refused_in_one_line(client, body, message):
    # The page sends the name URL-encoded (app.js: encodeURIComponent); the error shows it decoded.
    headers = {"X-File-Name": "my%20photo.png" if body.startswith(b"still") else "shirt.txt"} if body else {}
    response = client.post("/api/encode", content=body, headers=headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert re.search(message, error) and "\n" not in error and "Traceback" not in error


@pytest.mark.parametrize("request_args, message", [
    (("get", "/api/decode", {"params": {"x": "abc", "y": 0}}), "x: expected a number"),
    (("get", "/api/decode", {"params": {"y": 0}}), "x: missing"),
    (("get", "/api/decode", {"params": {"x": 0, "y": 0, "offset": "7:1"}}), "offset unit 7 is out of range"),
    (("post", "/api/interpolate", {"json": {"from": {"class": "dragon"}, "to": {"class": 0}}}), "dragon"),
    (("post", "/api/interpolate", {"json": {"from": {"class": 0}, "to": {"class": 1}, "steps": 500}}),
     "steps must be an integer from 2 to 32"),
    (("post", "/api/interpolate", {"json": {"from": {"class": 0}, "to": {"class": 1}, "method": "cubic"}}),
     "method must be one of linear, slerp"),
    (("post", "/api/interpolate", {"json": {"from": {"class": 0}, "to": {"class": 1}, "offsets": 5}}),
     "offset: expected UNIT:VALUE pairs, got 5"),
])
def test_bad_requests_get_a_clear_400(client, request_args, message):
    method, url, kwargs = request_args
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == 400 and message in response.json()["error"]


def test_load_image_reads_file_objects(tmp_path):
    pixels = (np.arange(16 * 16) % 256).astype(np.uint8).reshape(16, 16)
    (tmp_path / "a.png").write_bytes(png_of(pixels))
    from_path = load_image(tmp_path / "a.png", (1, 8, 8))
    assert np.array_equal(load_image(io.BytesIO(png_of(pixels)), (1, 8, 8)), from_path)
    with pytest.raises(DataError, match=r"^image: not a readable image"):
        load_image(io.BytesIO(b"nope"), (1, 8, 8))


# ----------------------------------------------------------------------------
# A 256-D latent space (nn3-128): the PCA plane


def test_a_256d_latent_space_is_shown_on_its_pca_plane(nn3_state):
    client = TestClient(create_app(nn3_state))
    info, points = client.get("/api/info").json(), client.get("/api/points").json()
    assert info["latent_dim"] == 256 and info["image_shape"] == [3, 128, 128]
    assert info["plane"]["pca"] is True and info["plane"]["labels"] == ["PC 1", "PC 2"]
    assert len(points["x"]) == 12 and len(info["units"]) == 8
    plane, z = nn3_state.plane, nn3_state.codes.z_mean.astype(np.float64)
    # The axes are orthonormal principal directions of the centred codes, the origin their mean.
    assert np.allclose(plane.axes @ plane.axes.T, np.eye(2), atol=1e-8)
    assert np.allclose(plane.origin, z.mean(0))
    _, _, vt = np.linalg.svd(z - z.mean(0), full_matrices=False)
    assert np.allclose(np.abs(plane.axes @ vt[:2].T), np.eye(2), atol=1e-6)
    assert np.allclose(np.c_[points["x"], points["y"]], (z - z.mean(0)) @ plane.axes.T, atol=1e-4)
    # A plane point is origin + coords @ axes (+ the slider offsets).
    unit = info["units"][0]["unit"]
    latent = nn3_state.latent(1.0, -2.0, {unit: 0.5})
    expected = z.mean(0) + plane.axes[0] - 2 * plane.axes[1]
    expected[unit] += 0.5
    assert np.allclose(latent, expected)
    a, b = (client.get("/api/decode", params={"x": x, "y": 0}) for x in (-3.0, 3.0))
    assert image_of(a.content).size == (128, 128) and image_of(a.content).mode == "RGB"
    assert a.content != b.content
    strip = client.post("/api/interpolate", json={"from": {"x": -3, "y": 0}, "to": {"class": "circle"},
                                                  "steps": 4, "method": "slerp"}).json()
    assert len(strip["images"]) == 4
    photo = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    landed = client.post("/api/encode", content=png_of(photo)).json()
    assert np.isfinite([landed["x"], landed["y"]]).all() and len(landed["offsets"]) == 8


# ----------------------------------------------------------------------------
# The command


def test_explore_refuses_a_missing_run_in_one_line(tmp_path, capsys):
    assert main(["explore", str(tmp_path / "nowhere"), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "nowhere" in err and len(err.splitlines()) == 1


def test_explore_refuses_a_port_in_use(fashion_run, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["explore", str(fashion_run), "--port", str(port), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"cannot listen on 127.0.0.1:{port}" in err and len(err.splitlines()) == 1


def _data_url_bytes(src: str) -> bytes:
    import base64

    assert src.startswith("data:image/png;base64,")
    return base64.b64decode(src.split(",", 1)[1])


# ----------------------------------------------------------------------------
# The page in Chromium (Debian's, driven by Playwright)


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser test needs {reason} on CI")
    pytest.skip(f"no browser test: {reason}")


@pytest.fixture
def explorer_url(fashion_run):
    """``vaekit explore`` on a free port, in a subprocess; its URL."""
    command = [sys.executable, "-u", "-m", "vaekit", "explore", str(fashion_run), "--port", "0", "--limit", "1000",
               "--device", "cpu", "--precision", "fp32", "--no-browser"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, lines = time.monotonic() + 120, []
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            found = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
            if found:
                yield found.group(1)
                return
        pytest.fail("vaekit explore printed no URL:\n" + "".join(lines))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


_PIXELS = """(selector) => {
  const img = document.querySelector(selector);
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  return Array.from(ctx.getImageData(0, 0, canvas.width, canvas.height).data);
}"""


def test_the_page_decodes_the_clicked_point_in_chromium(explorer_url, tmp_path):
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package (pip install 'vaekit[test]')")
    if executable is None:
        _unavailable("Debian's chromium (apt-get install chromium)")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(explorer_url)
            page.wait_for_selector("body[data-ready='1']", timeout=30_000)
            canvas = page.locator("#scatter")
            box = canvas.bounding_box()
            assert box["width"] > 300

            def click_and_read(fx: float, fy: float) -> np.ndarray:
                before = page.get_attribute("#decoded", "data-point")
                canvas.click(position={"x": box["width"] * fx, "y": box["height"] * fy})
                page.wait_for_function(
                    "(before) => { const d = document.getElementById('decoded').dataset.point;"
                    " return d && d !== before; }", arg=before, timeout=15_000)
                page.mouse.move(5, 5)  # leave the canvas: the pinned point stays shown
                page.wait_for_timeout(300)
                return np.array(page.evaluate(_PIXELS, "#decoded"), float).reshape(28, 28, 4)[..., :3]

            first = click_and_read(0.3, 0.35)
            assert first.var() > 0, "the decoded image is blank"
            second = click_and_read(0.75, 0.7)
            assert second.var() > 0 and np.abs(first - second).mean() > 1, "clicking elsewhere changed nothing"

            # Two classes, interpolated server-side.
            page.click("#run-interp")
            page.wait_for_function("document.querySelectorAll('#strip img').length === 8", timeout=15_000)
            # An image file, encoded: the reconstruction appears.
            shirt = tmp_path / "shirt.png"
            shirt.write_bytes(png_of(np.pad(np.full((16, 12), 200, np.uint8), ((6, 6), (8, 8)))))
            page.set_input_files("#file", str(shirt))
            page.wait_for_function("document.getElementById('enc-recon').src.startsWith('data:image/png')",
                                   timeout=15_000)
            assert "lands at" in page.inner_text("#enc-status")
            assert page.is_hidden("#error") and not errors

            shot = tmp_path / "explorer.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    picture = np.asarray(Image.open(shot).convert("RGB"), float)
    assert shot.stat().st_size > 30_000 and picture.shape[1] >= 1000 and picture.std() > 10
    if os.environ.get("VAEKIT_SCREENSHOT"):
        shutil.copy(shot, os.environ["VAEKIT_SCREENSHOT"])
