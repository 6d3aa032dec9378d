"""``summary.md``: the tables of one run's ``results.json``, each number with its metric named in full."""

from __future__ import annotations

from hddm_p2p.experiments.metrics import DIVERSITY_METRIC


def _pm(d: dict | None, digits: int = 2) -> str:
    if not d:
        return "–"
    return f"{d['mean']:.{digits}f} ± {d['std']:.{digits}f}"


def _router(r: dict) -> str:
    rt = r["router"]
    if rt["kind"] == "threshold":
        return f"threshold τ={rt['tau']:g} (low: {', '.join(rt['low'])}; high: {', '.join(rt['high'])})"
    if rt["kind"] == "learned":
        return f"learned, {r['mode']}" + (f" k={r['k']}" if r["mode"] == "top-k" else "")
    return rt["kind"]


def ensemble_table(rows: list[dict], fd_name: str) -> list[str]:
    lines = [f"| configuration | experts | routing | sampler | reference | {fd_name} ↓ | diversity ↑ | NFE | "
             "training images seen | status |", "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['name']} | {', '.join(r['experts'])} | {_router(r)} | {r['sampler']} | {r['reference']} "
                     f"({r.get('n_ref', '–')}) | {_pm(r.get('fd'))} | {_pm(r.get('diversity'), 4)} | {r.get('nfe', '–')} "
                     f"| {r.get('train_images_seen', '–'):,} | {r['status']} |")
    return lines


def summary_markdown(res: dict) -> str:
    clf, env = res.get("classifier", {}), res.get("environment", {})
    fd_name = f"FD (features: {clf.get('id', '?')})"
    out = [f"# {res['name']}", "",
           f"Device: {env.get('device', '?')} · torch {env.get('torch', '?')} · total wall time "
           f"{res.get('wall_s', 0):.0f} s · phases: " +
           ", ".join(f"{k} {v:.0f} s" for k, v in res.get("phases", {}).items()), "",
           f"FD = Fréchet distance in the penultimate-layer features of the project's CIFAR-10 classifier "
           f"`{clf.get('id', '?')}` (test accuracy {clf.get('test_accuracy', float('nan')):.2%} on "
           f"{clf.get('n_test', '?')} test images), against the CIFAR-10 test set or its cluster subset.",
           f"Diversity = {DIVERSITY_METRIC} (groups = classes predicted by the same classifier; LPIPS weights "
           "absent). ± = standard deviation over sampling seeds (ddof 0).", ""]
    cl = res.get("clusters")
    if cl:
        out += [f"Clusters: k-means (K={cl['k']}, {cl['levels']}) on `{cl['feature_extractor']}` features; train sizes "
                f"{cl['train_sizes']}, test sizes {cl['test_sizes']}.", ""]
    if res.get("experts"):
        out += ["| expert | objective | schedule | cluster | steps | images seen | train images | final loss | wall s |",
                "|" + "---|" * 9]
        out += [f"| {e['name']} | {e['objective']} | {e['schedule']} | {e['cluster'] if e['cluster'] is not None else 'all'}"
                f" | {e['steps']} | {e['images_seen']:,} | {e['train_images']:,} | {e['final_loss']:.4f} | {e['wall_s']} |"
                for e in res["experts"]]
        out.append("")
    if res.get("router", {}).get("warning"):
        out += [f"**Warning:** {res['router']['warning']}.", ""]
    rows = res.get("ensembles", [])
    for group in dict.fromkeys(r["group"] for r in rows):
        out += [f"## {group}", ""] + ensemble_table([r for r in rows if r["group"] == group], fd_name) + [""]
    return "\n".join(out) + "\n"
