"""The processes of a run: one, or those ``torchrun`` started (``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``), joined in a process group (nccl on CUDA, gloo on the CPU). Rank 0 is the
main process: it validates, writes the files and logs."""
from __future__ import annotations

import os
from typing import List, Sequence


class Dist:
    def __init__(self, device: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if self.world > 1:
            import torch.distributed as dist
            backend = "nccl" if device == "cuda" else "gloo"
            dist.init_process_group(backend)
            self.dist = dist

    @property
    def main(self) -> bool:
        return self.rank == 0

    def from_main(self, values: Sequence[float], device: str) -> List[float]:
        """The main process's ``values`` on every process (a decision or a measurement
        they must share, e.g. when to stop or how long the run is)."""
        if self.world == 1:
            return [float(v) for v in values]
        import torch
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
        self.dist.broadcast(t, src=0)
        return t.tolist()

    def barrier(self) -> None:
        if self.world > 1:
            self.dist.barrier()

    def close(self) -> None:
        if self.world > 1 and self.dist.is_initialized():
            self.dist.destroy_process_group()
