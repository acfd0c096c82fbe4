"""An ablation grid read back: the state and the record of every run in its folder, the mean and
standard deviation of each variant over seeds, and the ablation table in Markdown and LaTeX
(``notebooks/05_ablation_report.ipynb``, ``safsd-glnet ablate``'s summary). Running the grid is
:mod:`safsd_glnet.grids.ablation`; both read the names and the run record defined here."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..data import atomic_files as files
from ..data import validation
from ..text_display import markdown_table

RUN_RECORD = "run.json"  # beside each run's results: its variant, seed, parameters and state
RUN_NAME = re.compile(r"^(?P<variant>.+)-seed(?P<seed>-?\d+)$")
METRICS = ("accuracy", "weighted_f1", "macro_f1")
NOT_RUNS = ("figures", "submitit")  # folders beside the runs: the report's charts, submitit's jobs


# --------------------------------------------------------------------------- collecting

def collect_runs(out_dir: str | Path) -> list[dict[str, Any]]:
    """One record per complete run folder under ``out_dir`` (one level down): variant, label,
    seed, variant order, the honest test metrics and the reference-protocol ones, and the
    run's validation record (None for a run from before the kit recorded it).

    A folder counts when it has ``metrics.json``; the variant and seed come from its
    ``run.json`` (written by the runner) or else from the folder name ``<variant>-seed<k>``.
    Runs recorded as failed are left out.
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise FileNotFoundError(f"{out}: no such run folder")
    order = {}
    grid_file = out / "grid.json"
    if grid_file.exists():
        g = files.read_json(grid_file)
        order = {v["name"]: (i, v["label"]) for i, v in enumerate(g.get("variants", []))}
    records = []
    for folder in sorted(p for p in out.iterdir() if p.is_dir()):
        metrics_path = folder / "metrics.json"
        if not metrics_path.exists():
            continue
        run = files.read_json(folder / RUN_RECORD) if (folder / RUN_RECORD).exists() else {}
        if run.get("status") == "failed":
            continue
        m = files.read_json(metrics_path)
        match = RUN_NAME.match(folder.name)
        variant = run.get("variant") or (match.group("variant") if match else folder.name)
        seed = run.get("seed")
        if seed is None:
            seed = int(match.group("seed")) if match else m.get("seed", 0)
        index, label = order.get(variant, (run.get("index", len(order) + 1000), run.get("label", variant)))
        records.append({
            "run": folder.name, "variant": variant, "label": label, "seed": int(seed), "index": index,
            "corpus": m.get("corpus"), "modalities": m.get("modalities"), "chosen_epoch": m.get("chosen_epoch"),
            **{k: float(m["test"][k]) for k in METRICS},
            "reference_weighted_f1": float(m["reference_protocol"]["weighted_f1"]),
            "reference_accuracy": float(m["reference_protocol"]["accuracy"]),
            "reference_epoch": m["reference_protocol"].get("epoch"),
            "validation": m.get("validation"),
        })
    records.sort(key=lambda r: (r["index"], r["variant"], r["seed"]))
    return records


def run_states(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every run folder under ``out_dir`` with its status (``done``, ``failed``, ``running`` /
    ``unfinished``; without the runner's ``run.json``: ``done (notebook 4 by hand)`` when the
    notebook's ``parameters.json`` is there, ``done (trained outside the runner)`` for another
    finished run, ``no record`` otherwise) and error, for the report."""
    out = Path(out_dir)
    states = []
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and p.name not in NOT_RUNS):
        rec = files.read_json(folder / RUN_RECORD) if (folder / RUN_RECORD).exists() else None
        if rec is None:
            if not (folder / "metrics.json").exists():
                status = "no record"
            elif (folder / "parameters.json").exists():
                status = "done (notebook 4 by hand)"
            else:
                status = "done (trained outside the runner)"
        else:
            status = rec.get("status", "?")
            if status == "running":
                status = "unfinished"
        states.append({"run": folder.name, "status": status, "error": (rec or {}).get("error", ""),
                       "seconds": (rec or {}).get("seconds", "")})
    return states


def summarise(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per variant (grid order): seeds, then mean / std / values over seeds of the honest
    test metrics and of the reference protocol's weighted F1 and accuracy (sample std, ddof 1,
    via :func:`safsd_glnet.model.metrics.summarise_seeds`), and the validation split the runs used
    (:func:`safsd_glnet.data.validation.shared`)."""
    from ..model.metrics import summarise_seeds

    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault(r["variant"], []).append(r)
    rows = []
    for variant, runs in groups.items():
        honest = summarise_seeds(runs, keys=METRICS)
        reference = summarise_seeds([{"weighted_f1": r["reference_weighted_f1"], "accuracy": r["reference_accuracy"]}
                                     for r in runs], keys=("weighted_f1", "accuracy"))
        row: dict[str, Any] = {"variant": variant, "label": runs[0]["label"], "n": len(runs),
                               "seeds": sorted(r["seed"] for r in runs), "corpus": runs[0].get("corpus"),
                               "validation": validation.shared([r.get("validation") for r in runs])}
        for k in METRICS:
            row[f"{k}_mean"], row[f"{k}_std"] = honest[k]["mean"], honest[k]["std"]
            row[f"{k}_values"] = honest[k]["values"]
        for k in ("weighted_f1", "accuracy"):
            row[f"reference_{k}_mean"] = reference[k]["mean"]
            row[f"reference_{k}_std"] = reference[k]["std"]
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- tables

TABLE_COLUMNS = (  # (heading, key, is the honest protocol)
    ("Acc", "accuracy", True),
    ("w-F1", "weighted_f1", True),
    ("macro F1", "macro_f1", True),
    ("w-F1, reference protocol", "reference_weighted_f1", False),
)


def _best(rows: Sequence[Mapping[str, Any]], key: str) -> float | None:
    values = [r[f"{key}_mean"] for r in rows]
    return max(values) if values else None


def _mean_std(r: Mapping[str, Any], key: str, decimals: int, pm: str = " ± ") -> str:
    """``mean ± std`` over seeds; a variant with one seed has no spread, so its value stands alone."""
    text = f"{r[f'{key}_mean']:.{decimals}f}"
    return text + f"{pm}{r[f'{key}_std']:.{decimals}f}" if r.get("n", 2) > 1 else text


def validation_note(rows: Sequence[Mapping[str, Any]]) -> str:
    """``Validation: official dev (114 dialogues).``: the split that chose the epochs, one phrase
    when every variant used the same one, else one per variant (``label: phrase``)."""
    phrases = [validation.describe_shared(r.get("validation")) for r in rows]
    if len(set(phrases)) <= 1:
        return f"Validation: {phrases[0] if phrases else 'not recorded'}."
    return "Validation: " + "; ".join(f"{r['label']}: {p}" for r, p in zip(rows, phrases)) + "."


def ablation_markdown(rows: Sequence[Mapping[str, Any]], decimals: int = 2) -> str:
    """The ablation table in Markdown: mean ± std over seeds (the value alone for one seed),
    best honest mean in bold, the reference protocol (best test epoch) in its own, last column."""
    best = {key: _best(rows, key) for _, key, _ in TABLE_COLUMNS}
    table = []
    for r in rows:
        line = {"variant": r["label"], "seeds": r["n"]}
        for heading, key, honest in TABLE_COLUMNS:
            text = _mean_std(r, key, decimals)
            if honest and round(r[f"{key}_mean"], decimals) == round(best[key], decimals):
                text = f"**{text}**"
            line[heading] = text
        table.append(line)
    note = ("Test set, mean ± sample std over seeds (a single seed: its value). Honest protocol: the epoch is "
            "chosen by validation weighted F1. The last column is the reference protocol (best test epoch, as SDT, M3Net and the "
            "SAFSD-GLNet code report): optimistic, only for comparison with published numbers. "
            + validation_note(rows))
    return markdown_table(table) + "\n\n" + note + "\n"


def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                 ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}")):
        text = text.replace(a, b)
    return text


def ablation_latex(rows: Sequence[Mapping[str, Any]], decimals: int = 2, caption: str | None = None,
                   label: str = "tab:ablation") -> str:
    """The ablation table as a LaTeX ``table`` (booktabs), the same content as
    :func:`ablation_markdown`."""
    best = {key: _best(rows, key) for _, key, _ in TABLE_COLUMNS}
    head = " & ".join(["Variant", "Seeds"] + [h.replace("w-F1, reference protocol", "w-F1 (ref.)")
                                              for h, _, _ in TABLE_COLUMNS])
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\begin{tabular}{l r " + " ".join("c" for _ in TABLE_COLUMNS) + "}", r"\toprule",
             head + r" \\", r"\midrule"]
    for r in rows:
        cells = [_latex_escape(str(r["label"])), str(r["n"])]
        for _, key, honest in TABLE_COLUMNS:
            text = _mean_std(r, key, decimals, " $\\pm$ ")
            if honest and round(r[f"{key}_mean"], decimals) == round(best[key], decimals):
                text = r"\textbf{" + text + "}"
            cells.append(text)
        lines.append(" & ".join(cells) + r" \\")
    caption = caption or ("Ablations on the test set, mean $\\pm$ sample standard deviation over seeds. "
                          "Epochs are chosen by validation weighted F1; the last column reports the reference "
                          "protocol (best test epoch) only for comparison with published numbers. "
                          + _latex_escape(validation_note(rows)))
    lines += [r"\bottomrule", r"\end{tabular}", r"\caption{" + caption + "}", r"\label{" + label + "}",
              r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_tables(rows: Sequence[Mapping[str, Any]], out_dir: str | Path, stem: str = "ablation_table") -> list[Path]:
    """Write ``<stem>.md``, ``<stem>.tex`` and ``<stem>.json`` (the rows) into ``out_dir``."""
    out = Path(out_dir)
    paths = [out / f"{stem}.md", out / f"{stem}.tex", out / f"{stem}.json"]
    files.write_text(paths[0], ablation_markdown(rows))
    files.write_text(paths[1], ablation_latex(rows))
    files.write_json(paths[2], list(rows))
    return paths
