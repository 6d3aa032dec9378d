"""``hddm eval ...``: FID / FD, reference statistics, LPIPS diversity, CLIP score, the FD classifier.

Each command parses flags, calls one function of ``hddm_p2p.eval``, and prints a table (or ``--json``)
where every number names its metric and the network that produced it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from hddm_p2p.cli.options import Device, Json
from hddm_p2p.cli.root import _typer, app, console

eval_app = _typer("Evaluate samples: FID/FD, LPIPS diversity, CLIP score; train the FD classifier.")
classifier_app = _typer("The CIFAR-10 classifier whose features give FD where Inception weights are absent.")
app.add_typer(eval_app, name="eval")
eval_app.add_typer(classifier_app, name="classifier")

Gen = Annotated[str, typer.Option("--gen", help="Generated images: a directory of PNGs, shard(s), or an alias.")]
Extractor = Annotated[str, typer.Option("--extractor", help="inception | inception:PATH | classifier:DIR")]
InceptionWeights = Annotated[Optional[Path], typer.Option("--inception-weights", help="torch-fidelity InceptionV3 "
                             "weights (weights-inception-2015-12-05-6726825d.pth); default: torch hub cache/download")]
Batch = Annotated[int, typer.Option("--batch", min=1, help="Images per forward pass.")]
Limit = Annotated[Optional[int], typer.Option("--limit", min=1, help="Use only the first N images of each set.")]
ResultsOut = Annotated[Optional[Path], typer.Option("--out", help="Also write the records to this JSON file.")]


def _device(name: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def _extractor(name: str, weights: Optional[Path], device: str):
    from hddm_p2p.eval.extractors import get_extractor

    return get_extractor(name, device=_device(device), inception_weights=weights)


def _show(records: list[dict], out: Optional[Path], as_json: bool, title: str) -> None:
    from hddm_p2p.cli.root import err_console
    from hddm_p2p.eval.records import records_table, write_records

    if out is not None:
        write_records(out, records)
    if as_json:
        print(json.dumps(records[0] if len(records) == 1 else records))
        return
    console.print(records_table(records, title))
    for w in (w for r in records for w in r.get("warnings", [])):
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)


@eval_app.command("fid")
def fid(gen: Gen,
        ref: Annotated[str, typer.Option("--ref", help="Reference: cifar10-test, a directory/shards, or STATS.npz "
                                         "from `hddm eval stats`.")],
        extractor: Extractor = "inception", inception_weights: InceptionWeights = None, batch: Batch = 100,
        limit: Limit = None, device: Device = "cpu", out: ResultsOut = None, as_json: Json = False) -> None:
    """Fréchet distance of generated images to a reference: FID with Inception, FD with the classifier.

    Example: hddm eval fid --gen samples/ --ref cifar10-test --extractor classifier:clf/
    """
    from hddm_p2p.eval.evaluate import evaluate_fd

    ext = _extractor(extractor, inception_weights, device)
    rec = evaluate_fd(gen, ref, ext, batch=batch, limit=limit, progress=not as_json)
    _show([rec], out, as_json, "Fréchet distance")


@eval_app.command("stats")
def stats(data: Annotated[str, typer.Option("--data", help="Reference images: cifar10-test, a directory, shards.")],
          out: Annotated[Path, typer.Option("--out", help="Statistics file to write (.npz).")],
          extractor: Extractor = "inception", inception_weights: InceptionWeights = None, batch: Batch = 100,
          limit: Limit = None, device: Device = "cpu", as_json: Json = False) -> None:
    """Precompute reference feature statistics (μ, Σ) with the extractor's id stored alongside.

    Example: hddm eval stats --data cifar10-test --extractor classifier:clf/ --out cifar10-test.clf.npz
    """
    from hddm_p2p.errors import SpecError
    from hddm_p2p.eval.evaluate import source_stats
    from hddm_p2p.eval.frechet import save_stats

    if out.suffix != ".npz":
        raise SpecError(f"--out {out} must end in .npz (it is read back by `hddm eval fid --ref`)")
    s = source_stats(data, _extractor(extractor, inception_weights, device), batch=batch, limit=limit,
                     progress=not as_json)
    save_stats(s, out)
    info = {"out": str(out), "extractor": s.extractor, "extractor_test_accuracy": s.info.get("test_accuracy"),
            "n": s.n, "feature_dim": s.dim, "source": data}
    if as_json:
        print(json.dumps(info))
        return
    acc = info["extractor_test_accuracy"]
    console.print(f"wrote {out}: {s.n} images, {s.dim}-d features of [bold]{s.extractor}[/]"
                  + (f" (test accuracy {acc:.2%})" if acc is not None else ""))


@eval_app.command("lpips")
def lpips_cmd(gen: Gen,
              groups: Annotated[str, typer.Option("--groups", help="subdirs | label | chunk:N (N samples per prompt, "
                                                  "prompt-major file order).")] = "subdirs",
              per_group: Annotated[Optional[int], typer.Option("--per-group", min=2, help="Use at most N per group.")]
              = None,
              net: Annotated[str, typer.Option("--net", help="LPIPS backbone: alex, vgg, squeeze.")] = "alex",
              backbone: Annotated[Optional[Path], typer.Option("--lpips-backbone", help="torchvision ImageNet "
                                  "weights of the backbone (e.g. alexnet-owt-7be5be79.pth).")] = None,
              device: Device = "cpu", out: ResultsOut = None, as_json: Json = False) -> None:
    """Intra-prompt diversity: mean pairwise LPIPS within each group, mean ± std over groups.

    Example: hddm eval lpips --gen samples/ --groups chunk:16 --lpips-backbone alexnet-owt-7be5be79.pth
    """
    from hddm_p2p.eval.diversity import load_lpips
    from hddm_p2p.eval.evaluate import evaluate_diversity
    from hddm_p2p.eval.images import load_groups

    model = load_lpips(net, backbone, device=_device(device))
    rec = evaluate_diversity(load_groups(gen, groups, per_group), model, source=gen)
    _show([rec], out, as_json, "diversity")


@eval_app.command("clip")
def clip_cmd(gen: Gen,
             clip: Annotated[Optional[Path], typer.Option("--clip", help="Local transformers CLIP directory.")] = None,
             prompts: Annotated[Optional[Path], typer.Option("--prompts", help="Text file, one prompt per image in "
                                "sorted file order.")] = None,
             prompt: Annotated[Optional[str], typer.Option("--prompt", help="One prompt for every image.")] = None,
             batch: Batch = 64, device: Device = "cpu", out: ResultsOut = None, as_json: Json = False) -> None:
    """CLIP score (100·max(cos, 0)) of each image against its prompt.

    Example: hddm eval clip --gen samples/ --prompts prompts.txt --clip clip-vit-base-patch32/
    """
    from hddm_p2p.errors import SpecError
    from hddm_p2p.eval.clip_score import ClipScorer
    from hddm_p2p.eval.evaluate import evaluate_clip
    from hddm_p2p.eval.images import count_images

    if (prompts is None) == (prompt is None):
        raise SpecError("give exactly one of --prompts FILE or --prompt TEXT")
    scorer = ClipScorer.load(clip, _device(device))
    texts = prompts.read_text().splitlines() if prompts else [prompt] * (count_images(gen) or 0)
    _show([evaluate_clip(scorer, gen, texts, batch=batch, source=gen)], out, as_json, "CLIP score")


@eval_app.command("merge")
def merge(out_dir: Annotated[Path, typer.Option("--dir", help="Directory that `sample_for_eval` ranks wrote to.")],
          n: Annotated[int, typer.Option("--n", min=1, help="Number of samples expected.")]) -> None:
    """Merge the per-rank PNG shards of a sharded sampling run into DIR/IIIIII.png and check none is missing."""
    from hddm_p2p.eval.sampling import merge_shards

    console.print(f"merged {len(merge_shards(out_dir, n))} samples into {out_dir}")


@classifier_app.command("train")
def classifier_train(
        out: Annotated[Path, typer.Option("--out", help="Classifier directory to write.")],
        train: Annotated[str, typer.Option("--train", help="Labelled training images (shards with .cls).")]
        = "cifar10-train",
        test: Annotated[str, typer.Option("--test", help="Labelled test images for the reported accuracy.")]
        = "cifar10-test",
        recipe: Annotated[str, typer.Option("--recipe", help="cifar10-resnet (GPU, ~30 epochs) | cifar10-resnet-quick "
                                            "(CPU, 200 steps).")] = "cifar10-resnet",
        device: Device = "cpu", as_json: Json = False) -> None:
    """Train the FD feature extractor with a kept recipe; saves weights + classifier.json with its test accuracy.

    Example: hddm eval classifier train --recipe cifar10-resnet --device cuda --out clf/
    """
    from hddm_p2p.eval.classifier import get_recipe
    from hddm_p2p.eval.classifier_train import train_classifier

    desc = train_classifier(get_recipe(recipe), train, test, out, _device(device), progress=not as_json)
    if as_json:
        print(json.dumps(desc))
        return
    tr = desc["training"]
    console.print(f"wrote {out}: [bold]{desc['id']}[/], test accuracy {desc['test_accuracy']:.2%} on {desc['n_test']} "
                  f"images ({tr['steps']} steps, {tr['wall_time_s']} s on {tr['device']})")
