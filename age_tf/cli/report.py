r"""age-tf-report: report.md (Tables 1 and 2, every figure) from evaluated runs.

Example:
  age-tf-report --runs=runs/demo/runs/mobilenet_v2_head,runs/demo/runs/mobilenet_v2_full \
      --out=report.md --data_dir=runs/demo/data
"""

from age_tf.cli import common
from age_tf.evaluate.evaluate_config import ReportConfig

COMMAND = common.Command(__name__, ReportConfig, required=("runs", "out"))


def main(cfg, args):
    from age_tf.evaluate import baselines, report  # TensorFlow: for the work, not --help

    base = baselines.read(cfg.baselines) if cfg.baselines else None
    report.write_report(list(cfg.runs), cfg.out, cfg.data_dir, baseline_results=base)
    rows = report.table2_rows(list(cfg.runs))
    return (report.table2_markdown(rows, baselines.table_rows(base) if base else None)
            + f"wrote {cfg.out}")


run = COMMAND.entry_point(main)
