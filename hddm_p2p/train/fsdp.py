"""FSDP (``hddm train expert --fsdp`` under torchrun): shard a model too large for one device over the ranks.

Uses PyTorch's FSDP2 (``torch.distributed.fsdp.fully_shard``): every block of each ``nn.ModuleList`` (a DiT's
transformer blocks) is one unit, the rest of the model the root unit; parameters, gradients and AdamW state
live as ``DTensor`` shards (dim 0 split over ranks). Gradients are reduce-scattered as a mean over ranks, so
the global-batch equivalence of ``distributed.py`` holds as it does for DDP.

Checkpoints stay interchangeable with single-device runs: model, EMA and optimizer are saved as *full*
state dicts (gathered to rank 0 on the CPU; the optimizer's keyed by parameter index, as
``torch.optim.Optimizer.state_dict`` writes them), and loaded back by sharding a full state dict.
FSDP1 (``FullyShardedDataParallel``) is not used: in torch 2.15 it refuses to run without an accelerator,
while FSDP2 runs on CPU with gloo (what the tests use).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

Tensor = torch.Tensor


def _api():
    from torch.distributed.checkpoint import state_dict as sd
    from torch.distributed.fsdp import FSDPModule, fully_shard

    return sd, FSDPModule, fully_shard


def is_sharded(module: nn.Module) -> bool:
    return isinstance(module, _api()[1])


def shard(model: nn.Module, device: torch.device) -> nn.Module:
    """Shard ``model`` in place over all ranks (blocks of ModuleLists first, then the root); returns it."""
    from torch.distributed.device_mesh import init_device_mesh

    _, _, fully_shard = _api()
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for m in list(model.modules()):
        if isinstance(m, nn.ModuleList):
            for block in m:
                fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def _full(**kw):
    sd, _, _ = _api()
    return sd.StateDictOptions(full_state_dict=True, **kw)


def model_state(module: nn.Module) -> dict[str, Tensor]:
    """The module's state dict; for a sharded one the full tensors (a collective: call on every rank; rank 0
    gets them on the CPU, the others an empty dict)."""
    if not is_sharded(module):
        return module.state_dict()
    return _api()[0].get_model_state_dict(module, options=_full(cpu_offload=True))


def load_model_state(module: nn.Module, state: dict[str, Tensor]) -> None:
    """Load a full (single-device) state dict; a sharded module keeps only its shard of each tensor."""
    if not is_sharded(module):
        module.load_state_dict(state)
        return
    _api()[0].set_model_state_dict(module, state, options=_full())


def optim_state(model: nn.Module, opt: torch.optim.Optimizer) -> dict:
    """``opt.state_dict()`` as one device writes it (state keyed by parameter index), also when sharded."""
    if not is_sharded(model):
        return opt.state_dict()
    full = _api()[0].get_optimizer_state_dict(model, opt, options=_full(cpu_offload=True))
    if not full:
        return {}  # ranks other than 0
    index = {name: i for i, (name, _) in enumerate(model.named_parameters())}
    groups = [{**g, "params": [index[n] for n in g["params"]]} for g in full["param_groups"]]
    return {"state": {index[n]: s for n, s in full["state"].items()}, "param_groups": groups}


def load_optim_state(model: nn.Module, opt: torch.optim.Optimizer, state: dict) -> None:
    """Load an index-keyed (single-device) optimizer state dict, into a sharded model's optimizer too."""
    if not is_sharded(model):
        opt.load_state_dict(state)
        return
    names = [name for name, _ in model.named_parameters()]
    groups = [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]
    full = {"state": {names[int(i)]: s for i, s in state["state"].items()}, "param_groups": groups}
    _api()[0].set_optimizer_state_dict(model, opt, full, options=_full())
