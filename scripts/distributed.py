"""Data-parallel training under torchrun: which process this is, and the few collectives a run needs.

``torchrun --nproc_per_node=N scripts/train.py ...`` starts N copies of the script with WORLD_SIZE,
RANK and LOCAL_RANK in their environment. ``Processes.from_env`` reads them (without torchrun, or
with one process: one process, rank 0, and every method below does nothing or returns its input),
``start`` joins the process group (NCCL on CUDA, each process on the GPU of its local rank; gloo on
the CPU), and ``wrap`` makes the model DistributedDataParallel, which averages the gradients over
the processes in ``backward``. The rest is what scripts/training_run.py needs around du.train:

- ``from_main(fn)``: rank 0 calls ``fn`` (e.g. reads the checkpoint), every rank gets its result;
- ``agree()``: a block of checks that fails on one rank fails on every rank, with that rank's message;
- ``gather``, ``mean``, ``furthest``: every rank's value; a tensor averaged over the ranks (the logged
  loss); the choice furthest along a list over the ranks (a reason to stop anywhere stops all).

Object collectives and the per-step agreement go over gloo (a second, CPU group when the backend is
NCCL), so they never wait for the GPU.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


def stream_seed(seed: int, step: int, stream: int) -> int:
    """The seed of a random stream of a data-parallel run: stream 0 draws the data order (shared by all
    processes), stream 1 + r the context dropout, t and noise of rank r; ``step`` is where the run started
    with its number of processes (0, or the step a resume with another number of processes went on from)."""
    return int(np.random.SeedSequence([seed, step, stream]).generate_state(1)[0])


class Processes:
    """This process's place in a torchrun launch: ``world_size`` processes in all, this one ``rank``."""

    def __init__(self, world_size: int = 1, rank: int = 0, local_rank: int = 0, local_world_size: int = 1):
        self.world_size, self.rank = world_size, rank
        self.local_rank, self.local_world_size = local_rank, local_world_size
        self.backend: str | None = None  # set by start: "nccl" or "gloo"
        self.group = None  # the gloo group for object collectives and agreement
        self.owner = False  # whether start made the process group (and stop ends it)

    @classmethod
    def from_env(cls, env=None) -> Processes:
        """The launch torchrun describes in the environment; one process when there is none."""
        env = os.environ if env is None else env
        if "WORLD_SIZE" not in env:
            return cls()
        world, rank = int(env["WORLD_SIZE"]), int(env.get("RANK", 0))
        return cls(world, rank, int(env.get("LOCAL_RANK", rank)), int(env.get("LOCAL_WORLD_SIZE", world)))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """The device this process trains on: ``device``, or on CUDA the GPU of its local rank."""
        if not self.distributed or device.type == "cpu":
            return device
        if device.type != "cuda":
            raise ValueError(f"data-parallel training runs on CUDA (NCCL) or on the CPU (gloo), not on {device}.")
        if self.local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"process {self.local_rank} of this machine has no GPU ({torch.cuda.device_count()} visible): "
                "start at most one process per GPU (--nproc_per_node)."
            )
        return torch.device("cuda", self.local_rank)

    def start(self, device: torch.device) -> None:
        """Join the process group: NCCL when ``device`` is a GPU, gloo on the CPU (or the group a caller
        started, e.g. to run several trainings in one launch)."""
        if not self.distributed:
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)
        self.owner = not dist.is_initialized()
        if self.owner:
            cuda = device.type == "cuda"
            dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
        self.backend = dist.get_backend()
        self.group = dist.new_group(backend="gloo") if self.backend == "nccl" else dist.group.WORLD

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.distributed:
            dist.barrier(group=self.group)

    def stop(self) -> None:
        if self.owner and dist.is_initialized():
            dist.destroy_process_group()

    def describe(self, batch_size: int) -> str:
        """How the run runs, for its first log line: processes, backend, batch per process, BatchNorm."""
        if not self.distributed:
            return f"in 1 process, batch {batch_size}"
        norm = (
            "SyncBatchNorm: statistics over all processes"
            if self.backend == "nccl"
            else "BatchNorm statistics per process (gloo has no SyncBatchNorm; rank 0's running statistics are saved)"
        )
        return (
            f"in {self.world_size} processes (torchrun; DistributedDataParallel over {self.backend}), "
            f"batch {batch_size} = {self.world_size} x {batch_size // self.world_size} per process; {norm}"
        )

    def sync_batchnorm(self, model: nn.Module) -> nn.Module:
        """On NCCL, the model with SyncBatchNorm in place of BatchNorm (the same parameters and buffers)."""
        if self.backend != "nccl":
            return model
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model as DistributedDataParallel (gradients averaged in backward), or as it is in one process.

        Each process keeps its own BatchNorm buffers (``forward_sync_buffers=False``); the checkpoint and
        weights take rank 0's.
        """
        if not self.distributed:
            return model
        device_ids = [self.local_rank] if self.backend == "nccl" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)

    def from_main(self, fn, *args):
        """``fn(*args)`` called on rank 0 alone; its result (or the ValueError / FileNotFoundError it
        raised) on every rank."""
        if not self.distributed:
            return fn(*args)
        box = [None]
        if self.is_main:
            try:
                box[0] = (True, fn(*args))
            except (ValueError, FileNotFoundError) as err:
                box[0] = (False, err)
        dist.broadcast_object_list(box, src=0, group=self.group)
        ok, value = box[0]
        if not ok:
            raise value
        return value

    @contextlib.contextmanager
    def agree(self):
        """Run a block of checks on every rank (no collectives inside); when it raises a ValueError or
        FileNotFoundError on any rank, every rank raises: the failing rank its error, the others a
        ValueError with the first failing rank's message."""
        if not self.distributed:
            yield
            return
        error = None
        try:
            yield
        except (ValueError, FileNotFoundError) as err:
            error = err
        failed = [(r, e) for r, e in enumerate(self.gather(None if error is None else str(error))) if e is not None]
        if error is not None:
            raise error
        if failed:
            rank, message = failed[0]
            raise ValueError(f"on rank {rank}: {message}")

    def gather(self, value) -> list:
        """Every rank's ``value`` (any picklable object), in rank order, on every rank."""
        if not self.distributed:
            return [value]
        out = [None] * self.world_size
        dist.all_gather_object(out, value, group=self.group)
        return out

    def same(self, value, what: str) -> None:
        """Refuse (on every rank) when the ranks hold different ``value``s of ``what``."""
        values = self.gather(value)
        if len(set(values)) > 1:
            differ = [r for r, v in enumerate(values) if v != values[0]]
            raise ValueError(f"the processes have different {what}: rank 0's differ from rank(s) {differ}'s.")

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` averaged over the ranks (a new tensor, on x's device; no host sync on CUDA)."""
        if not self.distributed:
            return x
        total = x.detach().clone()
        dist.all_reduce(total)
        return total / self.world_size

    def furthest(self, value, choices: tuple):
        """Of every rank's ``value`` (one of ``choices``), the one furthest along ``choices``, on every rank."""
        if not self.distributed:
            return value
        code = torch.tensor([choices.index(value)])
        dist.all_reduce(code, op=dist.ReduceOp.MAX, group=self.group)
        return choices[int(code)]
