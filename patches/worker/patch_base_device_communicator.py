"""all_gatherv / reduce_scatterv for device communicators that lack them (CPU, and the NPU platform).

Data parallelism of a mixture-of-experts model gathers every rank's tokens before the experts and
scatters the results back (vLLM's naive DP/EP path: ``all_gatherv`` and ``reduce_scatterv`` with
per-rank sizes). vLLM implements both for CUDA and ROCm only; ``DeviceCommunicatorBase`` raises
NotImplementedError, and the CPU communicator and the overlay's NPU platform inherit that, so
``--data-parallel-size N`` with a MoE model fails in the first forward pass. These versions use only
``torch.distributed`` on the communicator's own device group (gloo on CPU, hccl on an NPU): pad every
rank's part to the largest, all-gather, trim; and all-reduce, then keep this rank's part. They move
more bytes than a dedicated kernel would, and compute the same values.
"""

from ascend_overlay import Patch

PATCH = Patch(
    name="generic_all_gatherv",
    phase="worker",
    vllm=">=0.32,<0.34",
    why=("DeviceCommunicatorBase.all_gatherv and reduce_scatterv raise NotImplementedError; only the CUDA/ROCm "
         "communicators implement them, so MoE models with --data-parallel-size > 1 fail on the CPU platform "
         "and on the NPU platform (which uses the base communicator over hccl). Replaced with versions built on "
         "torch.distributed over the communicator's device group: pad-all_gather-trim, and all_reduce-then-slice. "
         "Communicators that implement their own (CUDA, ROCm, XPU) are subclasses with overrides, untouched."),
    upstream="vllm/distributed/device_communicators/base_device_communicator.py: all_gatherv, reduce_scatterv",
    remove_when="vLLM's base (or CPU) communicator implements all_gatherv and reduce_scatterv",
)


def _split_sizes(sizes, world_size, total):
    if sizes is None:
        if total % world_size:
            raise ValueError(f"cannot split {total} rows evenly across {world_size} ranks without sizes")
        return [total // world_size] * world_size
    if len(sizes) != world_size:
        raise ValueError(f"{len(sizes)} sizes given for {world_size} ranks")
    return list(sizes)


def _all_gatherv(self, input_, dim=0, sizes=None):
    import torch
    import torch.distributed as dist

    if isinstance(input_, (list, tuple)):
        return [_all_gatherv(self, t, dim, sizes) for t in input_]
    dim = dim % input_.dim()
    if sizes is None:
        sizes = [input_.size(dim)] * self.world_size
    if len(sizes) != self.world_size or input_.size(dim) != sizes[self.rank_in_group]:
        raise ValueError(f"all_gatherv: this rank holds {input_.size(dim)} rows along dim {dim}, sizes say "
                         f"{sizes} for {self.world_size} ranks")
    shape = list(input_.shape)
    shape[dim] = max(sizes) - input_.size(dim)
    padded = torch.cat([input_, input_.new_zeros(shape)], dim=dim).contiguous()
    parts = [torch.empty_like(padded) for _ in range(self.world_size)]
    dist.all_gather(parts, padded, group=self.device_group)
    return torch.cat([part.narrow(dim, 0, size) for part, size in zip(parts, sizes, strict=True)], dim=dim)


def _reduce_scatterv(self, input_, dim=-1, sizes=None):
    import torch.distributed as dist

    dim = dim % input_.dim()
    sizes = _split_sizes(sizes, self.world_size, input_.size(dim))
    total = input_.clone()
    dist.all_reduce(total, group=self.device_group)
    start = sum(sizes[:self.rank_in_group])
    return total.narrow(dim, start, sizes[self.rank_in_group]).contiguous()


def _eager(function):
    """Collectives on per-rank sizes cannot be traced by TorchDynamo (the sizes are data), and vLLM
    calls these inside compiled MoE layers: they always run as plain Python, as vLLM's own
    communicators run theirs outside the graph."""
    import torch

    eager = torch.compiler.disable(function)
    eager.__qualname__ = f"DeviceCommunicatorBase.{function.__name__.lstrip('_')}"
    return eager


@PATCH.replace("vllm.distributed.device_communicators.base_device_communicator:DeviceCommunicatorBase.all_gatherv",
               contract="(self, input_, dim=0, sizes=None)", factory=True)
def make_all_gatherv(original):
    return _eager(_all_gatherv)


@PATCH.replace("vllm.distributed.device_communicators.base_device_communicator:DeviceCommunicatorBase.reduce_scatterv",
               contract="(self, input_, dim=-1, sizes=None)", factory=True)
def make_reduce_scatterv(original):
    return _eager(_reduce_scatterv)
