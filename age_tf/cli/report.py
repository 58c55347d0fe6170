"""age-tf-report: report.md with Table 2 (from evaluated runs), Table 1 and the figures.

Example:
  age-tf-report --runs=runs/demo/mobilenet_v2_head,runs/demo/mobilenet_v2_full --out=runs/demo/report.md
"""

from __future__ import annotations

from absl import flags

from age_tf import report
from age_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_list("runs", None, "Evaluated run directories, one Table 2 row each.")
flags.DEFINE_string("out", None, "Where to write report.md.")
flags.DEFINE_string("data_dir", None, "Prepared data (adds the age-distribution figure).")
flags.mark_flags_as_required(["runs", "out"])


def main(argv):
    common.no_positional_args(argv)
    report.write_report(FLAGS.runs, FLAGS.out, FLAGS.data_dir)
    print(report.table2_markdown(report.table2_rows(FLAGS.runs)))
    print(f"wrote {FLAGS.out}")


def run():
    common.run(main)


if __name__ == "__main__":
    run()
