"""Images as the fork feeds them: opened as RGB, then padded to square (``pad``) or resized and centre-cropped.

``image_aspect_ratio`` takes the fork's values: ``pad`` (``expand2square`` with the CLIP mean colour, then
CLIP preprocessing: the recipe's) and ``square`` (the fork's default: CLIP preprocessing alone, i.e. resize
and centre crop, which is also what llava-hf's own llava-1.5 processors do).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ASPECT_RATIOS = ("pad", "square")


def open_rgb(path: str) -> Any:
    """An image file as an RGB PIL image (the fork's ``Image.open(...).convert("RGB")``)."""
    from PIL import Image

    image = Image.open(path)
    image.load()  # decodes and closes the file
    return image if image.mode == "RGB" else image.convert("RGB")  # no copy of what already is RGB


def expand_to_square(image: Any, mean: Sequence[float]) -> Any:
    """The fork's ``expand2square``: centre ``image`` on a square of the CLIP mean colour (PIL, in C).

    The same pixels as ``LlavaImageProcessor``'s ``do_pad``, which pads a numpy copy of the full-size image;
    doing it here first leaves the processor a square image (its pad is then a no-op) and is faster.
    """
    from PIL import Image

    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    square = Image.new(image.mode, (side, side), tuple(int(x * 255) for x in mean))
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


# The image-processor settings a LLaVA processor keeps when rebuilt (CLIP's and LLaVA's share these names).
IMAGE_SETTINGS = (
    "do_resize",
    "size",
    "resample",
    "do_center_crop",
    "crop_size",
    "do_rescale",
    "rescale_factor",
    "do_normalize",
    "image_mean",
    "image_std",
    "do_convert_rgb",
)


def padding_image_processor(settings: Mapping[str, Any], image_aspect_ratio: str) -> Any:
    """``LlavaImageProcessorPil`` with CLIP's ``settings``, padding to square for ``"pad"`` (none for ``"square"``).

    The PIL backend on purpose: it is the fork's arithmetic (``expand2square`` with the CLIP mean colour, then
    PIL resize), bit for bit; the torchvision backend resizes differently.
    """
    from transformers import LlavaImageProcessorPil

    if image_aspect_ratio not in ASPECT_RATIOS:
        raise ValueError(f"image_aspect_ratio must be one of {ASPECT_RATIOS}, got {image_aspect_ratio!r}")
    kept = {key: settings[key] for key in IMAGE_SETTINGS if settings.get(key) is not None}
    return LlavaImageProcessorPil(**kept, do_pad=image_aspect_ratio == "pad")


def use_aspect_ratio(processor: Any, image_aspect_ratio: str) -> Any:
    """Give ``processor`` the recipe's image handling: ``"pad"`` (the fork's) or ``"square"`` (llava-hf's default).

    llava-hf's own llava-1.5 processors carry a ``CLIPImageProcessor``, which cannot pad; a CaD-VI model must be
    trained and evaluated with the padding, so the recipe replaces it, keeping its sizes and statistics, and
    saves the result with the model.
    """
    current = processor.image_processor
    settings = {key: getattr(current, key, None) for key in IMAGE_SETTINGS}
    for key in ("size", "crop_size"):  # SizeDict -> the plain dict the constructor takes
        if settings[key] is not None and not isinstance(settings[key], dict):
            settings[key] = {k: v for k, v in dict(settings[key]).items() if v is not None}
    processor.image_processor = padding_image_processor(settings, image_aspect_ratio)
    return processor
