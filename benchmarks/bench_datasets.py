"""
Benchmark of the data sets: dSprites grid generation and statistics against the published values,
cache write and load times, and images/s of ``observations(idx)`` batches for each loader (CPU, and
CUDA where present), with DataLoader over items side by side.

    python benchmarks/bench_datasets.py [--batch-size 256] [--num-batches 50] [--shared-data
    ../shared/data]
"""

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from pyro_hfvae.datasets import MNIST, BagOfWords, Digits, DSprites, ImageFolder, Shapes3D
from pyro_hfvae.datasets import _dsprites_rendering as rendering

PUBLISHED_MEAN = 0.0424944
PUBLISHED_IMAGE_STD = 0.195166


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(step, repeats: int) -> float:
    # Median over repeats: robust to other processes sharing the machine.
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def items_per_second(dataset, batch_size: int, num_batches: int, device: torch.device) -> float:
    """Rate of ``dataset.observations`` on random index batches already on ``device``."""
    generator = torch.Generator().manual_seed(0)
    batches = iter(
        [
            torch.randint(len(dataset), (batch_size,), generator=generator).to(device)
            for _ in range(num_batches + 2)
        ]
    )

    def step():
        dataset.observations(next(batches))
        _synchronize(device)

    step(), step()  # warm-up
    return batch_size / _median_seconds(step, num_batches)


def dataloader_items_per_second(dataset, batch_size: int, num_batches: int) -> float:
    """Rate of a DataLoader (no workers) over per-item ``__getitem__``."""
    loader = iter(DataLoader(dataset, batch_size=batch_size, shuffle=True))
    next(loader)
    return batch_size / _median_seconds(lambda: next(loader), num_batches)


def _fabricated_shapes3d(folder: Path) -> Path:
    import h5py

    sizes = (10, 10, 10, 8, 4, 1)  # 32,000 images: the real layout with one orientation
    grid = np.stack(np.unravel_index(np.arange(math.prod(sizes)), sizes), axis=-1).astype(
        np.float64
    )
    path = folder / "3dshapes.h5"
    with h5py.File(path, "w") as file:
        file.create_dataset(
            "images",
            data=np.random.default_rng(0).integers(0, 256, (len(grid), 64, 64, 3), dtype=np.uint8),
        )
        file.create_dataset("labels", data=grid)
    return path


def _fabricated_image_folder(folder: Path, count: int = 512) -> Path:
    from PIL import Image

    root = folder / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    for k in range(count):
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(
            root / f"{k:06d}.jpg"
        )
    return root


def main(args=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-batches", type=int, default=50)
    parser.add_argument(
        "--shared-data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's choice)"
    )
    parser.add_argument(
        "--skip-grid", action="store_true", help="skip dSprites grid generation and its rates"
    )
    args = parser.parse_args(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"devices {[str(d) for d in devices]}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        if not args.skip_grid:
            start, start_cpu = time.perf_counter(), time.process_time()
            packed = rendering.render_grid()
            wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
            rows.append(
                (
                    "dSprites full grid generation (737,280 images)",
                    f"{wall:.1f} s wall, {cpu:.1f} s CPU over all threads",
                )
            )
            fraction = np.unpackbits(packed, axis=1).sum(axis=1, dtype=np.int64) / 4096
            mean, image_std = fraction.mean(), np.sqrt(fraction * (1 - fraction)).mean()
            rows.append(
                (
                    "dSprites pixel mean (published 0.0424944)",
                    f"{mean:.7f} ({mean - PUBLISHED_MEAN:+.1e})",
                )
            )
            rows.append(
                (
                    "dSprites mean per-image std (published 0.195166)",
                    f"{image_std:.6f} ({image_std - PUBLISHED_IMAGE_STD:+.1e})",
                )
            )
            dataset = DSprites(cache_dir=folder)
            start = time.perf_counter()
            dataset._write_cache(packed)
            rows.append(
                (
                    "dSprites cache write (compressed npz + SHA-256)",
                    f"{time.perf_counter() - start:.2f} s, "
                    f"{dataset.cache_path.stat().st_size / 1e6:.1f} MB",
                )
            )
            start = time.perf_counter()
            DSprites(cache_dir=folder).load_grid()
            rows.append(("dSprites cache load (verified)", f"{time.perf_counter() - start:.2f} s"))
        reference = args.shared_data / "dsprites_reference_frames.npz"
        if reference.is_file():
            with np.load(reference) as frames:
                wrong = (DSprites().render(frames["factors"]) != frames["images"]).sum(axis=(1, 2))
            rows.append(
                (
                    "dSprites reference frames pixel-exact / max wrong pixels",
                    f"{(wrong == 0).sum()} of {len(wrong)} ({(wrong == 0).mean():.1%}) "
                    f"/ {wrong.max()}",
                )
            )
        factors = DSprites().sample_factors(10000, random_state=0)
        start = time.perf_counter()
        DSprites().render(factors)
        rows.append(
            (
                "dSprites render on demand (no grid)",
                f"{10000 / (time.perf_counter() - start):,.0f} images/s",
            )
        )

        makers = []
        if not args.skip_grid:
            makers.append(("DSprites", lambda device: DSprites(cache_dir=folder, device=device)))
        if (args.shared_data / "mnist").is_dir():
            makers.append(
                (
                    "MNIST test",
                    lambda device: MNIST(args.shared_data / "mnist", "test", device=device),
                )
            )
        makers.append(("Digits", lambda device: Digits(device=device)))
        bow = args.shared_data / "20newsgroups" / "20news_bydate_bow.npz"
        if bow.is_file():
            makers.append(("20 Newsgroups (dense)", lambda device: BagOfWords(bow, device=device)))
            makers.append(
                (
                    "20 Newsgroups (sparse)",
                    lambda device: BagOfWords(bow, sparse=True, device=device),
                )
            )
        shapes = _fabricated_shapes3d(folder)
        makers.append(
            ("3DShapes layout (32,000 fabricated)", lambda device: Shapes3D(shapes, device=device))
        )
        images = _fabricated_image_folder(folder)
        makers.append(
            (
                "image folder 178x218 JPEG -> 64, in memory",
                lambda device: ImageFolder(images, crop=148, in_memory=True, device=device),
            )
        )
        makers.append(
            (
                "image folder 178x218 JPEG -> 64, from disk",
                lambda device: ImageFolder(images, crop=148, device=device),
            )
        )
        for name, make in makers:
            for device in devices:
                dataset = make(device)
                if isinstance(dataset, DSprites):
                    dataset.load_grid()
                num_batches = 5 if "from disk" in name else args.num_batches
                rate = items_per_second(dataset, args.batch_size, num_batches, device)
                rows.append((f"{name}: observations(idx) on {device}", f"{rate:,.0f} items/s"))
            if not isinstance(dataset, ImageFolder):
                rate = dataloader_items_per_second(make(torch.device("cpu")), args.batch_size, 5)
                rows.append((f"{name}: DataLoader over items on cpu", f"{rate:,.0f} items/s"))
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  value")
    print("-" * (width + 30))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
