"""Training batches: multi-scale batch order and deterministic augmented samples (no torch).

Built to plug into ``torch.utils.data.DataLoader`` as ``batch_sampler`` + ``dataset`` +
``collate_fn``, with results that do not depend on the number of workers, on which worker
gets which item, or on stopping and resuming in the middle of an epoch::

    sampler = MultiScaleBatches(len(voc), batch_size=64, sizes=multiscale_sizes(416), seed=s)
    train = TrainSet(voc, AugmentConfig.from_spec(spec), seed=s)
    loader = DataLoader(train, batch_sampler=sampler, collate_fn=collate, num_workers=w)
    sampler.set_epoch(epoch, start_batch=k)      # k > 0 when resuming mid-epoch

Each batch is a list of keys ``(index, size, epoch)``; :class:`TrainSet` augments item
``index`` at ``size`` with a generator seeded by ``(seed, epoch, index)``. The image order of
an epoch is a permutation seeded by ``(seed, epoch)``; the input size is redrawn every
``every`` batches (darknet: 10) from a generator seeded by ``(seed, epoch, batch // every)``.
For ``DistributedDataParallel`` give each process its ``rank`` and ``world`` size: the
global batch sequence is the same everywhere and process ``r`` takes batches ``r, r + world,
...`` (the batch size is per process).
"""
from __future__ import annotations

from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .augment import AugmentConfig, Augmented, augment, mosaic
from .split import Sample

Key = Tuple[int, int, int]      # (index, size, epoch)


class MultiScaleBatches:
    def __init__(self, n: int, batch_size: int, sizes: Sequence[int], seed: int = 0,
                 every: int = 10, shuffle: bool = True, drop_last: bool = True,
                 rank: int = 0, world: int = 1, final_size: Optional[int] = None,
                 final_from: int = 0):
        for name, bad in (("n", n < 1), ("batch_size", batch_size < 1), ("sizes", not sizes),
                          ("every", every < 1), ("rank", not 0 <= rank < world)):
            if bad:
                raise ValueError(f"MultiScaleBatches: bad {name} (n={n}, batch_size={batch_size}, "
                                 f"sizes={sizes!r}, every={every}, rank={rank}, world={world})")
        self.n, self.batch_size, self.sizes = int(n), int(batch_size), [int(s) for s in sizes]
        self.seed, self.every, self.shuffle, self.drop_last = int(seed), int(every), shuffle, \
            drop_last
        self.rank, self.world = int(rank), int(world)
        self.final_size, self.final_from = final_size, int(final_from)
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch; ``start_batch`` skips this process's first batches (resume)."""
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def global_batches(self) -> int:
        per = self.batch_size * self.world
        full = self.n // per
        return full * self.world if self.drop_last or self.n % per == 0 \
            else -(-self.n // self.batch_size)

    def __len__(self) -> int:
        """Batches this process yields in a whole epoch."""
        g = self.global_batches()
        return len(range(self.rank, g, self.world))

    def size_of(self, global_batch: int) -> int:
        """The input size of a global batch number of the current epoch."""
        if self.final_size and self.epoch >= self.final_from:
            return int(self.final_size)
        if len(self.sizes) == 1:
            return self.sizes[0]
        rng = np.random.default_rng([self.seed, self.epoch, global_batch // self.every, 7])
        return self.sizes[int(rng.integers(0, len(self.sizes)))]

    def __iter__(self) -> Iterator[List[Key]]:
        order = np.arange(self.n)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        mine = list(range(self.rank, self.global_batches(), self.world))[self.start_batch:]
        for g in mine:
            idx = order[g * self.batch_size:(g + 1) * self.batch_size]
            size = self.size_of(g)
            yield [(int(i), size, self.epoch) for i in idx]


class TrainSet:
    """Augmented training samples of a :class:`detector.data.voc.VOCDataset` by key
    ``(index, size, epoch)``. Difficult objects are left out by default (as darknet's
    ``voc_label.py`` does).

    With ``cfg.mosaic`` > 0 a sample is, with that probability, a mosaic of item ``index``
    and three others drawn by its generator, in epochs before ``mosaic_until`` (None: every
    epoch; the trainer ends mosaics a few epochs before the run ends, as ultralytics'
    ``close_mosaic`` does, so that the last epochs see whole images as inference does)."""

    def __init__(self, dataset, cfg: AugmentConfig = AugmentConfig(), seed: int = 0,
                 include_difficult: bool = False, mosaic_until: Optional[int] = None):
        self.dataset, self.cfg, self.seed = dataset, cfg, int(seed)
        self.include_difficult = include_difficult
        self.mosaic_until = mosaic_until

    def __len__(self) -> int:
        return len(self.dataset)

    def sample(self, i: int) -> Sample:
        s = self.dataset[int(i)]
        keep = np.ones(len(s.labels), bool) if self.include_difficult else ~s.difficult
        return s._replace(boxes=s.boxes[keep], labels=s.labels[keep],
                          difficult=s.difficult[keep])

    def mosaics_in(self, epoch: int) -> bool:
        return self.cfg.mosaic > 0 and (self.mosaic_until is None or epoch < self.mosaic_until)

    def __getitem__(self, key: Key) -> Augmented:
        i, size, epoch = key
        rng = np.random.default_rng([self.seed, int(epoch), int(i)])
        if self.mosaics_in(epoch) and rng.random() < self.cfg.mosaic:
            others = rng.integers(0, len(self.dataset), 3)
            return mosaic([self.sample(j) for j in (i, *others)], size, rng, self.cfg)
        s = self.sample(i)
        return augment(s.image, s.boxes, s.labels, size, rng, self.cfg, s.difficult)


def collate(items: Sequence[Augmented]) -> Tuple[np.ndarray, np.ndarray]:
    """Stack a batch: images float32 ``[B, 3, H, W]`` and targets float32 ``[M, 6]`` rows of
    ``(batch index, label, cx, cy, w, h)`` with normalised box coordinates."""
    images = np.stack([it.image for it in items])
    rows = [np.concatenate([np.full((len(it.labels), 1), b, np.float32),
                            it.labels.astype(np.float32)[:, None], it.boxes], 1)
            for b, it in enumerate(items)]
    targets = np.concatenate(rows) if rows else np.zeros((0, 6), np.float32)
    return images, targets.reshape(-1, 6).astype(np.float32)
