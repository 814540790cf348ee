"""Image decode for every stage that reads pictures: Pillow with EXIF orientation applied and every mode
(palette, greyscale, CMYK, alpha) turned into RGB, alpha composited on mid grey."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError


class ImageDecodeError(ValueError):
    """Bytes that do not give an image; ``readable`` is False when they are not an image at all (wrong format,
    a decompression bomb), True when they are one that does not decode (truncated, damaged)."""

    def __init__(self, message: str, readable: bool):
        super().__init__(message)
        self.readable = readable


def decode_rgb(data: bytes) -> Image.Image:
    """An RGB image from encoded bytes; :class:`ImageDecodeError` when there is none."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            img.load()
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise ImageDecodeError(f"not a readable image ({e})", readable=False) from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageDecodeError(f"image does not decode ({e})", readable=True) from e
    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return img.convert("RGB")
