"""Image classification data for the weight problems: MNIST-like sets and scikit-learn's digits.

``mnist``, ``fashion-mnist`` and ``kmnist`` are read from the IDX files that torchvision's
MNIST / FashionMNIST / KMNIST classes use, looked for in this order:

1. ``<data_root>/<MNIST|FashionMNIST|KMNIST>/raw/`` (torchvision's layout; ``.gz`` or not),
2. ``<data_root>/`` itself,
3. for Fashion-MNIST, Debian's ``/usr/share/datasets/fashion-mnist`` (package
   ``dataset-fashion-mnist``), read in place.

With ``download=True`` and no files found, torchvision downloads them into layout 1 (this
needs internet). Offline and missing, the error names the four files and where they go.
``digits`` is scikit-learn's 8x8 set (1,797 images), shipped with the package: the default.

``emnist-digits`` and ``emnist-letters`` (:func:`load_emnist`) are read from the files
torchvision's EMNIST class extracts, ``emnist-<split>-<train|test>-<images-idx3|labels-idx1>-ubyte``
(``.gz`` or not), in ``<data_root>/EMNIST/raw/`` or ``<data_root>/``; ``download=True`` lets
torchvision fetch them (a 562 MB zip). Letters are labelled 0-25 (the files say 1-26). Images
are left as the files hold them (transposed), as torchvision and the learned-weight-sharing
code read them.

Images come back as float32 in [0, 1], shape ``[N, 1, H, W]``; labels as int64.
"""

from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from evoreg.errors import EvoregError, unknown_name

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
TORCHVISION_CLASS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}
SYSTEM_DIRS = {"fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")]}
DATASETS = (*TORCHVISION_CLASS, "digits")
DEFAULT_DATA_ROOT = "~/.cache/evoreg/data"


@dataclass
class ImageData:
    """Train and test images (float32 in [0, 1], ``[N, 1, H, W]``) and labels (int64)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str  # where the files were read from

    @property
    def classes(self) -> int:
        return int(self.train_labels.max()) + 1


def default_data_root() -> str:
    return os.environ.get("EVOREG_DATA", DEFAULT_DATA_ROOT)


def default_dataset(data_root: str | None = None) -> str:
    """fashion-mnist where its files are found (under ``data_root`` or the system's copy),
    digits (shipped with scikit-learn) otherwise: the default of problems whose ``dataset``
    is ``auto``."""
    root = Path(data_root or default_data_root()).expanduser()
    found = any(_find(d) for d in candidate_dirs("fashion-mnist", root))
    return "fashion-mnist" if found else "digits"


def load(name: str, data_root: str | None = None, download: bool = False) -> ImageData:
    """The data set ``name`` (one of ``DATASETS``)."""
    if name not in DATASETS:
        raise unknown_name("dataset", name, DATASETS)
    if name == "digits":
        return _digits()
    root = Path(data_root or default_data_root()).expanduser()
    return _idx_dataset(name, str(root), download)


@functools.lru_cache(maxsize=1)
def _digits() -> ImageData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.int64)
    # digits has no test split: a fixed 20% is held out (the problem splits validation off
    # the rest), the same for every run.
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    test, train = order[: len(order) // 5], order[len(order) // 5 :]
    return ImageData(images[train], labels[train], images[test], labels[test], "scikit-learn")


def candidate_dirs(name: str, root: Path) -> list[Path]:
    return [root / TORCHVISION_CLASS[name] / "raw", root, *SYSTEM_DIRS.get(name, [])]


def _find(directory: Path, stems: tuple[str, ...] = FILES) -> list[Path] | None:
    found = []
    for stem in stems:
        for path in (directory / stem, directory / f"{stem}.gz"):
            if path.is_file():
                found.append(path)
                break
        else:
            return None
    return found


@functools.lru_cache(maxsize=4)
def _idx_dataset(name: str, root: str, download: bool) -> ImageData:
    root_path = Path(root)
    for directory in candidate_dirs(name, root_path):
        paths = _find(directory)
        if paths is not None:
            return _read(paths, str(directory))
    if download:
        import torchvision

        cls = getattr(torchvision.datasets, TORCHVISION_CLASS[name])
        for train in (True, False):
            cls(str(root_path), train=train, download=True)
        paths = _find(root_path / TORCHVISION_CLASS[name] / "raw")
        if paths is not None:
            return _read(paths, str(root_path / TORCHVISION_CLASS[name] / "raw"))
    raise EvoregError(missing_message(name, root_path))


def missing_message(name: str, root: Path) -> str:
    target = root / TORCHVISION_CLASS[name] / "raw"
    message = (
        f"{name}: data files not found. Put {', '.join(f + '.gz' for f in FILES)} in "
        f"{target}/ (or pass data_root=DIR holding them), or set download=True "
        "(needs internet)"
    )
    if name == "fashion-mnist":
        message += (
            "; on Debian/Ubuntu `apt-get install dataset-fashion-mnist` installs them in "
            "/usr/share/datasets/fashion-mnist, which is read in place"
        )
    return message


def _read(paths: list[Path], source: str) -> ImageData:
    train_images, train_labels, test_images, test_labels = (read_idx(p) for p in paths)
    return ImageData(
        torch.from_numpy(train_images).unsqueeze(1).float().div_(255.0),
        torch.from_numpy(train_labels).long(),
        torch.from_numpy(test_images).unsqueeze(1).float().div_(255.0),
        torch.from_numpy(test_labels).long(),
        source,
    )


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (LeCun's MNIST format), plain or gzipped, as an unsigned-byte array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        data = file.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise EvoregError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise EvoregError(f"{path}: header says {shape} but holds {body.size} bytes")
    return body.reshape(shape).copy()  # writable, as torch.from_numpy wants


EMNIST_SPLITS = {"emnist-digits": "digits", "emnist-letters": "letters"}


def emnist_files(split: str) -> tuple[str, ...]:
    """The four files of an EMNIST split, in ``FILES`` order (train images first)."""
    return tuple(f"emnist-{split}-{part}" for part in (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
        "test-images-idx3-ubyte", "test-labels-idx1-ubyte"))


def load_emnist(name: str, data_root: str | None = None, download: bool = False) -> ImageData:
    """``emnist-digits`` or ``emnist-letters`` (see the module docstring)."""
    if name not in EMNIST_SPLITS:
        raise unknown_name("EMNIST set", name, tuple(EMNIST_SPLITS))
    root = Path(data_root or default_data_root()).expanduser()
    return _emnist(EMNIST_SPLITS[name], str(root), download)


@functools.lru_cache(maxsize=2)
def _emnist(split: str, root: str, download: bool) -> ImageData:
    root_path = Path(root)
    stems = emnist_files(split)
    raw = root_path / "EMNIST" / "raw"
    for directory in (raw, root_path):
        paths = _find(directory, stems)
        if paths is not None:
            break
    else:
        paths = None
        if download:
            import torchvision

            for train in (True, False):
                torchvision.datasets.EMNIST(str(root_path), split=split, train=train,
                                            download=True)
            paths = _find(raw, stems)
        if paths is None:
            raise EvoregError(
                f"emnist-{split}: data files not found. Put {', '.join(stems)} (or the .gz "
                f"files) in {raw}/ (or pass data_root=DIR holding them), or set download=True "
                "(needs internet)")
    data = _read(paths, str(paths[0].parent))
    if split == "letters":  # the files label a-z as 1-26
        data.train_labels -= 1
        data.test_labels -= 1
    return data
