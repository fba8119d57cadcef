"""Datasets and loaders: ImageNet-style folders through timm's dataset and transform factories,
or the in-memory Fashion-MNIST demo data.

Training order comes from one DistributedSampler for every world size (seeded by the run's seed
and the epoch), so a run's sample order depends on neither the number of processes nor on
whether it was resumed: the 2-process run sees the same global batches as the 1-process run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from timm.data import ImageDataset, create_transform
from timm.data.loader import PrefetchLoader, fast_collate
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from . import fashion_mnist
from .config import ResolvedConfig
from .distributed import DistInfo

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
# Below this many images "auto" decodes every image before training starts.
AUTO_VERIFY_LIMIT = 20_000


class DataError(RuntimeError):
    """Unusable input data; the message names the file or folder and what was expected."""


class CorruptImageError(DataError):
    pass


# --------------------------------------------------------------------------------------------------
# checking folders
# --------------------------------------------------------------------------------------------------


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def check_class_folders(split_dir: Path, what: str) -> list[str]:
    """The class names of an ImageNet-style split folder, or a DataError saying what is wrong."""
    if not split_dir.exists():
        raise DataError(f"{what}: {split_dir} does not exist (expected {split_dir}/<class>/<image files>)")
    if not split_dir.is_dir():
        raise DataError(f"{what}: {split_dir} is not a folder")
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{what}: {split_dir} is empty: expected one sub-folder of images per class")
    empty = [c for c in classes if not _images_in(split_dir / c)]
    if len(empty) == len(classes):
        raise DataError(
            f"{what}: no images in the class folders of {split_dir} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    if empty:
        raise DataError(f"{what}: class folder(s) without images in {split_dir}: {', '.join(empty[:10])}")
    return classes


def verify_images(paths: list[Path], mode: str) -> None:
    """Decode every image now (mode 'all', or 'auto' for small sets) so a bad file stops the run
    before training starts rather than hours into it."""
    if mode == "none" or (mode == "auto" and len(paths) > AUTO_VERIFY_LIMIT):
        return
    for path in paths:
        try:
            with Image.open(path) as image:
                image.convert("RGB").load()
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise CorruptImageError(f"corrupt or unreadable image {path}: {err}; remove or replace it") from None


class StrictImageDataset(ImageDataset):
    """timm's folder dataset, but a file that does not decode stops the run with its name instead
    of being skipped silently (skipping would change the data between a run and its resumption)."""

    def __getitem__(self, index: int):
        image, target = self.reader[index][:2]
        try:
            image = Image.open(image).convert(self.input_img_mode or "RGB")
        except (OSError, ValueError) as err:
            raise CorruptImageError(
                f"corrupt or unreadable image {self.filename(index, absolute=True)}: {err}; remove or replace it"
            ) from None
        if self.transform is not None:
            image = self.transform(image)
        return image, -1 if target is None else target


# --------------------------------------------------------------------------------------------------
# samplers
# --------------------------------------------------------------------------------------------------


class ShardSampler(Sampler[int]):
    """Every rank evaluates indices ``rank, rank + world, ...``: no sample twice, none left out."""

    def __init__(self, length: int, rank: int, world_size: int):
        self.indices = list(range(rank, length, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


# --------------------------------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------------------------------


@dataclass
class Loaders:
    train: Any
    eval: Any
    train_sampler: DistributedSampler | None
    num_classes: int
    class_names: list[str]
    train_size: int
    eval_size: int
    mixup_in_loop: bool = True


def resolve_split(root: Path, split: str) -> Path:
    return root / split


def build_datasets(
    resolved: ResolvedConfig, data_config: dict[str, Any], train: bool = True
) -> tuple[Dataset | None, Dataset, list[str]]:
    """(train dataset or None, evaluation dataset, class names) with their transforms set."""
    data_dir = resolved.data_dir
    if resolved.dataset == "fashion-mnist":
        mean, std = data_config["mean"], data_config["std"]
        size = resolved.img_size
        train_set = (
            fashion_mnist.FashionMNIST(data_dir, "train", size, mean, std, augment=resolved.aug) if train else None
        )
        eval_set = fashion_mnist.FashionMNIST(data_dir, "test", size, mean, std, augment=False)
        return train_set, eval_set, list(fashion_mnist.CLASS_NAMES)

    if not data_dir:
        raise DataError("--data-dir: required for an ImageNet-style dataset (a folder with train/ and val/)")
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"--data-dir: {root} does not exist or is not a folder")
    eval_dir = resolve_split(root, resolved.val_split)
    eval_classes = check_class_folders(eval_dir, "--data-dir (validation split)")
    train_set = None
    classes = eval_classes
    if train:
        train_dir = resolve_split(root, resolved.train_split)
        classes = check_class_folders(train_dir, "--data-dir (training split)")
        if eval_classes != classes:
            extra = sorted(set(eval_classes) - set(classes))
            raise DataError(
                f"--data-dir: the class folders of {eval_dir} and {train_dir} differ"
                + (f" (only in validation: {', '.join(extra[:10])})" if extra else "")
            )
        verify_images(_images_in(train_dir), resolved.verify_images)
        train_set = StrictImageDataset(str(train_dir))
    verify_images(_images_in(eval_dir), resolved.verify_images)
    eval_set = StrictImageDataset(str(eval_dir))
    return train_set, eval_set, classes


def build_loaders(resolved: ResolvedConfig, data_config: dict[str, Any], info: DistInfo, train: bool = True) -> Loaders:
    train_set, eval_set, classes = build_datasets(resolved, data_config, train=train)
    use_prefetcher = info.device.type == "cuda" and resolved.dataset == "imagefolder"
    workers = resolved.workers
    pin_memory = resolved.pin_memory if resolved.pin_memory is not None else info.device.type == "cuda"
    input_size = (3, resolved.img_size, resolved.img_size)

    if resolved.dataset == "imagefolder":
        eval_set.transform = create_transform(
            input_size,
            is_training=False,
            interpolation=data_config["interpolation"],
            mean=data_config["mean"],
            std=data_config["std"],
            crop_pct=data_config["crop_pct"],
            use_prefetcher=use_prefetcher,
        )
        if train_set is not None:
            train_set.transform = create_transform(
                input_size,
                is_training=True,
                no_aug=not resolved.aug,
                scale=tuple(resolved.scale),
                ratio=tuple(resolved.ratio),
                hflip=resolved.hflip,
                color_jitter=resolved.color_jitter,
                auto_augment=resolved.auto_augment,
                interpolation=resolved.train_interpolation,
                mean=data_config["mean"],
                std=data_config["std"],
                re_prob=resolved.reprob,
                re_mode=resolved.remode,
                re_count=resolved.recount,
                use_prefetcher=use_prefetcher,
            )

    collate = fast_collate if use_prefetcher else None
    loader_kwargs = dict(
        num_workers=workers, pin_memory=pin_memory, collate_fn=collate, persistent_workers=False
    )  # fresh workers each epoch: seeds follow the epoch
    eval_loader: Any = DataLoader(
        eval_set,
        batch_size=resolved.batch_size,
        shuffle=False,
        sampler=ShardSampler(len(eval_set), info.rank, info.world_size),
        drop_last=False,
        **loader_kwargs,
    )
    train_loader: Any = None
    sampler = None
    if train_set is not None:
        if len(train_set) < resolved.global_batch_size:
            raise DataError(
                f"--batch-size: the training set has {len(train_set)} images, fewer than one global "
                f"batch of {resolved.global_batch_size}"
            )
        sampler = DistributedSampler(
            train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=resolved.seed, drop_last=True
        )
        train_loader = DataLoader(
            train_set, batch_size=resolved.batch_size, sampler=sampler, drop_last=True, **loader_kwargs
        )
    if use_prefetcher:
        common = dict(mean=data_config["mean"], std=data_config["std"], channels=3, device=info.device)
        eval_loader = PrefetchLoader(eval_loader, **common)
        if train_loader is not None:
            train_loader = PrefetchLoader(
                train_loader,
                re_prob=0.0 if not resolved.aug else resolved.reprob,
                re_mode=resolved.remode,
                re_count=resolved.recount,
                **common,
            )
    return Loaders(
        train=train_loader,
        eval=eval_loader,
        train_sampler=sampler,
        num_classes=len(classes),
        class_names=classes,
        train_size=len(train_set) if train_set is not None else 0,
        eval_size=len(eval_set),
    )
