"""The evaluation report: PNG figures (matplotlib, Agg) and report.md beside metrics.json.

Figures use ``matplotlib.figure.Figure`` directly (no pyplot state, no display needed) and the
scikit-learn display classes for ROC, precision-recall, reliability and confusion plots, so the
curves drawn are the ones scikit-learn computes. Every file is written through a temporary
sibling and ``os.replace``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import CalibrationDisplay
from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

from agents import atomic
from agents.bundle import Bundle
from agents.labels import CLASSES
from training.curves import plot_curves

# Figures quoted from the original project report. They were measured on a split that put
# frames of the same videos in train and test, so they are not comparable with these results.
REFERENCE_ROWS = (
    ("LeNet-like (original report)", 0.8295),
    ("custom CNN (original report)", 0.8651),
)
ECE_BINS = 15  # must match training.metrics.expected_calibration_error's default


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes a file atomically (`agents.atomic`), creating its folder, so readers never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.atomic_write_bytes(path, data)


def atomic_write_text(path: Path, text: str) -> None:
    """UTF-8 text through :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save_figure(fig: Figure, path: Path) -> str:
    """Renders a figure to PNG bytes and writes them atomically; returns the file name."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    return path.name


def _curves(display: Any, y: np.ndarray, scores: dict[str, np.ndarray]) -> tuple[Figure, Any]:
    """(figure, axes) holding one curve per system, drawn by a scikit-learn display class."""
    fig = Figure(figsize=(6.5, 6))
    ax = fig.add_subplot()
    for name, p in scores.items():
        display.from_predictions(y, p, name=name, ax=ax, pos_label=1)
    return fig, ax


def plot_roc(y: np.ndarray, scores: dict[str, np.ndarray], path: Path) -> str:
    """ROC curves of every system on one axes."""
    fig, ax = _curves(RocCurveDisplay, y, scores)
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1)
    ax.set_title("ROC (fake = positive)")
    return save_figure(fig, path)


def plot_pr(y: np.ndarray, scores: dict[str, np.ndarray], path: Path) -> str:
    """Precision-recall curves of every system on one axes, with the fake prevalence as a line."""
    fig, ax = _curves(PrecisionRecallDisplay, y, scores)
    ax.axhline(float(np.mean(y)), linestyle=":", color="grey", linewidth=1, label="prevalence")
    ax.set_title("Precision-recall (fake = positive)")
    ax.legend(loc="lower left", fontsize="small")
    return save_figure(fig, path)


def plot_reliability(y: np.ndarray, scores: dict[str, np.ndarray], path: Path) -> str:
    """Reliability diagram (15 equal-width bins, the ECE bins) plus a histogram of p_fake."""
    fig = Figure(figsize=(6.5, 8))
    ax, hist = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    for i, (name, p) in enumerate(scores.items()):
        CalibrationDisplay.from_predictions(y, p, n_bins=ECE_BINS, strategy="uniform", name=name, ax=ax,
                                            pos_label=1, ref_line=(i == 0))
        hist.hist(p, bins=np.linspace(0, 1, ECE_BINS + 1), histtype="step", label=name)
    ax.set_title("Reliability: observed fake fraction vs mean p_fake")
    ax.set_xlabel("")
    ax.set_ylabel("observed fake fraction")
    ax.legend(loc="upper left", fontsize="small")
    hist.set_xlabel("p_fake")
    hist.set_ylabel("images")
    return save_figure(fig, path)


def plot_confusions(y: np.ndarray, decisions: dict[str, np.ndarray], path: Path) -> str:
    """One confusion matrix per system (at its own threshold), in a grid."""
    names = list(decisions)
    cols = min(4, len(names))
    rows = int(np.ceil(len(names) / cols))
    fig = Figure(figsize=(3.2 * cols, 3.0 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, name in zip(axes, names):
        ConfusionMatrixDisplay.from_predictions(y, decisions[name], labels=[0, 1], display_labels=list(CLASSES),
                                                ax=ax, colorbar=False, cmap="Blues")
        ax.set_title(name)
    for ax in axes[len(names):]:
        ax.set_axis_off()
    fig.tight_layout()
    return save_figure(fig, path)


def plot_trust(trust: dict[str, dict[str, float]], path: Path, *, title: str, label: str = "trust Q") -> str:
    """The controller's trust table (agent x class it speaks for) as an annotated heatmap.

    The colour scale is symmetric around 0 and covers at least [-1, 1] (Q-trust lives there;
    log-odds weights may exceed it).
    """
    agents = list(trust)
    values = np.array([[trust[a][c] for c in CLASSES] for a in agents], dtype=float)
    bound = max(1.0, float(np.abs(values).max()) if values.size else 1.0)
    fig = Figure(figsize=(4.5, 1.2 + 0.6 * len(agents)))
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="RdYlGn", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(len(CLASSES)), labels=[f"says {c}" for c in CLASSES])
    ax.set_yticks(range(len(agents)), labels=agents)
    for i in range(len(agents)):
        for j in range(len(CLASSES)):
            ax.text(j, i, f"{values[i, j]:+.2f}", ha="center", va="center", fontsize=10)
    fig.colorbar(image, ax=ax, label=label)
    ax.set_title(title)
    return save_figure(fig, path)


def training_logs(bundle: Bundle) -> dict[str, Path]:
    """agent -> its Keras CSV training log inside the bundle, for agents whose bundle entry lists one."""
    logs = {}
    for agent in bundle.agent_names:
        files = bundle.manifest["agents"][agent].get("files", {}) or {}
        csvs = [rel for rel in files if rel.lower().endswith(".csv") and (bundle.path / rel).is_file()]
        if csvs:
            logs[agent] = bundle.path / csvs[0]
    return logs


def _fmt(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ci(interval: Sequence[float] | None) -> str:
    return "" if not interval else f" [{interval[0]:.3f}, {interval[1]:.3f}]"


def metrics_table(result: dict[str, Any]) -> str:
    """The markdown table of every system, then the original report's reference rows."""
    level = f"{round(100 * result.get('bootstrap', {}).get('confidence', 0.95))}%"
    header = (f"| system | AUC [{level} CI] | accuracy [{level} CI] | bal. acc. | precision | recall | F1 | F0.5 | AP | EER "
              "| log-loss | ECE | threshold | confusion [[tn, fp], [fn, tp]] |")
    lines = [header, "|" + "---|" * 14]
    for name, m in result["systems"].items():
        mark = " (best single)" if name == result.get("best_single") else ""
        lines.append(
            f"| {name}{mark} | {_fmt(m['auc'])}{_ci(m.get('auc_ci'))} | {_fmt(m['accuracy'])}{_ci(m.get('accuracy_ci'))} "
            f"| {_fmt(m['balanced_accuracy'])} | {_fmt(m['precision'])} | {_fmt(m['recall'])} | {_fmt(m['f1'])} "
            f"| {_fmt(m.get('f0_5'))} "
            f"| {_fmt(m['ap'])} | {_fmt(m['eer'])} | {_fmt(m['log_loss'])} | {_fmt(m['ece'])} "
            f"| {_fmt(m['threshold'], 3)} | {m['confusion']} |"
        )
    for name, acc in REFERENCE_ROWS:  # the report quotes accuracy only: the 11 columns after it are n/a
        lines.append(f"| *{name}*&dagger; | n/a | *{acc:.4f}* ({acc * 100:.2f} %)" + " | n/a" * 11 + " |")
    return "\n".join(lines)


def _comparison_text(result: dict[str, Any]) -> str:
    cmp_ = result["ensemble_vs_best_single"]
    best = result["best_single"]
    if cmp_.get("p_value") is None:
        return f"No ensemble was scored, so there is no paired test (best single agent by AUC: `{best}`)."
    text = (
        f"`ensemble` vs the best single agent `{best}` (highest AUC on this set, the strongest opponent): "
        f"delta AUC = {cmp_['delta_auc']:+.4f}{_ci(cmp_.get('delta_auc_ci'))}, p = {cmp_['p_value']:.4g} "
        f"({cmp_.get('method', 'paired bootstrap')}, {cmp_.get('n_resamples', '?')} resamples of the same images)."
    )
    mc = cmp_.get("mcnemar")
    if mc:
        text += (f" On the decisions at each system's threshold, exact McNemar: ensemble right/agent wrong "
                 f"{mc['a_right_b_wrong']}, the reverse {mc['a_wrong_b_right']}, p = {mc['p_value']:.4g}.")
    return text


def _ablation_text(result: dict[str, Any]) -> str:
    rows = result.get("ablation") or {}
    if not rows:
        return "No ensemble was scored, so there is no ablation."
    lines = ["Each row withholds one agent's votes (the decision path used when that agent is down).", "",
             "| without | AUC | delta AUC vs full ensemble |", "|---|---|---|"]
    lines += [f"| {agent} | {_fmt(m['auc'])} | {m['delta_auc']:+.4f} |" for agent, m in rows.items()]
    return "\n".join(lines)


def write_report(
    *,
    out_dir: Path,
    result: dict[str, Any],
    predictions: pd.DataFrame,
    systems: Sequence[Any],
    bundle: Bundle,
    controller: Any | None,
    sections: Sequence[tuple[str, str]] = (),
    extra_figures: dict[str, str] | None = None,
) -> list[str]:
    """Draws every figure and writes report.md into ``out_dir``.

    Args:
        out_dir: output directory.
        result: the metrics.json content.
        predictions: path, label and one p_fake column per system.
        systems: the scored systems (name, p_fake, threshold, note).
        bundle: the evaluated bundle (training logs are read from it).
        controller: the ensemble's controller (trust heatmap) or None.
        sections: more (title, markdown) sections, placed before the figures.
        extra_figures: title -> PNG file name already written into ``out_dir``.

    Returns:
        The PNG file names written.
    """
    out_dir = Path(out_dir)
    y = predictions["label"].to_numpy(dtype=int)
    scores = {s.name: np.asarray(s.p_fake) for s in systems}
    decisions = {s.name: (np.asarray(s.p_fake) >= s.threshold).astype(int) for s in systems}
    both = len(np.unique(y)) == 2
    figures: dict[str, str] = {}
    notes: list[str] = []
    if both:
        figures["ROC curves"] = plot_roc(y, scores, out_dir / "roc.png")
        figures["Precision-recall curves"] = plot_pr(y, scores, out_dir / "pr.png")
        figures["Reliability diagram"] = plot_reliability(y, scores, out_dir / "reliability.png")
    figures["Confusion matrices (each at its own threshold)"] = plot_confusions(y, decisions, out_dir / "confusion.png")
    if controller is not None:
        label = "trust Q" if controller.kind == "qtrust" else "log-odds weight W"
        figures["Controller trust per class"] = plot_trust(controller.trust(), out_dir / "trust.png",
                                                           title=f"controller {controller.version} ({controller.kind})",
                                                           label=label)
    logs = training_logs(bundle)
    for agent, log in logs.items():
        try:
            png = plot_curves(log, out_dir / f"training_{agent}.png", title=f"{agent}: training curves")
        except (OSError, ValueError, KeyError) as err:  # a damaged log costs a figure, not the evaluation
            notes.append(f"Training log {log} could not be plotted: {err}")
            continue
        figures[f"Training curves: {agent}"] = png.name

    data = result["data"]
    lines = [
        "# fakeface evaluation",
        "",
        f"- Data: `{data['path']}`" + (f", split `{data['split']}`" if data.get("split") else " (folder input)"),
        f"- Scored images: {data['n']} ({data['n_real']} real, {data['n_fake']} fake); "
        f"{data['n_no_face']} without a detectable face and {data.get('n_unreadable', 0)} unreadable, "
        "listed in `no_face.csv` and left out of every metric.",
        f"- Face detection: `--detect {data.get('detect', 'auto')}`.",
        f"- Bundle: `{result['bundle']['path']}` (version {result['bundle']['version']}), "
        f"agents {', '.join(result['bundle']['agents'])}.",
        f"- Fitting data for stacking / a missing controller: {result['fit']['source']} "
        f"({result['fit']['n']} images). Nothing was fitted on the evaluated images.",
        f"- Intervals: {result['bootstrap']['n_resamples']} bootstrap resamples of each "
        f"{result['bootstrap'].get('unit', 'image')}, seed {result['bootstrap']['seed']}, percentile "
        f"{100 * result['bootstrap'].get('confidence', 0.95):g} % intervals.",
        "",
        "## Systems",
        "",
    ]
    for s in systems:
        lines.append(f"- `{s.name}` ({s.kind}): {s.note}")
    for name, reason in result.get("unavailable", {}).items():
        lines.append(f"- `{name}`: **unavailable** - {reason}")
    lines += [
        "",
        "## Metrics",
        "",
        "Fake is the positive class. Threshold-free: AUC, AP, EER, log-loss, ECE (15 equal-width bins "
        "of p_fake). At the threshold: accuracy, balanced accuracy, precision, recall, F1, confusion.",
        "",
        metrics_table(result),
        "",
        "&dagger; Quoted from the original report for reference only: accuracy measured on a different, "
        "leaky split (frames of the same videos in train and test), so it is not comparable with the rows above.",
        "",
        "## Ensemble vs best single agent",
        "",
        _comparison_text(result),
        "",
        "## Ablation: the ensemble without each agent",
        "",
        _ablation_text(result),
        "",
    ]
    for title, text in sections:
        lines += [f"## {title}", "", text, ""]
    figures.update(extra_figures or {})
    lines += ["## Figures", ""]
    for title, name in figures.items():
        lines += [f"### {title}", "", f"![{title}]({name})", ""]
    if not logs:
        lines += ["The bundle holds no training CSV logs, so there are no training curves.", ""]
    lines += [f"- {note}" for note in notes]
    atomic_write_text(out_dir / "report.md", "\n".join(lines))
    return list(figures.values())
