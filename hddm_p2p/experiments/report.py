"""``summary.md``: the tables of one run's ``results.json``, each number with its metric named in full;
per training seed where there are several, and the paired differences of the configured comparisons."""

from __future__ import annotations

from hddm_p2p.experiments.metrics import DIVERSITY_METRIC


def _pm(d: dict | None, digits: int = 2) -> str:
    if not d:
        return "–"
    return f"{d['mean']:.{digits}f} ± {d['std']:.{digits}f}"


def _per_training_seed(r: dict, key: str, digits: int) -> str:
    """Each training seed's mean over sampling seeds, or why it has none."""
    parts = [f"{x[key]['mean']:.{digits}f}" if x["status"] == "ok" else x["status"] for x in r.get("by_training_seed", [])]
    return ", ".join(parts) or "–"


def _router(r: dict) -> str:
    rt = r["router"]
    if rt["kind"] == "threshold":
        return f"threshold τ={rt['tau']:g} (low: {', '.join(rt['low'])}; high: {', '.join(rt['high'])})"
    if rt["kind"] == "learned":
        return f"learned, {r['mode']}" + (f" k={r['k']}" if r["mode"] == "top-k" else "")
    return rt["kind"]


def _count(v) -> str:
    return f"{v:,}" if isinstance(v, int) else "–"


def ensemble_table(rows: list[dict], fd_name: str, several: bool) -> list[str]:
    seeds = " | FD per training seed | diversity per training seed" if several else ""
    lines = [f"| configuration | experts | routing | sampler | reference | {fd_name} ↓ | diversity ↑{seeds} | NFE | "
             "training images seen | status |", "|" + "---|" * (12 if several else 10)]
    for r in rows:
        per = (f" | {_per_training_seed(r, 'fd', 2)} | {_per_training_seed(r, 'diversity', 4)}" if several else "")
        lines.append(f"| {r['name']} | {', '.join(r['experts'])} | {_router(r)} | {r['sampler']} | {r['reference']} "
                     f"({r.get('n_ref') or '–'}) | {_pm(r.get('fd'))} | {_pm(r.get('diversity'), 4)}{per} "
                     f"| {r.get('nfe', '–')} | {_count(r.get('train_images_seen'))} | {r['status']} |")
    return lines


def comparison_table(comparisons: list[dict]) -> list[str]:
    """a − b per training seed (each the mean over sampling seeds, same noise on both sides)."""
    lines = ["| a − b | metric | per training seed | mean | signs of the paired (training, sampling) seeds |",
             "|---|---|---|---|---|"]
    for c in comparisons:
        for key, digits in (("fd", 2), ("diversity", 4)):
            d = c[key]
            per = ", ".join(f"seed {s}: {v:+.{digits}f}" for s, v in d["per_training_seed"].items())
            sign = _signs(d)
            lines.append(f"| {c['a']} − {c['b']} | {'FD' if key == 'fd' else 'diversity'} | {per} | "
                         f"{d['mean']:+.{digits}f} | {sign} |")
    return lines


def _signs(d: dict) -> str:
    """'all 4 −', 'all 4 +', or the counts ('3 +, 1 −'; exact zeros counted as 0)."""
    n, signs = d["pairs"], d["signs"]
    if d["same_sign"]:
        return f"all {n} {'+' if signs['+'] else '−'}"
    return ", ".join(f"{v} {'−' if k == '-' else k}" for k, v in signs.items() if v)


def timings_line(res: dict) -> str:
    """Stage wall times; stages that overlap (experts, routers, sampling) also give their span."""
    spans = {}
    for name, start, end in res.get("timeline", []):
        lo, hi = spans.get(name, (start, end))
        spans[name] = (min(lo, start), max(hi, end))
    parts = [f"{k} {v:.0f} s" + (f" [{spans[k][0]:.0f}–{spans[k][1]:.0f} s]" if k in spans else "")
             for k, v in res.get("phases", {}).items()]
    return ", ".join(parts) + f"; total {res.get('wall_s', 0):.0f} s"


def _training_line(res: dict) -> str:
    t = res.get("train", {})
    if not t:
        return ""
    fit = t.get("fit")
    rate = (f"; calibration: {fit['workers']} worker(s) at {fit['steps_per_s_each']} steps/s each while all trained, "
            f"expected {fit['expected_training_s']:.0f} s" if fit else "")
    err = f"; torch.compile failed ({t['compile_error']}), eager" if t.get("compile_error") else ""
    return (f"Experts: {t.get('steps_per_unit', '?')} steps per unit of compute, batch {t['batch_size']}, training "
            f"seeds {t['training_seeds']}, {t['workers']} training process(es), compiled blocks: "
            f"{t.get('compiled', False)}{rate}{err}.")


def _experts_table(experts: list[dict]) -> list[str]:
    out = ["| expert | training seed | objective | schedule | cluster | steps | images seen | train images | final loss "
           "| wall s | ms/step |", "|" + "---|" * 11]
    out += [f"| {e['name']} | {e.get('seed', '–')} | {e['objective']} | {e['schedule']} | "
            f"{e['cluster'] if e['cluster'] is not None else 'all'} | {e['steps']} | {e['images_seen']:,} | "
            f"{e['train_images']:,} | {e['final_loss']:.4f} | {e['wall_s']} | {e.get('ms_per_step', '–')} |"
            for e in experts]
    return out + [""]


def summary_markdown(res: dict) -> str:
    clf, env = res.get("classifier", {}), res.get("environment", {})
    fd_name = f"FD (features: {clf.get('id', '?')})"
    several = len(res.get("training_seeds", [0])) > 1
    spread = ("± = standard deviation (ddof 0) over training seeds of each training seed's mean over sampling "
              "seeds; a configuration with one training seed evaluated shows the spread over sampling seeds."
              if several else "± = standard deviation over sampling seeds (ddof 0).")
    out = [f"# {res['name']}", "",
           f"Device: {env.get('device', '?')} · torch {env.get('torch', '?')} · stage timings: {timings_line(res)}", "",
           _training_line(res), "",
           f"FD = Fréchet distance in the penultimate-layer features of the project's CIFAR-10 classifier "
           f"`{clf.get('id', '?')}` (test accuracy {clf.get('test_accuracy', float('nan')):.2%} on "
           f"{clf.get('n_test', '?')} test images), against the CIFAR-10 test set or its cluster subset.",
           f"Diversity = {DIVERSITY_METRIC} (groups = classes predicted by the same classifier; LPIPS weights "
           f"absent). {spread}", ""]
    cl = res.get("clusters")
    if cl:
        out += [f"Clusters: k-means (K={cl['k']}, {cl['levels']}) on `{cl['feature_extractor']}` features; train sizes "
                f"{cl['train_sizes']}, test sizes {cl['test_sizes']}.", ""]
    if res.get("experts"):
        out += _experts_table(res["experts"])
    for r in res.get("routers", []):
        acc = dict((round(t, 1), a) for t, a in r["accuracy_by_t"])
        out.append(f"Router (training seed {r['training_seed']}): held-out top-1 accuracy {acc.get(0.0, 0):.3f} at "
                   f"t = 0, {acc.get(0.5, 0):.3f} at t = 0.5 (majority rate {r['training']['majority_rate']:.3f}).")
        if r.get("warning"):
            out.append(f"**Warning:** {r['warning']}.")
    if res.get("routers"):
        out.append("")
    rows = res.get("ensembles", [])
    for group in dict.fromkeys(r["group"] for r in rows):
        out += [f"## {group}", ""] + ensemble_table([r for r in rows if r["group"] == group], fd_name, several) + [""]
    if res.get("comparisons"):
        out += ["## paired differences", "",
                "a − b per training seed, each the mean over the sampling seeds (both sides sampled from the same "
                "noise); the last column counts the signs of a − b over every (training seed, sampling seed) pair.",
                ""] + comparison_table(res["comparisons"]) + [""]
    return "\n".join(out) + "\n"
