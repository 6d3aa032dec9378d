"""Regional compilation: ``torch.compile`` each transformer block in place instead of the whole model.

All blocks of one shape share one compiled graph (parameters are graph inputs), so a DiT compiles in
seconds rather than minutes, and K experts of one architecture — or an expert and a router of its width —
compile once between them. Batch sizes that change from call to call (routed sub-batches) cost one
recompile, after which the batch dimension is dynamic. Dynamo's recompile limit is raised to 64, so that
many experts (and their sizes) in one process never fall back to eager.
"""

from __future__ import annotations

import torch
from torch import nn


def compile_blocks(module: nn.Module, **options) -> nn.Module:
    """Compile every block of ``module.blocks`` in place (``options`` go to ``torch.compile``); returns it."""
    import torch._dynamo.config as dynamo

    blocks = getattr(module, "blocks", None)
    if blocks is None:
        raise TypeError(f"{type(module).__name__} has no .blocks to compile")
    for name in ("recompile_limit", "cache_size_limit"):  # the name changed between torch versions
        if hasattr(dynamo, name):
            setattr(dynamo, name, max(getattr(dynamo, name), 64))
    for block in blocks:
        block.compile(**options)
        if hasattr(block, "forward_deferred"):  # the fused-norm chain (DiTBlock.forward_deferred)
            block.forward_deferred = torch.compile(block.forward_deferred, **options)
    return module
