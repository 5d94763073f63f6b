"""Image files: decoding one file into the ``(C, H, W)`` a model takes.

One decoding path for every image file vaekit reads: :class:`ImageTransform`
says how (size, channels, crop or pad, filter) and :func:`decode_image` does
it (EXIF orientation, mode conversion, transparency on black, resampling).
The caches of image datasets call it directly; :func:`read_image` (uint8)
and :func:`load_image` (float32 in [0, 1]) wrap it for single user files
and raise :class:`~vaekit.errors.DataError` naming the file.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO, Sequence

import numpy as np
from PIL import Image, ImageOps

from vaekit.data.files import MAX_IMAGE_BYTES, check_bytes, file_problem, shown_path
from vaekit.errors import ConfigError, DataError, one_line

logger = logging.getLogger("vaekit")

#: Bump when the decoding code changes the pixels it produces, so existing
#: caches are rebuilt rather than silently mixed with new ones.
CACHE_VERSION = 1

#: File endings read as images (case-insensitive); other files are ignored.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")

# Resampling filters by name; LANCZOS is the sharpest for downscaling.
_FILTERS = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "box": Image.Resampling.BOX,
}
# Pillow's resize first shrinks by an integer factor when the image is this
# many times larger than the target; 3.0 is indistinguishable from a full
# LANCZOS resample (Pillow docs) and much faster for big photos.
_REDUCING_GAP = 3.0
_REPORTED: set[str] = set()


def report_once(message: str) -> None:
    """Log a warning the first time ``message`` is seen in this process.

    Loaders run once per split (the trainer asks for train, then test), and
    a problem with one file should be read once, not at every call.
    """
    if message not in _REPORTED:
        _REPORTED.add(message)
        logger.warning(message)


#: How an image meets the target aspect ratio: "crop" keeps the largest
#: centred region of that ratio, "pad" keeps the whole image and fills the
#: rest with its border colour.
FITS = ("crop", "pad")


@dataclass(frozen=True)
class ImageTransform:
    """How a source image becomes a training image.

    Parameters
    ----------
    size
        ``(height, width)`` of the result.
    channels
        1 (greyscale) or 3 (RGB). Transparent pixels are composited on black.
    crop
        Height of the centred crop in source pixels (its width follows the
        target aspect ratio); images smaller than the crop are rejected.
        ``None`` takes the largest centred region with the target aspect
        ratio, so any image size works. Only with ``fit="crop"``.
    filter
        Resampling filter: ``"lanczos"`` (default), ``"bicubic"``,
        ``"bilinear"`` or ``"box"``.
    version
        :data:`CACHE_VERSION` of the code that decoded the images.
    fit
        ``"crop"`` (default) cuts the image to the target aspect ratio;
        ``"pad"`` keeps all of it, centred, and fills the margins with the
        median colour of its border (see :data:`FITS`).
    """

    size: tuple[int, int] = (128, 128)
    channels: int = 3
    crop: int | None = None
    filter: str = "lanczos"
    version: int = CACHE_VERSION
    fit: str = "crop"

    def __post_init__(self) -> None:
        height, width = self.size
        if height < 1 or width < 1:
            raise ConfigError(f"image size must be positive, got {height}x{width}")
        if self.channels not in (1, 3):
            raise ConfigError(f"images must have 1 or 3 channels, got {self.channels}")
        check_bytes((self.channels, height, width), f"one {height}x{width} image", param="image_shape",
                    limit=MAX_IMAGE_BYTES)
        if self.crop is not None and self.crop < 1:
            raise ConfigError(f"crop must be at least 1 pixel, got {self.crop}")
        if self.filter not in _FILTERS:
            raise ConfigError(f"unknown resampling filter {self.filter!r}; choose one of: {', '.join(_FILTERS)}")
        if self.fit not in FITS:
            raise ConfigError(f"fit: unknown value {self.fit!r}; choose one of: {', '.join(FITS)}")
        if self.crop is not None and self.fit != "crop":
            raise ConfigError(f"crop: a fixed crop needs fit='crop', got fit={self.fit!r}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one decoded image."""
        return (self.channels, *self.size)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form; image caches are keyed by it."""
        data = {**asdict(self), "size": list(self.size)}
        if self.fit == "crop":
            # Caches built before ``fit`` existed are all "crop": leaving the
            # default out keeps their keys, so they are not rebuilt.
            del data["fit"]
        return data

    def describe(self) -> str:
        """One line for logs and docs, e.g. ``centre crop 148x148, LANCZOS to 128x128 RGB``."""
        height, width = self.size
        if self.fit == "pad":
            crop = "padded to the aspect ratio with the border colour"
        elif self.crop is None:
            crop = "largest centred crop"
        else:
            crop = f"centre crop {_crop_width(self.crop, self.size)}x{self.crop}"
        mode = "RGB" if self.channels == 3 else "greyscale"
        return f"{crop}, {self.filter.upper()} resize to {width}x{height} {mode}"


class ImageProblem(Exception):
    """One image file cannot be used; the message says why (one line)."""


def decode_image(path: str | os.PathLike[str] | BinaryIO, transform: ImageTransform) -> np.ndarray:
    """Read one image file and apply ``transform``.

    Parameters
    ----------
    path
        The image file, or an open binary file object (e.g. an upload in
        :class:`io.BytesIO`).
    transform
        Fit (crop or pad), size, channels and filter.

    Returns
    -------
    numpy.ndarray
        uint8 array of shape ``transform.shape``, i.e. ``(C, H, W)``.

    Raises
    ------
    ImageProblem
        If the file is missing, not an image, corrupt or truncated, or
        smaller than the crop.
    """
    is_stream = _is_stream(path)
    # Checked before opening: Image.open on a FIFO or a device never returns.
    problem = None if is_stream else file_problem(path)
    if problem is not None:
        raise ImageProblem(problem)
    try:
        with Image.open(path if is_stream else os.fsdecode(path)) as image:
            image, box = _oriented(image, transform)
            image = _to_mode(image, transform.channels)
            # Both fits force the decode, so truncated files fail here.
            image = _pad(image, transform) if transform.fit == "pad" else _crop(image, transform, box)
            array = np.asarray(image, dtype=np.uint8)
    except ImageProblem:
        raise
    except FileNotFoundError:
        raise ImageProblem("file not found") from None
    except Image.UnidentifiedImageError:
        raise ImageProblem("not a readable image: not an image, or a format Pillow cannot read") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a problem of this one file
        raise ImageProblem(f"not a readable image: {one_line(exc)}") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _oriented(image: Image.Image, transform: ImageTransform) -> tuple[Image.Image, tuple[float, ...]]:
    """The image upright (EXIF orientation applied), and the crop box in its pixels.

    The box is computed on the upright size before decoding, so that JPEG
    draft mode (see :func:`_draft`) can decode only as many pixels as needed.
    """
    orientation = image.getexif().get(0x0112, 1)
    width, height = image.size
    if orientation in (5, 6, 7, 8):  # EXIF: stored rotated by 90 degrees
        width, height = height, width
    box = _crop_box((width, height), transform) if transform.fit == "crop" else (0.0, 0.0, width, height)
    _draft(image, transform, box)
    if orientation not in (1, None):  # phone photos are stored sideways
        image = ImageOps.exif_transpose(image)
    # Draft mode may have decoded at 1/2, 1/4 or 1/8 scale: scale the box too.
    sx, sy = image.size[0] / width, image.size[1] / height
    return image, (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)


def _crop(image: Image.Image, transform: ImageTransform, box: tuple[float, ...]) -> Image.Image:
    """Crop ``box`` and resize to the target in one pass (resize() takes the box)."""
    height, width = transform.size
    return image.resize((width, height), _FILTERS[transform.filter], box=box, reducing_gap=_REDUCING_GAP)


def _pad(image: Image.Image, transform: ImageTransform) -> Image.Image:
    """Resize to fit inside the target and centre it on the image's border colour."""
    height, width = transform.size
    scale = min(width / image.width, height / image.height)
    inner = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resized = image.resize(inner, _FILTERS[transform.filter], reducing_gap=_REDUCING_GAP)
    # The margins continue the photo's background (a product shot on white
    # stays on white) instead of adding a frame the model has never seen.
    canvas = Image.new(image.mode, (width, height), _border_colour(np.asarray(image)))
    canvas.paste(resized, ((width - inner[0]) // 2, (height - inner[1]) // 2))
    return canvas


def _draft(image: Image.Image, transform: ImageTransform, box: tuple[float, float, float, float]) -> None:
    """Let JPEG decode big photos at 1/2, 1/4 or 1/8 scale when that is enough.

    Decoding a 4000x3000 photo at 1/8 scale is ~20x faster and loses nothing
    once the result is resized to 128 pixels. ``box`` is the crop in
    full-size pixels.
    """
    if image.format != "JPEG":
        return
    scale = max(transform.size[1] / (box[2] - box[0]), transform.size[0] / (box[3] - box[1]))
    if scale < 0.5:
        width, height = image.size
        mode = "RGB" if transform.channels == 3 else "L"
        image.draft(mode, (math.ceil(width * scale), math.ceil(height * scale)))


def _crop_width(crop_height: int, size: tuple[int, int]) -> int:
    return max(1, round(crop_height * size[1] / size[0]))


def _crop_box(image_size: tuple[int, int], transform: ImageTransform) -> tuple[float, float, float, float]:
    """Centred crop box ``(left, top, right, bottom)`` in source pixels."""
    width, height = image_size
    target_height, target_width = transform.size
    if transform.crop is not None:
        crop_h, crop_w = transform.crop, _crop_width(transform.crop, transform.size)
        if width < crop_w or height < crop_h:
            raise ImageProblem(f"image is {width}x{height}, smaller than the {crop_w}x{crop_h} crop")
        # Integer offsets: the crop is the exact pixel block, as in torchvision.
        left, top = (width - crop_w) // 2, (height - crop_h) // 2
        return (left, top, left + crop_w, top + crop_h)
    if width * target_height > height * target_width:  # wider than the target
        crop_w, crop_h = height * target_width / target_height, float(height)
    else:
        crop_w, crop_h = float(width), width * target_height / target_width
    left, top = (width - crop_w) / 2, (height - crop_h) / 2
    return (left, top, left + crop_w, top + crop_h)


def _to_mode(image: Image.Image, channels: int) -> Image.Image:
    """Convert to ``L`` or ``RGB``; transparency goes on black, 16-bit is scaled."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(pixels.max()), 1.0)
        image = Image.fromarray(np.clip(pixels / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    target = "RGB" if channels == 3 else "L"
    return image if image.mode == target else image.convert(target)


def image_transform(image_shape: Sequence[int], fit: str = "crop") -> ImageTransform:
    """The :class:`ImageTransform` that turns an image file into a model's ``(C, H, W)`` input.

    Parameters
    ----------
    image_shape
        ``(C, H, W)`` with C 1 (greyscale) or 3 (RGB).
    fit
        ``"crop"`` or ``"pad"`` (see :class:`ImageTransform`).

    Raises
    ------
    DataError
        If ``image_shape`` has a channel count image files cannot give.
    ConfigError
        If ``image_shape`` is not three positive sizes, or ``fit`` is unknown.
    """
    if len(image_shape) != 3:
        raise ConfigError(f"image_shape must be (C, H, W), got {tuple(image_shape)}")
    channels, height, width = (int(s) for s in image_shape)
    if channels not in (1, 3):
        raise DataError(f"image_shape: image files convert to 1 or 3 channels, not to {channels} channels")
    return ImageTransform(size=(height, width), channels=channels, fit=fit)


def read_image(path: str | os.PathLike[str] | BinaryIO, image_shape: Sequence[int], fit: str = "crop") -> np.ndarray:
    """Read an image file as uint8 ``(C, H, W)``; :func:`decode_image` with :func:`image_transform`.

    Parameters
    ----------
    path
        The image file, or an open binary file object (errors name it by its
        ``name`` attribute, else ``"image"``).
    image_shape
        ``(C, H, W)`` to produce, C 1 or 3.
    fit
        ``"crop"`` (largest centred region of the target aspect ratio) or
        ``"pad"`` (whole image, margins in its border colour).

    Returns
    -------
    numpy.ndarray
        uint8 ``image_shape``.

    Raises
    ------
    DataError
        One line naming the file: missing, not an image, corrupt; or an
        unsupported channel count.
    """
    transform = image_transform(image_shape, fit)
    try:
        return decode_image(path, transform)
    except ImageProblem as problem:
        raise DataError(f"{_source_name(path)}: {problem}") from None


def _is_stream(source: Any) -> bool:
    return hasattr(source, "read")


def _source_name(source: Any) -> str:
    """How errors name an image source: its path, or a file object's ``name`` (else ``"image"``)."""
    if _is_stream(source):
        name = getattr(source, "name", None)
        return shown_path(name) if isinstance(name, (str, bytes, os.PathLike)) else "image"
    return shown_path(source)


def load_image(
    path: str | os.PathLike[str] | BinaryIO, image_shape: Sequence[int], fit: str = "pad", invert: bool = False
) -> np.ndarray:
    """Read an image file as the model's input: ``(C, H, W)`` float32 in [0, 1].

    The image is decoded by :func:`read_image`: turned upright (EXIF),
    converted to greyscale for 1 channel or RGB for 3 (transparent pixels
    become black, the background of Fashion-MNIST), fitted to the aspect
    ratio and resized with a Lanczos filter.

    Parameters
    ----------
    path
        The image file, or an open binary file object such as
        ``io.BytesIO(uploaded_bytes)``.
    image_shape
        The model's ``(C, H, W)``.
    fit
        ``"pad"`` (default) keeps the whole object, filling the margins with
        the border colour; ``"crop"`` takes the largest centred region, as
        image datasets do.
    invert
        Turn dark-on-light photos into the light-on-dark look of
        Fashion-MNIST.

    Raises
    ------
    DataError
        If the file is missing or not an image, or the model's channel count
        is neither 1 nor 3.
    """
    array = read_image(path, image_shape, fit).astype(np.float32) / np.float32(255.0)
    return 1.0 - array if invert else array


def _border_colour(array: np.ndarray) -> int | tuple[int, ...]:
    edge = np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]])
    median = np.median(edge, axis=0)
    return int(median) if np.ndim(median) == 0 else tuple(int(c) for c in median)


