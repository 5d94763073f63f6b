"""Image files: decoding one file into the uint8 ``(C, H, W)`` a model takes.

:class:`ImageTransform` says how (size, channels, crop, filter) and
:func:`decode_image` does it; :func:`load_image` turns a user's file into
model input.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageOps

from vaekit.errors import ConfigError, DataError

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
        ratio, so any image size works.
    filter
        Resampling filter: ``"lanczos"`` (default), ``"bicubic"``,
        ``"bilinear"`` or ``"box"``.
    version
        :data:`CACHE_VERSION` of the code that decoded the images.
    """

    size: tuple[int, int] = (128, 128)
    channels: int = 3
    crop: int | None = None
    filter: str = "lanczos"
    version: int = CACHE_VERSION

    def __post_init__(self) -> None:
        height, width = self.size
        if height < 1 or width < 1:
            raise ConfigError(f"image size must be positive, got {height}x{width}")
        if self.channels not in (1, 3):
            raise ConfigError(f"images must have 1 or 3 channels, got {self.channels}")
        if self.crop is not None and self.crop < 1:
            raise ConfigError(f"crop must be at least 1 pixel, got {self.crop}")
        if self.filter not in _FILTERS:
            raise ConfigError(f"unknown resampling filter {self.filter!r}; choose one of: {', '.join(_FILTERS)}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one decoded image."""
        return (self.channels, *self.size)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "size": list(self.size)}

    def describe(self) -> str:
        """One line for logs and docs, e.g. ``centre crop 148x148, LANCZOS to 128x128 RGB``."""
        height, width = self.size
        if self.crop is None:
            crop = "largest centred crop"
        else:
            crop = f"centre crop {_crop_width(self.crop, self.size)}x{self.crop}"
        mode = "RGB" if self.channels == 3 else "greyscale"
        return f"{crop}, {self.filter.upper()} resize to {width}x{height} {mode}"


class ImageProblem(Exception):
    """One image file cannot be used; the message says why (one line)."""


def decode_image(path: str | os.PathLike[str], transform: ImageTransform) -> np.ndarray:
    """Read one image file and apply ``transform``.

    Parameters
    ----------
    path
        The image file.
    transform
        Crop, size, channels and filter.

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
    try:
        with Image.open(path) as image:
            orientation = image.getexif().get(0x0112, 1)
            width, height = image.size
            if orientation in (5, 6, 7, 8):  # EXIF: stored rotated by 90 degrees
                width, height = height, width
            box = _crop_box((width, height), transform)
            _draft(image, transform, box)
            if orientation not in (1, None):  # phone photos are stored sideways
                image = ImageOps.exif_transpose(image)
            # Draft mode may have decoded at 1/2, 1/4 or 1/8 scale: scale the box too.
            sx, sy = image.size[0] / width, image.size[1] / height
            box = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
            image = _to_mode(image, transform.channels)
            height, width = transform.size
            # resize() with a box crops and resizes in one pass; it also
            # forces the decode, so truncated files fail here.
            image = image.resize((width, height), _FILTERS[transform.filter], box=box, reducing_gap=_REDUCING_GAP)
            array = np.asarray(image, dtype=np.uint8)
    except ImageProblem:
        raise
    except FileNotFoundError:
        raise ImageProblem("file not found") from None
    except Image.UnidentifiedImageError:
        raise ImageProblem("not an image, or a format Pillow cannot read") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a problem of this one file
        raise ImageProblem(_one_line(exc)) from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


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




def load_image(path: str | os.PathLike, image_shape: Sequence[int], invert: bool = False) -> np.ndarray:
    """Read an image file as the model's input: ``(C, H, W)`` float32 in [0, 1].

    The image is converted to greyscale ("L") for 1 channel or "RGB" for 3
    (transparent pixels become black, the background of Fashion-MNIST), padded
    to a square with its border colour so the aspect ratio is kept, and resized
    with a Lanczos filter. ``invert`` turns dark-on-light photos into the
    light-on-dark look of Fashion-MNIST.

    Raises
    ------
    DataError
        If the file is missing, not an image, or the model's channel count
        is neither 1 nor 3.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    channels, height, width = (int(s) for s in image_shape)
    if channels not in (1, 3):
        raise DataError(f"{path}: cannot convert an image file to the model's {channels} channels (only 1 or 3)")
    try:
        with Image.open(path) as opened:
            opened.load()
            image = opened
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable image ({_one_line(error)})") from None
    image = _flatten_alpha(ImageOps.exif_transpose(image)).convert("L" if channels == 1 else "RGB")
    border = _border_colour(np.asarray(image))
    image = ImageOps.pad(image, (width, height), method=Image.Resampling.LANCZOS, color=border)
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = array[None] if channels == 1 else array.transpose(2, 0, 1)
    return (1.0 - array if invert else array).astype(np.float32)


def _flatten_alpha(image):
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image


def _border_colour(array: np.ndarray) -> int | tuple[int, ...]:
    edge = np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]])
    median = np.median(edge, axis=0)
    return int(median) if np.ndim(median) == 0 else tuple(int(c) for c in median)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
