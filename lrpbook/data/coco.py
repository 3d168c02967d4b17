"""Loading COCO-format folders (COCO, LVIS, or the synthetic sets) for torchvision detectors.

Taught in: chapter "Detection basics and notation".
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from pycocotools.coco import COCO
from torch import Tensor
from torchvision.datasets import CocoDetection as _TVCocoDetection
from torchvision.transforms.functional import pil_to_tensor

from lrpbook.metrics._io import load_json

__all__ = ["CocoDetection", "collate_fn", "load_coco_json"]


def load_coco_json(ann_file: str | Path) -> dict:
    """Read and check a COCO-format instances file.

    Args:
        ann_file: path to the JSON file.

    Returns:
        The parsed dict, with ``images``, ``annotations`` and ``categories`` present (LVIS keys such as
        ``neg_category_ids`` are kept as they are).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it is not valid JSON, or lacks one of the three COCO keys, or an annotation
            refers to an image or category id that is not listed.
    """
    path = Path(ann_file)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:  # the package's one JSON loader (orjson, gzip, a one-line message)
        data = load_json(path, what="annotation file")
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object with images/annotations/categories")
    for key in ("images", "annotations", "categories"):
        if key not in data or not isinstance(data[key], list):
            raise ValueError(f"{path}: missing the list {key!r} of a COCO instances file")
    image_ids = {img["id"] for img in data["images"]}
    cat_ids = {cat["id"] for cat in data["categories"]}
    for k, ann in enumerate(data["annotations"]):
        for key in ("image_id", "category_id", "bbox"):
            if key not in ann:
                raise ValueError(f"{path}: annotation {k} has no {key!r}")
        if ann["image_id"] not in image_ids:
            raise ValueError(
                f"{path}: annotation {k} refers to image_id {ann['image_id']}, which is not listed"
            )
        if ann["category_id"] not in cat_ids:
            raise ValueError(
                f"{path}: annotation {k} refers to category_id {ann['category_id']}, which is not listed"
            )
    return data


class CocoDetection(_TVCocoDetection):
    """A COCO-format detection dataset returning ``(image, target)`` ready for torchvision detectors.

    Built on :class:`torchvision.datasets.CocoDetection` (which reads images through pycocotools'
    index); this class validates the annotation file, maps category ids to contiguous labels and
    converts annotations to tensors.

    Args:
        image_dir: folder of the images (``file_name`` of each image is relative to it; LVIS images
            without ``file_name`` use the last part of ``coco_url``).
        ann_file: COCO or LVIS instances JSON.
        transforms: optional callable ``(image, target) -> (image, target)`` applied last.
        with_masks: also return ``target["masks"]`` (UInt8Tensor[N, H, W]) from the segmentations.

    Items:
        ``image`` is a FloatTensor[3, H, W] in [0, 1]. ``target`` holds ``boxes`` (FloatTensor[N, 4],
        ``xyxy`` pixels), ``labels`` (Int64Tensor[N], contiguous ``1..C`` in ascending category-id
        order), ``image_id`` (int), ``area`` (FloatTensor[N], the annotation's ``area`` field),
        ``iscrowd`` (Int64Tensor[N]) and optionally ``masks``. Annotations whose box has zero or negative
        width or height are dropped (they cannot be regressed); an image without annotations gives
        ``N = 0``.

    Attributes:
        cat_ids: the category ids in ascending order; ``label_to_cat_id[label]`` inverts the mapping
            (label 0 is reserved for the background).

    Raises:
        FileNotFoundError: if ``image_dir`` or ``ann_file`` is missing (and, when an item is read, if
            its image file is missing).
        ValueError: if the annotation file is malformed (see :func:`load_coco_json`).
    """

    def __init__(
        self,
        image_dir: str | Path,
        ann_file: str | Path,
        transforms: Callable | None = None,
        *,
        with_masks: bool = False,
    ) -> None:
        image_dir = Path(image_dir)
        if not image_dir.is_dir():
            raise FileNotFoundError(f"image folder not found: {image_dir}")
        data = load_coco_json(ann_file)
        torch.utils.data.Dataset.__init__(self)
        self.root = str(image_dir)
        self.transforms = transforms
        self.transform = None
        self.target_transform = None
        self.ann_file = Path(ann_file)
        self.with_masks = with_masks
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO()
            self.coco.dataset = data
            self.coco.createIndex()
        self.ids = sorted(self.coco.imgs.keys())
        self.cat_ids = sorted(self.coco.cats.keys())
        self.cat_id_to_label = {c: i + 1 for i, c in enumerate(self.cat_ids)}
        self.label_to_cat_id = {i + 1: c for i, c in enumerate(self.cat_ids)}

    def _load_image(self, id: int) -> Image.Image:  # noqa: A002 - torchvision's signature
        info = self.coco.loadImgs(id)[0]
        name = info.get("file_name") or str(info.get("coco_url", "")).rsplit("/", 1)[-1]
        path = Path(self.root) / name
        if not path.is_file():
            raise FileNotFoundError(f"image {id} of {self.ann_file}: file not found: {path}")
        return Image.open(path).convert("RGB")

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        image_id = self.ids[index]
        image = self._load_image(image_id)
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id))
        boxes, labels, areas, crowd, masks = [], [], [], [], []
        for ann in anns:
            x, y, w, h = ann["bbox"]
            if w <= 0 or h <= 0:
                continue
            boxes.append([x, y, x + w, y + h])
            labels.append(self.cat_id_to_label[ann["category_id"]])
            areas.append(float(ann.get("area", w * h)))
            crowd.append(int(ann.get("iscrowd", 0)))
            if self.with_masks:
                masks.append(self.coco.annToMask(ann) if "segmentation" in ann else None)
        target: dict[str, Any] = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "image_id": int(image_id),
            "area": torch.tensor(areas, dtype=torch.float32),
            "iscrowd": torch.tensor(crowd, dtype=torch.int64),
        }
        if self.with_masks:
            h_img, w_img = image.height, image.width
            stack = [
                torch.from_numpy(m)
                if m is not None
                else torch.zeros(h_img, w_img, dtype=torch.uint8)
                for m in masks
            ]
            target["masks"] = (
                torch.stack(stack) if stack else torch.zeros(0, h_img, w_img, dtype=torch.uint8)
            )
        tensor = pil_to_tensor(image).float().div_(255.0)
        if self.transforms is not None:
            tensor, target = self.transforms(tensor, target)
        return tensor, target

    def __len__(self) -> int:
        return len(self.ids)


def collate_fn(batch: list[tuple[Tensor, dict]]) -> tuple[list[Tensor], list[dict]]:
    """Collate ``(image, target)`` pairs into a list of images and a list of targets.

    Detection batches hold images of different sizes and different numbers of objects, so they are
    not stacked: torchvision detectors take lists.

    Args:
        batch: the items of a :class:`CocoDetection`.

    Returns:
        ``(images, targets)``, two lists of the same length as ``batch``.
    """
    images = [item[0] for item in batch]
    targets = [item[1] for item in batch]
    return images, targets
