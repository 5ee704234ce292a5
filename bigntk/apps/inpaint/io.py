"""Image and mask I/O for inpainting.

Conventions (used throughout ``bigntk.apps.inpaint``):

* images are float arrays in [0, 1], shape ``(H, W)`` (grey) or ``(H, W, 3)`` (RGB);
  uint8 inputs are divided by 255, uint16 by 65535, float inputs must already lie in [0, 1];
* masks are bool arrays of shape ``(H, W)``, **True = observed**, False = missing.
  A mask image is read as "nonzero = observed" unless ``nonzero_means="missing"``;
* a corrupted image may instead mark missing pixels with a marker value (e.g. 0 or NaN),
  compared on the raw stored values in every channel.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

__all__ = [
    "load_image", "to_float01", "from_float01", "save_image", "load_mask", "as_mask",
    "mask_from_marker", "apply_mask", "IMAGE_SUFFIXES",
]

#: Suffixes read by ``load_image`` / the CLI's ``--batch`` mode.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".npy")


def read_raw(path: str | Path) -> np.ndarray:
    """An image file's stored values at their bit depth: PNG through imagecodecs (Pillow reduces 16-bit
    RGB to 8 bits), TIFF through tifffile, other formats (JPEG, BMP: 8-bit) through Pillow, ``.npy`` as saved.

    Palette images come back as RGB, grey + alpha as grey; shape (H, W) or (H, W, C). A file that is
    empty or not an image of its extension is one ``ValueError`` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        from ... import persist

        return persist.load_npy(path, "image")
    try:
        arr = _decode(path, suffix)
    except (ValueError, OSError, RuntimeError) as err:
        raise ValueError(f"{path} is not a readable {suffix or 'image'} image ({err or type(err).__name__}); "
                         "check the file, or save it again as PNG") from None
    if arr.ndim == 3 and arr.shape[2] == 2:  # grey + alpha
        arr = arr[..., 0]
    if arr.dtype == np.int32:  # 16-bit grey through Pillow's mode "I"
        arr = np.clip(arr, 0, 65535).astype(np.uint16)
    return arr


def _decode(path: Path, suffix: str) -> np.ndarray:
    if suffix == ".png":
        import imagecodecs

        return imagecodecs.png_decode(path.read_bytes())
    if suffix in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    with Image.open(path) as im:
        if im.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "1"):
            im = im.convert("RGB" if im.mode not in ("LA", "1") else "L")
        return np.array(im)


def to_float01(raw: np.ndarray) -> np.ndarray:
    """Convert a raw image (uint8 / uint16 / float in [0, 1]) to float32 in [0, 1].

    Shape ``(H, W)`` or ``(H, W, C)`` is kept; an RGBA array loses alpha, a single
    channel ``(H, W, 1)`` is squeezed.
    """
    arr = np.asarray(raw)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"image must have shape (H, W) or (H, W, 3), got {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.floating):
        finite = arr[np.isfinite(arr)]
        if finite.size and (finite.min() < -1e-6 or finite.max() > 1 + 1e-6):
            raise ValueError(
                f"float image values must lie in [0, 1] (got [{finite.min():.3g}, {finite.max():.3g}]); "
                "rescale it or pass an integer image")
        return np.clip(arr, 0.0, 1.0).astype(np.float32)
    raise ValueError(f"unsupported image dtype {arr.dtype}; use uint8, uint16 or float in [0, 1]")


def from_float01(img: np.ndarray, dtype: str | np.dtype = "uint8") -> np.ndarray:
    """Inverse of :func:`to_float01`: clip to [0, 1] and quantise to uint8/uint16 (or keep float)."""
    x = np.clip(np.asarray(img, dtype=np.float64), 0.0, 1.0)
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return np.round(x * 255.0).astype(np.uint8)
    if dtype == np.uint16:
        return np.round(x * 65535.0).astype(np.uint16)
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype)
    raise ValueError(f"unsupported output dtype {dtype}")


def load_image(path: str | Path) -> tuple[np.ndarray, np.dtype]:
    """Read an image file (PNG, TIFF, JPEG, BMP or ``.npy``; :func:`read_raw`).

    Returns ``(image, stored_dtype)``: image float32 in [0, 1], shape (H, W) or (H, W, 3),
    and the file's dtype (uint8, uint16, ...: write the result back at the same bit depth).
    """
    raw = read_raw(path)
    return to_float01(raw), raw.dtype


def save_image(path: str | Path, img: np.ndarray, dtype: str | np.dtype = "uint8") -> Path:
    """Write a [0, 1] image at bit depth ``dtype`` (uint8 or uint16); ``.npy`` keeps float32.

    PNG (imagecodecs) and TIFF (tifffile) store 8 or 16 bits, grey or RGB; JPEG and BMP store 8 bits
    (uint16 is written as 8 bits there, with a warning). The file is written beside ``path`` and renamed
    into place (``bigntk.persist.atomic_output``): a failed write leaves the previous file, never a partial one.
    """
    from ... import persist

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"{path}: unsupported image extension {suffix or '(none)'!r}; use one of "
                         f"{', '.join(IMAGE_SUFFIXES)}")
    data = _encode(img, suffix, dtype)
    with persist.atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return path


def _encode(img: np.ndarray, suffix: str, dtype: str | np.dtype) -> bytes:
    from io import BytesIO

    buf = BytesIO()
    if suffix == ".npy":
        np.save(buf, np.clip(np.asarray(img, dtype=np.float32), 0, 1))
        return buf.getvalue()
    dtype = np.dtype(np.uint16) if np.dtype(dtype) == np.uint16 else np.dtype(np.uint8)
    if dtype == np.uint16 and suffix not in (".png", ".tif", ".tiff"):
        warnings.warn(f"{suffix} stores 8 bits per channel; writing 8 bits (use .png or .tif for 16)", stacklevel=3)
        dtype = np.dtype(np.uint8)
    arr = from_float01(img, dtype)
    if suffix == ".png":
        import imagecodecs

        return bytes(imagecodecs.png_encode(arr))
    if suffix in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(buf, arr, photometric="rgb" if arr.ndim == 3 else "minisblack")
    else:
        Image.fromarray(arr).save(buf, format=Image.registered_extensions()[suffix])
    return buf.getvalue()


def as_mask(mask: np.ndarray, nonzero_means: Literal["observed", "missing"] = "observed") -> np.ndarray:
    """Boolean observed-mask (H, W) from an array mask (H, W) or (H, W, C) (any channel nonzero)."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = np.any(m != 0, axis=2)
    if m.ndim != 2:
        raise ValueError(f"mask must have shape (H, W) or (H, W, C), got {m.shape}")
    nonzero = m != 0
    if nonzero_means == "observed":
        return nonzero
    if nonzero_means == "missing":
        return ~nonzero
    raise ValueError(f"nonzero_means must be 'observed' or 'missing', got {nonzero_means!r}")


def load_mask(path: str | Path, nonzero_means: Literal["observed", "missing"] = "observed") -> np.ndarray:
    """Read a mask image; return bool (H, W), True = observed."""
    return as_mask(read_raw(path), nonzero_means)


def mask_from_marker(raw: np.ndarray, marker: float) -> tuple[np.ndarray, np.ndarray]:
    """Split a corrupted image whose missing pixels hold ``marker`` (all channels; NaN allowed).

    Returns ``(image01, observed_mask)``; missing pixels of the image are set to 0.
    """
    arr = np.asarray(raw)
    if np.isnan(marker):
        hit = np.isnan(arr)
    else:
        hit = arr == np.asarray(marker, dtype=arr.dtype)
    missing = np.all(hit, axis=2) if arr.ndim == 3 else hit
    arr = arr.copy()
    arr[missing] = 0
    return to_float01(arr), ~missing


def apply_mask(img: np.ndarray, observed: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """Corrupted copy of ``img``: missing pixels set to ``fill`` (for display / files)."""
    out = np.array(img, dtype=np.float32, copy=True)
    out[~observed] = fill
    return out
