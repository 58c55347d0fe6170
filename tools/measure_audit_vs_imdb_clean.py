"""IMDB-WIKI's label noise as IMDB-Clean measures it, and the audit scored against it.

Run by hand, on the real files where they exist:
  python tools/measure_audit_vs_imdb_clean.py --mat=raw/imdb.mat \
      --clean_dir=imdb-clean/csvs --audit_dir=runs/study/runs/mobilenet_v2_head/audit

Joins each IMDB-Clean face to the same photo's row of imdb.mat, reports the share of the
release's ages IMDB-Clean changed by 5+ and 10+ years, and, with --audit_dir (an
age-tf-audit output on data prepared from that imdb.mat), the audit's precision@k against
"IMDB-Clean changed this age by --years or more". On a synthetic pair
(`age-tf-synth --format=imdb_clean` writes both) the cleaned ages are the rendered ones, so
the figure can be checked against the known truth.
"""

from __future__ import annotations

import json
import os

from absl import app, flags

from age_tf.evaluate import label_truth

FLAGS = flags.FLAGS
flags.DEFINE_string("mat", None, "imdb.mat of the IMDB-WIKI release.", required=True)
flags.DEFINE_string("clean_dir", None, "Folder of IMDB-Clean's imdb_{train,valid,test}_new.csv.",
                    required=True)
flags.DEFINE_string("audit_dir", None, "An age-tf-audit output folder (suspected_mislabels.csv).")
flags.DEFINE_float("years", 10.0, "A label IMDB-Clean moved this far counts as a mislabel.")


def main(_):
    joined = label_truth.join_labels(FLAGS.mat, FLAGS.clean_dir)
    result = {"noise": label_truth.noise(joined)}
    if FLAGS.audit_dir:
        result["audit"] = label_truth.audit_precision(
            joined, os.path.join(FLAGS.audit_dir, "suspected_mislabels.csv"), FLAGS.years)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    app.run(main)
