"""Figures shared by the command-line tools (matplotlib, headless)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # Headless: tools run on servers and in CI.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_figure(fig, path: str) -> None:
    """Saves via a temporary name, then renames, so a crash never leaves half a PNG."""
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def plot_age_distribution(ages_by_split: dict[str, np.ndarray], path: str) -> None:
    """The study's Figure 3: the share of images per age, one line per subset.

    Shares rather than counts, so subsets of different sizes can be compared directly.
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [2, 1]})
    bins = np.arange(0, 102, 2)
    colors = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}
    for name, ages in ages_by_split.items():
        ages = np.asarray(ages)
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
