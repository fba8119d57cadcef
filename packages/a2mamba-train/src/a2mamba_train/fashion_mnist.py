"""Fashion-MNIST from the idx files the Debian package ``dataset-fashion-mnist`` installs.

No download ever happens: the four standard files (``train-images-idx3-ubyte``, ... gzip'd or
not) are read from a folder. Images are resized once, kept in memory as one channel, and copied
to three channels and normalised per sample, so any ImageNet-shaped model trains on them.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
INSTALL_HINT = (
    "install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu; it puts the files in "
    "/usr/share/datasets/fashion-mnist), or pass --data-dir DIR with the four idx files "
    "(train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
    "t10k-labels-idx1-ubyte[.gz])"
)
_IDX_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class FashionMNISTMissing(FileNotFoundError):
    """The idx files are not where we looked; the message says how to get them."""


def read_idx(path: str | Path) -> np.ndarray:
    """An idx file (the MNIST container: magic, dims, raw big-endian data), gzip'd or not."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        data = stream.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an idx file (bad magic number)")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}i", data[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    payload = data[4 + 4 * ndim :]
    if len(payload) != expected:
        raise ValueError(f"{path}: truncated idx file ({len(payload)} bytes of data, expected {expected})")
    return np.frombuffer(payload, dtype=dtype).reshape(dims)


def find_file(root: Path, stem: str) -> Path | None:
    # The Debian package ships gzip'd files; torchvision's raw folder holds plain ones.
    for folder in (root, root / "FashionMNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def locate(root: str | Path) -> dict[str, tuple[Path, Path]]:
    """The image and label files of both splits under ``root``, or FashionMNISTMissing."""
    root = Path(root)
    if not root.is_dir():
        raise FashionMNISTMissing(f"Fashion-MNIST not found: {root} does not exist; {INSTALL_HINT}")
    found: dict[str, tuple[Path, Path]] = {}
    missing = []
    for split, (images, labels) in FILES.items():
        image_path, label_path = find_file(root, images), find_file(root, labels)
        if image_path is None:
            missing.append(images)
        if label_path is None:
            missing.append(labels)
        if image_path and label_path:
            found[split] = (image_path, label_path)
    if missing:
        raise FashionMNISTMissing(f"Fashion-MNIST not found in {root} (missing {', '.join(missing)}); {INSTALL_HINT}")
    return found


class FashionMNIST(Dataset):
    """One split as ``(3, size, size)`` float tensors normalised with ``mean``/``std``, and int labels.

    With ``augment`` a sample is shifted by up to 1/16 of its size (zero padding) and flipped
    horizontally with probability 0.5, drawn from torch's RNG (the loader seeds it per epoch).
    """

    classes = CLASS_NAMES

    def __init__(self, root: str | Path, split: str, img_size: int, mean, std, augment: bool = False):
        if split not in FILES:
            raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
        image_path, label_path = locate(root)[split]
        images = torch.from_numpy(read_idx(image_path).copy())
        labels = torch.from_numpy(read_idx(label_path).astype(np.int64))
        if images.ndim != 3 or labels.shape != (images.shape[0],):
            raise ValueError(f"{image_path}: expected N x 28 x 28 images with N labels")
        pixels = images.unsqueeze(1).float().div_(255.0)
        if pixels.shape[-1] != img_size:
            pixels = F.interpolate(pixels, size=(img_size, img_size), mode="bilinear", align_corners=False)
        self.images = pixels.contiguous()
        self.targets = labels
        self.img_size = img_size
        self.augment = augment
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.max_shift = max(1, img_size // 16)

    def __len__(self) -> int:
        return self.targets.shape[0]

    def _shift_and_flip(self, image: torch.Tensor) -> torch.Tensor:
        pad = self.max_shift
        dy, dx = torch.randint(0, 2 * pad + 1, (2,)).tolist()
        padded = F.pad(image, (pad, pad, pad, pad))
        image = padded[:, dy : dy + self.img_size, dx : dx + self.img_size]
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.augment:
            image = self._shift_and_flip(image)
        image = (image.expand(3, -1, -1) - self.mean) / self.std
        return image, int(self.targets[index])
