"""The two input pipelines behind one interface: `loader.epoch(e)` yields (images, labels) already on the device.

- `DeviceLoader`: slices uint8 batches out of decoded arrays (the memory-mapped cache, or synthetic data), moves
  them to the device as uint8 and runs the batched transforms there.
- `ClassicLoader`: the usual torch DataLoader with per-image decode and torchvision transforms in worker processes,
  kept so the data lever itself can be measured.

Both draw each epoch's order from `epoch_order(n, seed, epoch)` and shard it the same way per rank, so every
pipeline and every experiment sees the same mini-batches for the same seed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from speedlab.data.decode import CorruptImageError, load_image
from speedlab.data.sources import FileSplit
from speedlab.data.transforms import DeviceBatchTransform
from speedlab.errors import DataError

Batch = tuple[torch.Tensor, torch.Tensor]


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The sample order of one epoch: a permutation fixed by (seed, epoch), or 0..n-1 without shuffling."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_indices(
    n: int, batch_size: int, *, seed: int, epoch: int, shuffle: bool, drop_last: bool, rank: int = 0, world: int = 1
) -> list[np.ndarray]:
    """This rank's batches for one epoch. Each rank takes every world-th sample of the shared order, cut to an
    equal count so all ranks run the same number of steps. Indices within a batch are sorted (reads from the
    memory map stay sequential; a batch is a set)."""
    order = epoch_order(n, seed, epoch, shuffle)
    per_rank = len(order) // world if world > 1 else len(order)
    mine = order[rank::world][:per_rank]
    stop = len(mine) - len(mine) % batch_size if drop_last else len(mine)
    return [np.sort(mine[i : i + batch_size]) for i in range(0, stop, batch_size)]


def _augment_seed(seed: int, epoch: int, rank: int) -> int:
    return int(np.random.default_rng([seed, epoch, rank, 0xA06]).integers(2**62))


class DeviceLoader:
    """Batches from uint8 arrays (N x 3 x S x S), transformed batched on `device`."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        batch_size: int,
        transform: DeviceBatchTransform,
        device: torch.device,
        seed: int,
        shuffle: bool,
        drop_last: bool,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.transform, self.device = batch_size, transform, torch.device(device)
        self.seed, self.shuffle, self.drop_last, self.rank, self.world = seed, shuffle, drop_last, rank, world
        self.skipped_corrupt = 0

    def batches(self, epoch: int) -> list[np.ndarray]:
        return batch_indices(
            len(self.labels),
            self.batch_size,
            seed=self.seed,
            epoch=epoch,
            shuffle=self.shuffle,
            drop_last=self.drop_last,
            rank=self.rank,
            world=self.world,
        )

    def __len__(self) -> int:
        return len(self.batches(0))

    def epoch(self, epoch: int) -> Iterator[Batch]:
        generator = torch.Generator().manual_seed(_augment_seed(self.seed, epoch, self.rank))
        cuda = self.device.type == "cuda"
        for idx in self.batches(epoch):
            x = torch.from_numpy(np.ascontiguousarray(self.images[idx]))
            y = torch.from_numpy(self.labels[idx])
            if cuda:  # uint8 over the bus: 4x fewer bytes than float
                x, y = (
                    x.pin_memory().to(self.device, non_blocking=True),
                    y.pin_memory().to(self.device, non_blocking=True),
                )
            else:
                x, y = x.to(self.device), y.to(self.device)
            yield self.transform(x, generator), y


class ImageDataset(Dataset):
    """Per-image source for the classic pipeline: decodes a file (or takes an array row) and transforms it.

    A corrupt file raises a DataError naming it; with `skip_corrupt` it comes back with label -1 - index so the
    loader can drop and count it."""

    def __init__(
        self,
        source: FileSplit | tuple[np.ndarray, np.ndarray],
        image_size: int,
        transform: Callable,
        skip_corrupt: bool,
    ) -> None:
        self.source, self.image_size, self.transform, self.skip_corrupt = source, image_size, transform, skip_corrupt
        self.labels = source.labels if isinstance(source, FileSplit) else source[1]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if isinstance(self.source, FileSplit):
            try:
                image = load_image(self.source.path(i), self.image_size)
            except CorruptImageError as err:
                if not self.skip_corrupt:
                    raise DataError(
                        f"corrupt image {err.path}: {err.reason}. Replace or delete it, or set "
                        "data.skip_corrupt=true to skip corrupt images."
                    ) from None
                return torch.zeros(3, 1, 1), -1 - i
        else:
            image = torch.from_numpy(np.ascontiguousarray(self.source[0][i]))
        return self.transform(image), int(self.labels[i])


def _collate(items: Sequence[tuple[torch.Tensor, int]]) -> Batch:
    good = [(x, y) for x, y in items if y >= 0]
    bad = torch.tensor([y for _, y in items if y < 0], dtype=torch.int64)
    if not good:
        return torch.empty(0), bad
    return torch.stack([x for x, _ in good]), torch.cat([torch.tensor([y for _, y in good]), bad])


class ClassicLoader:
    """torch DataLoader over `ImageDataset`, with workers, pinned memory and prefetching."""

    def __init__(
        self,
        dataset: ImageDataset,
        *,
        batch_size: int,
        device: torch.device,
        seed: int,
        shuffle: bool,
        drop_last: bool,
        workers: int,
        pin_memory: bool,
        prefetch_factor: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.dataset, self.batch_size, self.device = dataset, batch_size, torch.device(device)
        self.seed, self.shuffle, self.drop_last, self.rank, self.world = seed, shuffle, drop_last, rank, world
        self.workers, self.pin_memory, self.prefetch_factor = workers, pin_memory, prefetch_factor
        self._skipped: set[int] = set()

    @property
    def skipped_corrupt(self) -> int:
        return len(self._skipped)

    def batches(self, epoch: int) -> list[np.ndarray]:
        return batch_indices(
            len(self.dataset),
            self.batch_size,
            seed=self.seed,
            epoch=epoch,
            shuffle=self.shuffle,
            drop_last=self.drop_last,
            rank=self.rank,
            world=self.world,
        )

    def __len__(self) -> int:
        return len(self.batches(0))

    def epoch(self, epoch: int) -> Iterator[Batch]:
        # A fresh loader per epoch: the generator seeds each worker's augmentation RNG from (seed, epoch, rank).
        loader = DataLoader(
            self.dataset,
            batch_sampler=[b.tolist() for b in self.batches(epoch)],
            num_workers=self.workers,
            pin_memory=self.pin_memory and self.device.type == "cuda",
            prefetch_factor=self.prefetch_factor if self.workers > 0 else None,
            collate_fn=_collate,
            generator=torch.Generator().manual_seed(_augment_seed(self.seed, epoch, self.rank)),
        )
        if self.workers == 0:
            torch.manual_seed(_augment_seed(self.seed, epoch, self.rank))
        non_blocking = self.device.type == "cuda"
        for x, y in loader:
            good = y >= 0
            if not bool(good.all()):
                self._skipped.update((-1 - y[~good]).tolist())
                y = y[good]
            if len(y) == 0:
                continue
            yield x.to(self.device, non_blocking=non_blocking), y.to(self.device, non_blocking=non_blocking)
