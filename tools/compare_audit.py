"""The label audit side by side with cleanlab and a plain cross-validated ridge residual, on
the same backbone features and the same identity folds, against a synthetic set's truth.

Run by hand (not part of the test suite; cleanlab is optional: `pip install -e .[compare]`):
  python tools/compare_audit.py --model_dir=runs/demo/runs/mobilenet_v2_head \\
      --data_dir=runs/demo/data --truth_csv=runs/demo/raw/ground_truth.csv
  # what age-tf-clean acts on (train + val only):
  python tools/compare_audit.py ... --splits=train,val

A planted mislabel is a row whose label is --mislabel_years or more from the rendered age.
Each method ranks every image; precision@k is the share of planted mislabels among its top
k (k = their number included), AP the average precision of the whole ranking. Times are
each method's own, features excluded (computed once, shared), one fold seed per line.
"""

from __future__ import annotations

import time

import numpy as np
from absl import app, flags

from age_tf.evaluate import audit, ground_truth

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A finished head-mode run (its backbone's features).",
                    required=True)
flags.DEFINE_string("data_dir", None, "Its prepared data.", required=True)
flags.DEFINE_string("truth_csv", None, "The synthetic set's ground_truth.csv.", required=True)
flags.DEFINE_list("splits", list(audit.SPLITS), "Splits to audit.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Fold seeds.")
flags.DEFINE_integer("folds", 5, "Identity folds.")
flags.DEFINE_float("mislabel_years", 20.0, "A label this far from the rendered age is wrong.")


def ranking_figures(score: np.ndarray, wrong: np.ndarray) -> dict:
    order = np.argsort(-score, kind="stable")
    hits = wrong[order]
    n = int(wrong.sum())
    ks = sorted({10, 25, 50, 100, n})
    out = {f"P@{k}": float(hits[:k].mean()) for k in ks if k <= len(hits)}
    out["AP"] = float(np.mean([hits[:i + 1].mean() for i in np.flatnonzero(hits)]))
    return out


def plain_ridge(x, y, groups, seed):
    return np.abs(audit.out_of_fold_predictions(x, y, groups, FLAGS.folds, seed=seed) - y)


def project(x, y, groups, seed):
    pred, scale, _ = audit.robust_heldout(x, y, groups, FLAGS.folds, seed)
    return np.abs(pred - y) / scale


def cleanlab_clean_learning(x, y, groups, seed, identity_folds=True):
    """cleanlab's CleanLearning around sklearn's Ridge(alpha=1.0), its folds replaced by
    this project's identity folds (cleanlab's own KFold would put a person in two folds)."""
    from cleanlab.regression import learn
    from sklearn.linear_model import Ridge

    if not identity_folds:
        cl = learn.CleanLearning(Ridge(alpha=1.0), cv_n_folds=FLAGS.folds, seed=seed)
        return 1.0 - cl.find_label_issues(x, y)["label_quality"].to_numpy()

    class IdentityFolds:
        def __init__(self, n_splits, shuffle=True, random_state=None):
            self.n_splits, self.random_state = n_splits, random_state

        def split(self, rows):
            fold = audit.fold_assignment(groups[np.asarray(rows)], self.n_splits, seed)
            for k in range(self.n_splits):
                yield np.flatnonzero(fold != k), np.flatnonzero(fold == k)

    original, learn.KFold = learn.KFold, IdentityFolds
    try:
        cl = learn.CleanLearning(Ridge(alpha=1.0), cv_n_folds=FLAGS.folds, seed=seed)
        issues = cl.find_label_issues(x, y)
    finally:
        learn.KFold = original
    return 1.0 - issues["label_quality"].to_numpy()


def cleanlab_scores_of_one_pass(x, y, groups, seed):
    """cleanlab's label-quality score on the plain held-out predictions (its scoring only)."""
    from cleanlab.regression.rank import get_label_quality_scores

    pred = audit.out_of_fold_predictions(x, y, groups, FLAGS.folds, seed=seed)
    return 1.0 - get_label_quality_scores(y, pred)


METHODS = {"plain cross-validated ridge residual (one pass)": plain_ridge,
           "age-tf-audit (refit without suspects, local scale)": project,
           "cleanlab CleanLearning(Ridge(alpha=1.0)), identity folds": cleanlab_clean_learning,
           "cleanlab CleanLearning(Ridge(alpha=1.0)), its own folds (a person in several)":
               lambda x, y, groups, seed: cleanlab_clean_learning(x, y, groups, seed, False),
           "cleanlab get_label_quality_scores on the one-pass predictions":
               cleanlab_scores_of_one_pass}


def main(argv):
    del argv
    feats, manifest, _ = audit.backbone_features(FLAGS.model_dir, FLAGS.data_dir,
                                                 tuple(FLAGS.splits))
    truth = ground_truth.for_rows(FLAGS.truth_csv, manifest, ("label_age", "rendered_age"))
    wrong = (truth["label_age"] - truth["rendered_age"]).abs().to_numpy() >= FLAGS.mislabel_years
    y, groups = manifest["age"].to_numpy(float), manifest["identity"].to_numpy()
    print(f"{len(y)} images, {manifest['identity'].nunique()} people, {int(wrong.sum())} "
          f"planted mislabels; splits {','.join(FLAGS.splits)}\n")
    header = None
    for name, method in METHODS.items():
        for seed in map(int, FLAGS.seeds):
            start = time.monotonic()
            try:
                score = method(feats, y, groups, seed)
            except ImportError:
                print(f"| {name} | (cleanlab not installed) |")
                break
            seconds = time.monotonic() - start
            figures = ranking_figures(score, wrong)
            if header is None:
                header = list(figures)
                print("| method | fold seed | " + " | ".join(header) + " | seconds |")
                print("|---|---|" + "---|" * len(header) + "---|")
            print(f"| {name} | {seed} | " + " | ".join(f"{figures[k]:.3f}" for k in header)
                  + f" | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    app.run(main)
