"""Figures shared by the command-line tools (matplotlib, headless)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # Headless: tools run on servers and in CI.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from age_tf import fileio, metrics  # noqa: E402


def save_figure(fig, path: str) -> None:
    """Saves via a temporary name, then renames, so a crash never leaves half a PNG."""
    with fileio.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_age_distribution(ages_by_split: dict[str, np.ndarray], path: str) -> None:
    """The study's Figure 3: the share of images per age, one line per subset.

    Shares rather than counts, so subsets of different sizes can be compared directly.
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [2, 1]})
    bins = np.arange(0, 102, 2)
    colors = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}
    for name, ages in ages_by_split.items():
        ages = np.asarray(ages)
        if not len(ages):  # a subset left empty (--split=whole: every image in test)
            continue
        axes[0].hist(ages, bins=bins, density=True, histtype="step", linewidth=1.8,
                     label=f"{name} (n={len(ages):,}, mean {ages.mean():.1f})",
                     color=colors.get(name))
    axes[0].set_xlabel("age (years)")
    axes[0].set_ylabel("share of images per year")
    axes[0].set_title("Age distribution per subset")
    axes[0].legend()
    names = list(ages_by_split)
    axes[1].bar(names, [len(ages_by_split[n]) for n in names],
                color=[colors.get(n, "gray") for n in names])
    for i, n in enumerate(names):
        axes[1].text(i, len(ages_by_split[n]), f"{len(ages_by_split[n]):,}", ha="center", va="bottom")
    axes[1].set_ylabel("images")
    axes[1].set_title("Images per subset")
    save_figure(fig, path)


def plot_face_grid(images, titles, path: str, suptitle: str, cols: int = 8) -> None:
    """A grid of faces (uint8 or [0, 255] float HxWx3 arrays), each with a title."""
    n = len(images)
    cols = min(cols, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.1 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles):
        ax.imshow(np.clip(np.asarray(img), 0, 255).astype(np.uint8))
        ax.set_title(title, fontsize=9)
    fig.suptitle(suptitle)
    save_figure(fig, path)


def plot_scatter(true_years, pred_years, path: str, title: str, outlier_years: float = 40.0) -> None:
    """The study's Figure 4: predicted vs true age, large errors darker, LS fit and identity."""
    t = np.asarray(true_years, float)
    p = np.asarray(pred_years, float)
    big = np.abs(p - t) > outlier_years
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(t[~big], p[~big], s=8, alpha=0.35, color="tab:blue", label="|error| <= 40 years")
    ax.scatter(t[big], p[big], s=14, alpha=0.9, color="navy",
               label=f"|error| > 40 years ({big.sum()})")
    lo, hi = 0, max(100, float(np.nanmax(np.r_[t, p])) if len(t) else 100)
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="identity (perfect)")
    if len(t) > 1 and np.ptp(t) > 0:
        slope, intercept = np.polyfit(t, p, 1)
        ax.plot([lo, hi], [intercept + slope * lo, intercept + slope * hi], color="tab:red", lw=1.5,
                label=f"least squares: {slope:.2f} x + {intercept:.1f}")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("true age (years)")
    ax.set_ylabel("predicted age (years)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    save_figure(fig, path)


def plot_mae_by_decade(true_years, pred_years, path: str, title: str) -> None:
    """MAE per decade of true age, with the image count on each bar."""
    t = np.asarray(true_years, float)
    err = np.abs(np.asarray(pred_years, float) - t)
    decades = np.clip(t // 10, 0, 9).astype(int)
    labels_ = [f"{10 * d}-{10 * d + 9}" if d < 9 else "90-100" for d in range(10)]
    mae = [err[decades == d].mean() if (decades == d).any() else 0 for d in range(10)]
    counts = [int((decades == d).sum()) for d in range(10)]
    fig, ax = plt.subplots(figsize=(8, 4))
    bars = ax.bar(labels_, mae, color="tab:blue")
    for bar, n in zip(bars, counts):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"n={n}", ha="center",
                va="bottom", fontsize=8)
    ax.set_xlabel("true age (years)")
    ax.set_ylabel("MAE (years)")
    ax.set_title(title)
    save_figure(fig, path)


def plot_error_by_decade(by_run: dict[str, dict], path: str) -> None:
    """MAE and mean signed error per decade of true age, one line per run (or baseline).

    Args:
      by_run: {label: {decade label: {"mae_years", "bias_years", "images"}}}.
    """
    decades = [d for d in (metrics.decade_label(x) for x in metrics.DECADES)
               if any(d in v for v in by_run.values())]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharex=True)
    x = np.arange(len(decades))
    for label, by in by_run.items():
        style = "--" if "baseline" in label else "-"
        for ax, key in zip(axes, ("mae_years", "bias_years")):
            ax.plot(x, [by[d][key] if d in by else np.nan for d in decades], style, marker="o",
                    label=label)
    axes[0].set_ylabel("MAE (years)")
    axes[1].set_ylabel("mean signed error (years; + = too old)")
    axes[1].axhline(0, color="k", lw=0.8)
    for ax in axes:
        ax.set_xticks(x, decades, rotation=45)
        ax.set_xlabel("true age")
    axes[0].set_title("Error by age")
    axes[1].set_title("Bias by age")
    axes[1].legend(fontsize=7, loc="best")
    save_figure(fig, path)


def plot_false_over(by_run: dict[str, dict], error: float, path: str) -> None:
    """The false-over rate of calibrated decisions against the age threshold, one line per
    run (solid: against the labels; dotted: against the rendered ages, when known), with the
    rate promised; beside it, the share of faces left uncertain.

    Args:
      by_run: {label: {threshold: {"labels", "rendered"?, "uncertain"}}} (a decisions sweep).
    """
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharex=True)
    for i, (label, sweep) in enumerate(by_run.items()):
        t = [float(k) for k in sweep]
        color = f"C{i % 10}"
        axes[0].plot(t, [v["labels"] for v in sweep.values()], "-o", color=color, ms=3,
                     label=f"{label} (labels)")
        if all("rendered" in v for v in sweep.values()):
            axes[0].plot(t, [v["rendered"] for v in sweep.values()], ":", color=color,
                         label=f"{label} (rendered ages)")
        axes[1].plot(t, [v["uncertain"] for v in sweep.values()], "-o", color=color, ms=3,
                     label=label)
    axes[0].axhline(error, color="k", lw=1, ls="--", label=f"promised: {error:.0%}")
    axes[0].set_ylabel("false-over rate (faces under T called over)")
    axes[0].set_title("Decisions at age thresholds: the error promised and met")
    axes[1].set_ylabel("share of faces left uncertain")
    axes[1].set_title("What the promise costs")
    axes[1].set_ylim(0, 1)
    for ax in axes:
        ax.set_xlabel("threshold T (years)")
    axes[0].legend(fontsize=7, loc="upper right")
    save_figure(fig, path)


def plot_risk_coverage(by_run: dict[str, dict], path: str) -> None:
    """MAE of the faces answered against the share answered (narrowest intervals first), one
    line per run: falling to the left means the intervals know which faces are hard.

    Args:
      by_run: {label: {"answered", "mae_years", "rendered_mae_years"?}}.
    """
    rendered = all("rendered_mae_years" in v for v in by_run.values())
    fig, axes = plt.subplots(1, 2 if rendered else 1, figsize=(13 if rendered else 7, 4.5),
                             squeeze=False)
    for i, (label, rc) in enumerate(by_run.items()):
        for ax, key in zip(axes[0], ("mae_years", "rendered_mae_years")):
            ax.plot(rc["answered"], rc[key], "-o", ms=3, color=f"C{i % 10}", label=label)
            ax.axhline(rc[key][-1], color=f"C{i % 10}", lw=0.6, ls=":")
    for ax, what in zip(axes[0], ("labels", "rendered ages")):
        ax.set_xlabel("share of faces answered (narrowest intervals first)")
        ax.set_ylabel(f"MAE of the answered faces vs {what} (years)")
        ax.set_title(f"Risk against coverage ({what}; dotted: answering all)")
    axes[0][0].legend(fontsize=7, loc="best")
    save_figure(fig, path)
