"""IMDB-WIKI's labels against IMDB-Clean's: how noisy the release is, and how well the audit
finds the ages IMDB-Clean changed.

IMDB-Clean re-annotated IMDB-WIKI's IMDb photos; its `filename` is the path of the same photo
in the release (the crops keep the full photos' relative paths). Joined by that path, each
image has two labels: the release's (photo_taken - dob) and the cleaned one.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from age_tf.data import sources
from age_tf.data.metadata import load_metadata
from age_tf.errors import DataError
from age_tf.evaluate import audit

CHANGE_YEARS = (5, 10)


def join_labels(mat: str, clean_dir: str) -> pd.DataFrame:
    """One row per IMDB-Clean face whose photo imdb.mat lists with a valid age: path,
    imdb_wiki_age, clean_age, change (clean - imdb_wiki), official_split.

    Raises:
      DataError: no path is common to the two (not the same release's files).
    """
    wiki = load_metadata(mat)
    wiki = wiki[wiki["age"].notna()][["full_path", "age"]].drop_duplicates("full_path")
    clean = sources.imdb_clean.read(clean_dir, "").table
    clean = clean[clean["problem"] == ""][["full_path", "age", "official_split"]]
    joined = clean.merge(wiki, on="full_path", suffixes=("_clean", "_wiki"))
    if joined.empty:
        raise DataError(f"{clean_dir}: no filename of its CSVs is a full_path of {mat}; are they "
                        "IMDB-Clean's CSVs for this imdb.mat?")
    out = pd.DataFrame({"path": joined["full_path"], "imdb_wiki_age": joined["age_wiki"].astype(float),
                        "clean_age": joined["age_clean"].astype(float),
                        "official_split": joined["official_split"]})
    out["change"] = out["clean_age"] - out["imdb_wiki_age"]
    return out.reset_index(drop=True)


def noise(joined: pd.DataFrame) -> dict:
    """Shares of IMDB-WIKI ages that IMDB-Clean moved by 5+ and 10+ years."""
    change = joined["change"].abs().to_numpy()
    return {"images": len(joined),
            **{f"changed_{y}_plus": float((change >= y).mean()) for y in CHANGE_YEARS},
            "mean_abs_change_years": float(change.mean()),
            "median_abs_change_years": float(np.median(change))}


def audit_precision(joined: pd.DataFrame, suspects_csv: str, years: float = 10.0) -> dict:
    """precision@k of an audit's ranking (suspected_mislabels.csv) against IMDB-Clean: a
    suspect is right when IMDB-Clean changed its age by `years` or more.

    Only the audited images IMDB-Clean also labels are ranked (in the audit's order).
    """
    if not os.path.exists(suspects_csv):
        raise DataError(f"{suspects_csv}: not found; run age-tf-audit first (it writes "
                        "suspected_mislabels.csv in <model_dir>/audit/)")
    suspects = pd.read_csv(suspects_csv, usecols=["path", "age", "suspicion"], dtype={"path": str})
    ranked = suspects.merge(joined, on="path", how="inner")  # keeps the audit's order
    if ranked.empty:
        raise DataError(f"{suspects_csv}: none of its images is in IMDB-Clean")
    wrong = (ranked["change"].abs() >= years).to_numpy()
    n_wrong = int(wrong.sum())
    ks = sorted({10, 25, 50, 100, n_wrong} - {0})
    return {"audited_images_in_imdb_clean": len(ranked), "changed_by_years": years,
            "changed": n_wrong, "prevalence": float(wrong.mean()),
            "precision_at_k": audit.precision_at_k(wrong, ks)}
