"""Train and test the CIFAR-10 classifier of ``classifier.py`` with a :class:`ClassifierRecipe`.

Data are held in memory as uint8 (50,000 × 3 × 32 × 32 = 150 MB); augmentation (reflect-pad crop +
flip) runs batched on the training device. One seed fixes initialisation, data order and augmentation.
On CUDA the forward/backward run under bf16 autocast.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from hddm_p2p.errors import DataError, SpecError
from hddm_p2p.eval.classifier import ClassifierRecipe, CifarResNet, normalize, save_classifier
from hddm_p2p.eval.images import iter_labeled


def load_labeled(source: str | Path, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images (N, 3, 32, 32), long labels (N,)) of a labelled source; DataError if labels are missing."""
    xs, ys = [], []
    for img, label in iter_labeled(source, limit):
        if label is None:
            raise DataError(f"{source!r} has images without a class label (.cls); the classifier needs labels")
        xs.append(img)
        ys.append(label)
    return torch.stack(xs), torch.tensor(ys)


def augment(x: torch.Tensor, pad: int, g: torch.Generator) -> torch.Tensor:
    """Random crop of the reflect-padded batch + horizontal flip; x (B, 3, H, W) float → same shape."""
    b, _, h, w = x.shape
    xp = F.pad(x, (pad,) * 4, mode="reflect")  # (B, 3, H+2p, W+2p)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=g).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=g).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
    out = xp.permute(0, 2, 3, 1)[torch.arange(b, device=x.device)[:, None, None], rows, cols]  # (B, H, W, 3)
    flip = (torch.rand(b, generator=g) < 0.5).to(x.device)
    out = torch.where(flip[:, None, None, None], out.flip(2), out)
    return out.permute(0, 3, 1, 2).contiguous()


def lr_at(step: int, total: int, recipe: ClassifierRecipe) -> float:
    """Linear warm-up over warmup_frac of the steps, then cosine decay to 0."""
    warm = max(1, int(recipe.warmup_frac * total))
    if step < warm:
        return recipe.lr * (step + 1) / warm
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


@torch.no_grad()
def accuracy(net: CifarResNet, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    """Top-1 accuracy of ``net`` on uint8 images ``x`` (N, 3, 32, 32) with labels ``y`` (N,)."""
    net.eval()
    dev = next(net.parameters()).device
    correct = 0
    for i in range(0, x.shape[0], batch):
        with _autocast(dev):
            logits = net(normalize(x[i:i + batch].to(dev)))
        correct += int((logits.argmax(1).cpu() == y[i:i + batch]).sum())
    return correct / x.shape[0]


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def _optimizer(net: CifarResNet, recipe: ClassifierRecipe) -> torch.optim.Optimizer:
    decay = [p for n, p in net.named_parameters() if p.ndim > 1]  # no weight decay on BN and biases
    rest = [p for n, p in net.named_parameters() if p.ndim <= 1]
    return torch.optim.SGD([{"params": decay, "weight_decay": recipe.weight_decay}, {"params": rest, "weight_decay": 0}],
                           lr=recipe.lr, momentum=0.9, nesterov=True)


def _progress(progress: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TextColumn("loss {task.fields[loss]:.3f}"), TimeRemainingColumn(), disable=not progress,
                    transient=True)


def fit(recipe: ClassifierRecipe, x: torch.Tensor, y: torch.Tensor, device: torch.device,
        progress: bool = True) -> tuple[CifarResNet, dict[str, Any]]:
    """Train a fresh CifarResNet on uint8 ``x`` (N, 3, 32, 32) / labels ``y``; returns it and a training log."""
    torch.manual_seed(recipe.seed)
    g = torch.Generator().manual_seed(recipe.seed)
    net = CifarResNet(recipe.width, recipe.blocks, recipe.stem_stride).to(device)
    opt = _optimizer(net, recipe)
    steps_per_epoch = max(1, x.shape[0] // recipe.batch_size)
    total = int(recipe.epochs * steps_per_epoch)
    total = min(total, recipe.max_steps) if recipe.max_steps else total
    x_dev, y_dev, t0, loss = x.to(device), y.to(device), time.time(), torch.tensor(0.0)
    with _progress(progress) as bar:
        task = bar.add_task("train classifier", total=total, loss=0.0)
        for step in range(total):
            if step % steps_per_epoch == 0:
                order = torch.randperm(x.shape[0], generator=g)
            idx = order[(step % steps_per_epoch) * recipe.batch_size:][:recipe.batch_size].to(device)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, recipe)
            net.train()
            with _autocast(device):
                logits = net(augment(normalize(x_dev[idx]), recipe.crop_pad, g))
                loss = F.cross_entropy(logits.float(), y_dev[idx], label_smoothing=recipe.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.update(task, advance=1, loss=float(loss.detach()))
    log = {"steps": total, "final_loss": round(float(loss.detach()), 4), "images_seen": total * recipe.batch_size,
           "wall_time_s": round(time.time() - t0, 1), "device": str(device)}
    return net, log


def train_classifier(recipe: ClassifierRecipe, train: str | Path, test: str | Path, out: Path,
                     device: str = "cpu", progress: bool = True) -> dict[str, Any]:
    """Train with ``recipe`` on ``train``, measure accuracy on ``test``, save to ``out``; returns classifier.json."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(f"--device {device} requested but CUDA is not available here; use --device cpu")
    x, y = load_labeled(train, recipe.train_limit)
    x_test, y_test = load_labeled(test, recipe.test_limit)
    net, log = fit(recipe, x, y, dev, progress)
    acc = accuracy(net, x_test, y_test)
    log.update(train=str(train), test=str(test), n_train=int(x.shape[0]))
    return save_classifier(Path(out), net, recipe, acc, int(x_test.shape[0]), log)
