"""Fingerprints of an experiment's results, to show a change left them bit for bit alone.

  python tools/demo_fingerprints.py runs/demo > before.txt   # on the old code's output
  python tools/demo_fingerprints.py runs/demo2 | diff before.txt -

Each line is a SHA-256 (first 16 hex digits) of one result: the prepared manifests, every
run's test predictions and selected weights' export-free numbers (history.csv), the audit's
ranking, Table 3's rows and the report's Table 2 lines. Paths and timings are left out.
"""

import glob
import hashlib
import json
import os
import sys


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _file(path: str) -> str:
    with open(path, "rb") as f:
        return _digest(f.read())


def _history(path: str) -> str:
    """history.csv without its timing columns (images per second differ from run to run)."""
    import pandas as pd

    df = pd.read_csv(path)
    keep = [c for c in df.columns if "second" not in c and c != "seconds"]
    return _digest(df[keep].to_csv(index=False).encode())


def fingerprints(out_dir: str) -> dict[str, str]:
    found = {}
    for split in ("train", "val", "test"):
        found[f"data/{split}.csv"] = _file(os.path.join(out_dir, "data", f"{split}.csv"))
    for run in sorted(glob.glob(os.path.join(out_dir, "runs", "*"))):
        name = os.path.basename(run)
        for rel, fn in (("eval/predictions.csv", _file), ("history.csv", _history),
                        ("intervals.json", _file)):
            path = os.path.join(run, rel)
            if os.path.exists(path):
                found[f"{name}/{rel}"] = fn(path)
        for path in sorted(glob.glob(os.path.join(run, "audit", "*.csv"))):
            found[f"{name}/audit/{os.path.basename(path)}"] = _file(path)
    table3 = os.path.join(out_dir, "table3.json")
    if os.path.exists(table3):
        with open(table3) as f:
            found["table3.json rows"] = _digest(json.dumps(json.load(f)["rows"], sort_keys=True).encode())
    with open(os.path.join(out_dir, "report.md")) as f:
        rows = [line for line in f if line.startswith("| ")]
    found["report.md table rows"] = _digest("".join(rows).encode())
    return found


if __name__ == "__main__":
    for key, value in fingerprints(sys.argv[1]).items():
        print(f"{value}  {key}")
