"""age-tf-report: report.md (Tables 1 and 2, every figure) from evaluated runs.

Example:
  age-tf-report --runs=runs/demo/runs/mobilenet_v2_head,runs/demo/runs/mobilenet_v2_full \
      --out=report.md --data_dir=runs/demo/data
"""

from age_tf import config
from age_tf.cli import common
from age_tf.evaluate import report

CONFIG, EXCLUDE = report.ReportConfig, ()
SPECS = config.define_flags(CONFIG, required=("runs", "out"))


def main(argv):
    common.no_positional_args(argv)
    cfg = config.from_flags(report.ReportConfig)
    report.write_report(list(cfg.runs), cfg.out, cfg.data_dir)
    print(report.table2_markdown(report.table2_rows(list(cfg.runs))) + f"wrote {cfg.out}")


def run():
    common.run(main)


if __name__ == "__main__":
    run()
