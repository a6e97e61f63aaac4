"""ImageFolder-layout readers: lazy for large sets (ImageNet), eager for small ones (RM CIFAR)."""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from rainbow_runner.datasets.base import DatasetError, ImageData

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EAGER_LIMIT_BYTES = 256 * 2**20  # decode everything up front below this decoded size
STATS_SAMPLE = 256  # images decoded to estimate mean/std of a lazy folder
TORCHVISION_FORMATS = (".png", ".jpg", ".jpeg", ".webp")
MAX_DECODE_THREADS = 8


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean/std in [0, 1] units of uint8 (N, C, H, W) images via histograms."""
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).double()
        total = counts.sum()
        mean = (counts * values).sum() / total
        variance = (counts * (values - mean) ** 2).sum() / total
        means.append(float(mean))
        stds.append(float(variance.sqrt()))
    return tuple(means), tuple(stds)


def resize_images(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) square-ish images to (size, size), antialiased, in chunks."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    out = torch.empty((len(images), images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, len(images), chunk):
        block = images[start : start + chunk].float()
        resized = F.interpolate(block, size=(size, size), mode="bilinear", antialias=True)
        out[start : start + chunk] = resized.round().clamp(0, 255).to(torch.uint8)
    return out


def _sorted_dirs(folder: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())


def _image_names(folder: Path) -> list[str]:
    return sorted(
        entry.name
        for entry in os.scandir(folder)
        if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS)
    )


def scan_split(
    root: Path, split: str, class_names: list[str] | None
) -> tuple[list[str], list[int]]:
    """List `split/<class>/<image>` paths (relative to root) and labels; classes sorted by name."""
    split_dir = root / split
    names = class_names if class_names is not None else _sorted_dirs(split_dir)
    unknown = sorted(set(_sorted_dirs(split_dir)) - set(names))
    if unknown:
        raise DatasetError(
            f"{split_dir} holds class folders absent from the training set: {unknown[:5]}."
        )
    files: list[str] = []
    labels: list[int] = []
    for label, klass in enumerate(names):
        class_dir = split_dir / klass
        if not class_dir.is_dir():
            continue
        images = _image_names(class_dir)
        files.extend(f"{split}/{klass}/{image}" for image in images)
        labels.extend([label] * len(images))
    if not files:
        raise DatasetError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) under {split_dir}/<class>/.")
    return files, labels


def _center_crop_resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize uint8 (C, H, W) so the shorter side fits (H, W) (bilinear, antialiased, as PIL's
    resize), then take the centre crop."""
    height, width = size
    if tuple(image.shape[1:]) == (height, width):
        return image
    scale = max(height / image.shape[1], width / image.shape[2])
    new_h = max(height, round(image.shape[1] * scale))
    new_w = max(width, round(image.shape[2] * scale))
    resized = F.interpolate(
        image[None].float(), size=(new_h, new_w), mode="bilinear", antialias=True
    )[0]
    top, left = (new_h - height) // 2, (new_w - width) // 2
    crop = resized[:, top : top + height, left : left + width]
    return crop.round().clamp(0, 255).to(torch.uint8)


def decode_file(path: Path, mode: str) -> torch.Tensor:
    """One image file as uint8 (C, H, W) in `mode` ("L" or "RGB"): torchvision's decoder (C++,
    without the GIL) for PNG/JPEG/WebP, PIL for the other formats."""
    if path.suffix.lower() in TORCHVISION_FORMATS:
        io = torchvision_io()
        read_mode = io.ImageReadMode.GRAY if mode == "L" else io.ImageReadMode.RGB
        return io.decode_image(io.read_file(str(path)), mode=read_mode)
    with Image.open(path) as image:
        image = image.convert(mode)
        pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        return pixels.view(image.height, image.width, len(mode)).permute(2, 0, 1)


@cache
def torchvision_io():
    """torchvision.io, imported at the first file it decodes. Its decoders warn on every call
    that TorchCodec will replace them (torchvision 0.29): silenced here (README: Data)."""
    import torchvision.io

    warnings.filterwarnings(
        "ignore", message="The image decoding and encoding capabilities of TorchVision"
    )
    return torchvision.io


@cache
def decode_pool() -> ThreadPoolExecutor:
    """Threads that decode a batch's files side by side (shared by every folder): as many as
    torch's threads when the first batch is read (a sweep job's share of the cores), up to 8."""
    threads = min(MAX_DECODE_THREADS, torch.get_num_threads())
    return ThreadPoolExecutor(threads, thread_name_prefix="decode")


class LazyImageFolder:
    """Images decoded from disk on each batch access, so ImageNet never has to fit in memory;
    a batch's files are decoded by a pool of threads."""

    def __init__(self, root: str | Path, files: list[str], size: tuple[int, int], mode: str):
        self.root = Path(root)
        self.files = files
        self.mode = mode
        channels = 1 if mode == "L" else 3
        self.shape: tuple[int, ...] = (len(files), channels, size[0], size[1])

    def __len__(self) -> int:
        return len(self.files)

    def decode(self, position: int) -> torch.Tensor:
        """One image as uint8 (C, H, W), converted to the folder's mode and size."""
        path = self.root / self.files[position]
        try:
            image = decode_file(path, self.mode)
        except (OSError, RuntimeError) as error:
            raise DatasetError(f"Cannot decode image {path}: {error}") from error
        return _center_crop_resize(image, self.shape[2:])

    def __getitem__(self, index: torch.Tensor | int) -> torch.Tensor:
        positions = torch.as_tensor(index).reshape(-1).tolist()
        batch = torch.empty((len(positions), *self.shape[1:]), dtype=torch.uint8)
        images = decode_pool().map(self.decode, positions) if len(positions) > 1 else None
        for row, image in enumerate(images or [self.decode(p) for p in positions]):
            batch[row] = image
        return batch[0] if torch.as_tensor(index).dim() == 0 else batch

    def load_all(self) -> torch.Tensor:
        """Every image as one uint8 tensor (for folders small enough to keep in memory)."""
        return self[torch.arange(len(self))]


def _folder_geometry(
    root: Path, first_file: str, image_size: int | None, channels: int | None
) -> tuple[tuple[int, int], str]:
    """Output (H, W) and PIL mode: image_size squared, else the first image's own size."""
    with Image.open(root / first_file) as image:
        native = (image.height, image.width)
        gray = image.mode in ("1", "L", "LA", "I", "I;16", "F")
    mode = {1: "L", 3: "RGB"}.get(channels or 0, "L" if gray else "RGB")
    return ((image_size, image_size) if image_size else native), mode


def find_test_split(root: Path) -> str:
    """The evaluation folder name: val/ (ImageNet) or test/ (RM layout)."""
    for split in ("val", "test"):
        if (root / split).is_dir():
            return split
    raise DatasetError(f"{root} has train/ but neither val/ nor test/ (one folder per class).")


def load_image_folder(
    root: str | Path,
    name: str = "image_folder",
    image_size: int | None = None,
    eager: bool | None = None,
    channels: int | None = None,
    hflip: bool = True,
    stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
) -> ImageData:
    """Read `root/{train, val|test}/<class>/*` with class names = sorted train sub-folders.

    Args:
        eager: decode everything now (True), lazily per batch (False), or by size (None:
            eager when the decoded train+test images stay under EAGER_LIMIT_BYTES).
        channels: 1 or 3 to force grayscale/RGB; None follows the first image.
        stats: known (mean, std); None computes them (exactly when eager, else from a sample).
    """
    root = Path(root)
    if not (root / "train").is_dir():
        raise DatasetError(f"No train/ folder under {root} (expected train/<class>/<image>).")
    class_names = _sorted_dirs(root / "train")
    train_files, train_labels = scan_split(root, "train", class_names)
    test_files, test_labels = scan_split(root, find_test_split(root), class_names)
    size, mode = _folder_geometry(root, train_files[0], image_size, channels)
    train_x = LazyImageFolder(root, train_files, size, mode)
    test_x = LazyImageFolder(root, test_files, size, mode)
    n_bytes = (len(train_x) + len(test_x)) * train_x.shape[1] * size[0] * size[1]
    if eager is None:
        eager = n_bytes <= EAGER_LIMIT_BYTES
    if eager:
        train_x, test_x = train_x.load_all(), test_x.load_all()
    if stats is None:
        if isinstance(train_x, torch.Tensor):
            stats = channel_stats(train_x)
        else:
            step = max(1, len(train_x) // STATS_SAMPLE)
            stats = channel_stats(train_x[torch.arange(0, len(train_x), step)[:STATS_SAMPLE]])
    return ImageData(
        name=name,
        train_x=train_x,
        train_y=torch.tensor(train_labels, dtype=torch.int64),
        test_x=test_x,
        test_y=torch.tensor(test_labels, dtype=torch.int64),
        class_names=class_names,
        mean=stats[0],
        std=stats[1],
        hflip=hflip,
        train_files=train_files,
        test_files=test_files,
        extras={"root": str(root), "lazy": not isinstance(train_x, torch.Tensor)},
    )


def imagenet_roots(data_root: str) -> list[Path]:
    """Where an ImageNet folder may sit under data_root (RM layout, named folder, or itself)."""
    base = Path(data_root)
    return [base / "dataset" / "imagenet", base / "imagenet", base / "ILSVRC2012", base]


def load_imagenet(
    data_root: str, download: bool = False, image_size: int | None = None
) -> ImageData:
    """ImageNet from an ImageFolder layout, decoded lazily at image_size (default 224)."""
    candidates = imagenet_roots(data_root)
    for root in candidates:
        if (root / "train").is_dir():
            return load_image_folder(
                root,
                "imagenet",
                image_size or 224,
                eager=False,
                channels=3,
                stats=(IMAGENET_MEAN, IMAGENET_STD),
            )
    looked = ", ".join(str(root) for root in candidates)
    raise DatasetError(
        f"ImageNet not found: looked for train/ and val/ (one sub-folder per class) in {looked}. "
        "It cannot be downloaded automatically (download=true does not apply): get "
        "ILSVRC2012 from image-net.org, arrange val/ into class folders (as torchvision's "
        "ImageNet or the usual valprep.sh do) and pass data_root=<that folder's parent>."
    )


def load_folder_dataset(
    data_root: str, download: bool = False, image_size: int | None = None
) -> ImageData:
    """Any ImageFolder-layout folder given directly by data_root."""
    if not (Path(data_root) / "train").is_dir():
        raise DatasetError(
            f"image_folder: {Path(data_root) / 'train'} does not exist. Point data_root at a "
            "folder holding train/<class>/<image> and val/ or test/ with the same classes."
        )
    return load_image_folder(data_root, "image_folder", image_size)
