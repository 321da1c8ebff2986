"""The input pipelines behind one interface: `loader.epoch(e)` yields (inputs, targets) already on the device.

- `DeviceLoader`: slices uint8 batches out of decoded arrays (the memory-mapped cache, or synthetic data), moves
  them to the device as uint8 and runs the batched transforms there.
- `ClassicLoader`: the usual torch DataLoader with per-image decode and torchvision transforms in worker processes,
  kept so the data lever itself can be measured.
- `TensorLoader`: whole splits resident on the device as tensors (the small sources); a batch is an index into
  them, and a full batch is the tensors themselves. No DataLoader, no host work per step.
- `HostLoader`: the same small splits the way most scripts feed them: a torch DataLoader over host tensors, each
  batch collated on the host and copied to the device (the `data.feed=loader` lever, measured against it).

All draw each epoch's order from `epoch_order(n, seed, epoch)` and shard it the same way per rank, so every
pipeline and every experiment sees the same mini-batches for the same seed. A source's `load` returns a
`DataBundle`: both loaders plus the source's `DataSpec`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from speedlab.data.decode import CorruptImageError, load_image
from speedlab.data.files import FileSplit
from speedlab.data.spec import DataSpec
from speedlab.data.transforms import DeviceBatchTransform
from speedlab.errors import DataError

Batch = tuple[torch.Tensor, torch.Tensor]


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The sample order of one epoch: a permutation fixed by (seed, epoch), or 0..n-1 without shuffling."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


@dataclass(frozen=True)
class BatchPlan:
    """Which samples each of this rank's batches holds, epoch by epoch.

    Each rank takes every world-th sample of the shared order, cut to an equal count so all ranks run the same
    number of steps. Indices within a batch are sorted (reads from the memory map stay sequential; a batch is a
    set, so the order inside it does not matter)."""

    num_samples: int
    batch_size: int
    seed: int
    shuffle: bool
    drop_last: bool
    rank: int = 0
    world: int = 1

    @property
    def per_rank(self) -> int:
        return self.num_samples // self.world

    def __len__(self) -> int:
        full, rest = divmod(self.per_rank, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    @property
    def whole(self) -> bool:
        """Every epoch is one batch of all samples, in order (sorted indices): full-batch training."""
        return self.world == 1 and self.batch_size == self.num_samples

    def batches(self, epoch: int) -> list[np.ndarray]:
        mine = epoch_order(self.num_samples, self.seed, epoch, self.shuffle)[self.rank :: self.world][: self.per_rank]
        stop = len(mine) - len(mine) % self.batch_size if self.drop_last else len(mine)
        return [np.sort(mine[i : i + self.batch_size]) for i in range(0, stop, self.batch_size)]

    def augment_seed(self, epoch: int) -> int:
        """Seed of this rank's augmentation randomness in `epoch`."""
        return int(np.random.default_rng([self.seed, epoch, self.rank, 0xA06]).integers(2**62))


class DeviceLoader:
    """Batches from uint8 arrays (N x C x S x S), transformed batched on `device`."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, *, plan: BatchPlan, transform: DeviceBatchTransform,
        device: torch.device,
    ) -> None:  # fmt: skip
        self.images, self.labels, self.plan = images, labels, plan
        self.transform, self.device = transform, torch.device(device)
        self.skipped_corrupt = 0  # corrupt files never reach the cache (see cache.py)

    def __len__(self) -> int:
        return len(self.plan)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        generator = torch.Generator().manual_seed(self.plan.augment_seed(epoch))
        cuda = self.device.type == "cuda"
        for idx in self.plan.batches(epoch):
            x = torch.from_numpy(np.ascontiguousarray(self.images[idx]))
            y = torch.from_numpy(self.labels[idx])
            if cuda:  # uint8 over the bus: 4x fewer bytes than float
                x = x.pin_memory().to(self.device, non_blocking=True)
                y = y.pin_memory().to(self.device, non_blocking=True)
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
        channels: int = 3,
    ) -> None:
        self.source, self.image_size, self.transform, self.skip_corrupt = source, image_size, transform, skip_corrupt
        self.channels = channels
        self.labels = source.labels if isinstance(source, FileSplit) else source[1]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if isinstance(self.source, FileSplit):
            try:
                image = load_image(self.source.path(i), self.image_size, self.channels)
            except CorruptImageError as err:
                if not self.skip_corrupt:
                    raise DataError(
                        f"corrupt image {err.path}: {err.reason}. Replace or delete it, or set "
                        "data.skip_corrupt=true to skip corrupt images."
                    ) from None
                return torch.zeros(self.channels, 1, 1), -1 - i
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
        self, dataset: ImageDataset, *, plan: BatchPlan, device: torch.device, workers: int, pin_memory: bool,
        prefetch_factor: int,
    ) -> None:  # fmt: skip
        self.dataset, self.plan, self.device = dataset, plan, torch.device(device)
        self.workers, self.pin_memory, self.prefetch_factor = workers, pin_memory, prefetch_factor
        self._skipped: set[int] = set()

    @property
    def skipped_corrupt(self) -> int:
        return len(self._skipped)

    def __len__(self) -> int:
        return len(self.plan)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        # A fresh loader per epoch: its generator seeds each worker's augmentation RNG from (seed, epoch, rank).
        seed = self.plan.augment_seed(epoch)
        loader = DataLoader(
            self.dataset,
            batch_sampler=[b.tolist() for b in self.plan.batches(epoch)],
            num_workers=self.workers,
            pin_memory=self.pin_memory and self.device.type == "cuda",
            prefetch_factor=self.prefetch_factor if self.workers > 0 else None,
            collate_fn=_collate,
            generator=torch.Generator().manual_seed(seed),
        )
        if self.workers == 0:
            torch.manual_seed(seed)
        non_blocking = self.device.type == "cuda"
        for x, y in loader:
            good = y >= 0
            if not bool(good.all()):
                self._skipped.update((-1 - y[~good]).tolist())
                y = y[good]
            if len(y) == 0:
                continue
            yield x.to(self.device, non_blocking=non_blocking), y.to(self.device, non_blocking=non_blocking)


class TensorLoader:
    """Batches indexed out of tensors already on the device. With `transform` (augmentation), `inputs` are uint8
    images transformed per batch; without one they are ready to use (normalised once, when the source loaded)."""

    def __init__(
        self, inputs: torch.Tensor, targets: torch.Tensor, *, plan: BatchPlan,
        transform: DeviceBatchTransform | None = None,
    ) -> None:  # fmt: skip
        self.inputs, self.targets, self.plan, self.transform = inputs, targets, plan, transform
        self.device = inputs.device
        self.skipped_corrupt = 0

    def __len__(self) -> int:
        return len(self.plan)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        generator = torch.Generator().manual_seed(self.plan.augment_seed(epoch)) if self.transform else None
        if self.plan.whole:  # full batch: the tensors themselves, no gather
            yield self._ready(self.inputs, generator), self.targets
            return
        for idx in self.plan.batches(epoch):
            index = torch.from_numpy(idx).to(self.device)
            yield self._ready(self.inputs.index_select(0, index), generator), self.targets.index_select(0, index)

    def _ready(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return self.transform(x, generator) if self.transform is not None else x


class HostLoader:
    """A torch DataLoader (no workers) over host tensors, batches collated per step and moved to the device."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, *, plan: BatchPlan, device: torch.device) -> None:
        self.dataset = torch.utils.data.TensorDataset(inputs.cpu(), targets.cpu())
        self.plan, self.device = plan, torch.device(device)
        self.skipped_corrupt = 0

    def __len__(self) -> int:
        return len(self.plan)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        batches = [b.tolist() for b in self.plan.batches(epoch)]
        non_blocking = self.device.type == "cuda"
        for x, y in DataLoader(self.dataset, batch_sampler=batches, pin_memory=non_blocking):
            yield x.to(self.device, non_blocking=non_blocking), y.to(self.device, non_blocking=non_blocking)


Loader = DeviceLoader | ClassicLoader | TensorLoader | HostLoader


@dataclass(frozen=True)
class LoadOptions:
    """How a command wants a source's splits batched: per-process batch sizes, seed, device and shard."""

    seed: int
    batch_size: int
    eval_batch_size: int
    device: torch.device
    rank: int = 0
    world: int = 1

    def plan(self, num_samples: int, train: bool) -> BatchPlan:
        """Training batches are shuffled and full; evaluation batches keep order and the last short one."""
        return BatchPlan(
            num_samples, self.batch_size if train else self.eval_batch_size, seed=self.seed, shuffle=train,
            drop_last=train, rank=self.rank, world=self.world,
        )  # fmt: skip


@dataclass
class DataBundle:
    """A loaded source: its train and val loaders, what it declares (`spec`), class names for classification, and
    what result.json says about it."""

    train: Loader
    val: Loader
    spec: DataSpec
    classes: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """What result.json says about the data, including corrupt images skipped so far."""
        return {
            **self.info,
            "spec": self.spec.record(),
            "train_samples": self.train.plan.num_samples,
            "val_samples": self.val.plan.num_samples,
            "skipped_corrupt": self.train.skipped_corrupt
            + self.val.skipped_corrupt
            + self.info.get("skipped_in_cache", 0),
        }
