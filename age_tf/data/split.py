"""Age-stratified, identity-disjoint train/val/test split."""

from __future__ import annotations

import numpy as np

SPLIT_NAMES = ("train", "val", "test")
# Weight of the subset sizes against the per-bin counts in the greedy cost: without it,
# subset sizes drift by several percent on small datasets.
SIZE_WEIGHT = 4.0
# Width of the age bins the split balances. Five years keeps the tails (0-10, 80-100),
# where IMDB-WIKI has few images, from being split by chance alone.
AGE_BIN_YEARS = 5


def parse_fractions(text: str) -> tuple[float, float, float]:
    """Parses '0.6,0.2,0.2' into three fractions that sum to 1.

    Raises:
      ValueError: not three positive numbers summing to 1 (within 1e-6).
    """
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError as e:
        raise ValueError(f"--split must be three numbers like 0.6,0.2,0.2, got {text!r}") from e
    if len(parts) != 3 or any(p <= 0 for p in parts) or abs(sum(parts) - 1) > 1e-6:
        raise ValueError(
            f"--split must be three positive fractions summing to 1 (train,val,test), got {text!r}"
        )
    return parts  # type: ignore[return-value]


def age_bins(ages: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(ages, dtype=np.int64), 0, 100) // AGE_BIN_YEARS


def stratified_group_split(
    ages: np.ndarray,
    groups: np.ndarray,
    fractions: tuple[float, float, float],
    seed: int,
) -> np.ndarray:
    """Assigns every image to a split so that no group spans two splits.

    Greedy: groups go largest first (random order among equal sizes); each goes to the split
    where adding it least increases the squared distance to the target counts (fraction x
    total, per age bin, plus the subset sizes). Many small groups at the end fine-tune the balance.

    Args:
      ages: age per image (years).
      groups: hashable group key per image (identity); images of one group stay together.
      fractions: target share of train, val, test.
      seed: seeds the order among equal-sized groups.

    Returns:
      int array with 0 (train), 1 (val) or 2 (test) per image.
    """
    ages = np.asarray(ages)
    n = len(ages)
    bins = age_bins(ages)
    n_bins = 100 // AGE_BIN_YEARS + 1
    _, group_idx = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(group_idx.max()) + 1 if n else 0
    # counts[g, b]: images of group g in age bin b.
    counts = np.zeros((n_groups, n_bins), dtype=np.float64)
    np.add.at(counts, (group_idx, bins), 1)
    target = np.asarray(fractions, dtype=np.float64)[:, None] * counts.sum(axis=0)[None, :]
    current = np.zeros_like(target)
    target_size = target.sum(axis=1)
    current_size = np.zeros(3)

    rng = np.random.default_rng(seed)
    sizes = counts.sum(axis=1)
    order = np.lexsort((rng.permutation(n_groups), -sizes))
    assign_group = np.empty(n_groups, dtype=np.int64)
    for g in order:
        c = counts[g]
        nz = np.flatnonzero(c)
        # Change of sum_b (current - target)^2 for each split if the group were added there.
        delta = (2 * (current[:, nz] - target[:, nz]) * c[nz] + c[nz] ** 2).sum(axis=1)
        size = sizes[g]
        delta += SIZE_WEIGHT * (2 * (current_size - target_size) * size + size**2)
        s = int(np.argmin(delta))
        assign_group[g] = s
        current[s, nz] += c[nz]
        current_size[s] += size
    return assign_group[group_idx] if n else np.zeros(0, dtype=np.int64)
