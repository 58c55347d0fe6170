"""age-tf-report: report.md (Tables 1 and 2, every figure) from evaluated runs.

Example:
  age-tf-report --runs=runs/demo/runs/mobilenet_v2_head,runs/demo/runs/mobilenet_v2_full \
      --out=report.md --data_dir=runs/demo/data
"""

from age_tf import config
from age_tf.cli import common
from age_tf.evaluate import baselines, report

CONFIG, EXCLUDE = report.ReportConfig, ()
SPECS = config.define_flags(CONFIG, required=("runs", "out"))


def main(argv):
    common.no_positional_args(argv)
    cfg = config.from_flags(report.ReportConfig)
    cfg.validate()
    base = baselines.read(cfg.baselines) if cfg.baselines else None
    report.write_report(list(cfg.runs), cfg.out, cfg.data_dir, baseline_results=base)
    rows = report.table2_rows(list(cfg.runs))
    print(report.table2_markdown(rows, baselines.table_rows(base) if base else None) + f"wrote {cfg.out}")


def run():
    common.run(main)


if __name__ == "__main__":
    run()
