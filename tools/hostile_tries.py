"""Hostile and careless tries against a checkout of age_tf: one per cause of issue 32.

  python tools/hostile_tries.py --code=/path/to/checkout --work=/tmp/tries_after
  git worktree add /tmp/before <commit> && python tools/hostile_tries.py --code=/tmp/before ...

Each try runs the checkout's own commands (`python -m age_tf.cli.*` with PYTHONPATH set to
it) in a new process, under a time limit, on releases, runs and exports that the same
checkout made, and prints one table row: what was tried, held or went badly, and what was
seen (exit code, seconds, the message's first line). Run it on the code before a fix and
after, and the two tables are the before/after of the issue. Memory-bound tries (many
photos, crowds) are tools/measure_photos.py and tools/measure_large_photos.py.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pandas as pd
from absl import app, flags

CODE = flags.DEFINE_string("code", None, "The checkout whose commands are tried.", required=True)
WORK = flags.DEFINE_string("work", None, "A new folder for the releases, runs and outputs.",
                           required=True)
TIMEOUT = flags.DEFINE_integer("timeout", 120, "Seconds before a try counts as hanging.")

ROWS: list[str] = []


def run(args: list[str], cwd: str | None = None, timeout: int | None = None):
    """(exit code, seconds, stdout, stderr) of one age_tf command of the checkout; exit code
    None when it hung past the time limit (it is killed)."""
    env = {**os.environ, "PYTHONPATH": os.path.abspath(CODE.value)}
    start = time.monotonic()
    try:
        r = subprocess.run([sys.executable, "-m", *args], cwd=cwd or WORK.value, env=env,
                           capture_output=True, text=True, timeout=timeout or TIMEOUT.value,
                           errors="replace", check=False)
        return r.returncode, time.monotonic() - start, r.stdout, r.stderr
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout or ""
        return None, time.monotonic() - start, out, "(killed: no end within the time limit)"


def said(stderr: str) -> str:
    """The message a user reads: the last non-empty stderr line that is not a log line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()
             and not ln.startswith(("I0", "W0", "WARNING: All log", "E0000"))]
    return (lines[-1] if lines else "")[:110].replace("|", "/")


def row(cause: str, what: str, held: bool, result) -> None:
    code, seconds, _, err = result
    line = (f"| {cause} | {what} | {'held' if held else 'WENT BADLY'} | "
            f"{'hung' if code is None else code} | {seconds:.0f} | {said(err)} |")
    ROWS.append(line)
    print(line, flush=True)


def setup(work: str) -> dict:
    """A synthetic UTKFace and IMDB-Clean release, a prepared IMDB-WIKI set, a tiny trained
    run and its TFLite export, all made by the checkout under test."""
    os.makedirs(work)
    p = {"work": work}
    for fmt in ("utkface", "imdb_clean", "imdb_wiki"):
        r = run(["age_tf.cli.synth", f"--format={fmt}", "--num_images=300", "--seed=4",
                 f"--out_dir={fmt}"], timeout=600)
        assert r[0] == 0, r[3][-2000:]
    p["utk"] = os.path.join(work, "utkface", "UTKFace")
    p["clean"] = os.path.join(work, "imdb_clean", "imdb-clean")
    p["photos"] = os.path.join(work, "imdb_clean", "imdb")
    r = run(["age_tf.cli.prepare", "--mat=imdb_wiki/imdb.mat", "--out_dir=data",
             "--sample_fraction=1"], timeout=600)
    assert r[0] == 0, r[3][-2000:]
    p["data"] = os.path.join(work, "data")
    r = run(["age_tf.cli.train", "--config=demo", "--data_dir=data", "--model_dir=run",
             "--image_size=32", "--epochs=1", "--steps_per_epoch=3", "--batch_size=16"],
            timeout=900)
    assert r[0] == 0, r[3][-2000:]
    p["run"] = os.path.join(work, "run")
    r = run(["age_tf.cli.export", "--model_dir=run", "--format=tflite", "--out=model.tflite"],
            timeout=600)
    assert r[0] == 0, r[3][-2000:]
    p["tflite"] = os.path.join(work, "model.tflite")
    test = pd.read_csv(os.path.join(p["data"], "test.csv"))
    report = json.loads(pathlib.Path(p["data"], "report.json").read_text())
    images = report["inputs"]["images_dir"]
    p["face"] = os.path.join(images, test["path"].iloc[0])
    return p


def copy(src: str, name: str) -> str:
    dst = os.path.join(WORK.value, name)
    shutil.copytree(src, dst, symlinks=True)
    return dst


def prepare(args: list[str], out: str):
    return run(["age_tf.cli.prepare", *args, f"--out_dir={out}"])


def listed(out: str, name: str) -> bool:
    """A file name in any manifest of a prepared folder."""
    return any(os.path.exists(os.path.join(out, f"{s}.csv")) and name in pathlib.Path(
        out, f"{s}.csv").read_text() for s in ("train", "val", "test"))


def rejected_with_reason(out: str, name: str) -> bool:
    path = os.path.join(out, "rejected.csv")
    return os.path.exists(path) and any(
        name in str(p) and str(r).strip() for p, r in pd.read_csv(path)[["path", "reason"]]
        .itertuples(index=False))


def tries(p: dict) -> None:
    w = WORK.value
    # 1. A link inside the release to a face outside it (a real photo: no duplicate of a
    # synthetic face, so only the link can keep it out).
    from matplotlib import cbook
    from PIL import Image

    outside = os.path.join(w, "outside_face.jpg")
    Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB").resize(
        (200, 200)).save(outside)
    utk = copy(p["utk"], "utk_link")
    os.symlink(outside, os.path.join(utk, "33_0_0_20170101000000000.jpg.chip.jpg"))
    r = prepare(["--format=utkface", f"--release_dir={utk}"], "prep_link")
    name = "33_0_0_20170101000000000"
    row("1", "release file linking to a face outside it", r[0] == 0 and not listed(
        os.path.join(w, "prep_link"), name) and rejected_with_reason(
        os.path.join(w, "prep_link"), name), r)
    # 2. A release file that is /dev/zero; a FIFO among predict's photos.
    utk = copy(p["utk"], "utk_zero")
    os.symlink("/dev/zero", os.path.join(utk, "34_0_0_20170101000000000.jpg.chip.jpg"))
    r = prepare(["--format=utkface", f"--release_dir={utk}"], "prep_zero")
    row("2", "release file linking to /dev/zero", r[0] == 0 and rejected_with_reason(
        os.path.join(w, "prep_zero"), "34_0_0"), r)
    fifo = os.path.join(w, "photo_fifo.jpg")
    os.mkfifo(fifo)
    r = run(["age_tf.cli.predict", f"--model={p['run']}", "--faces=given", p["face"], fifo],
            timeout=90)
    row("2", "age-tf-predict given a FIFO beside a good face", r[0] is not None and
        "years" in r[2] + r[3] and os.path.basename(p["face"]) in r[2], r)
    # 3. A name whose age is a superscript digit.
    utk = copy(p["utk"], "utk_sup")
    shutil.copy(p["face"], os.path.join(utk, "\u00b2_0_0_20170101000000000.jpg.chip.jpg"))
    r = prepare(["--format=utkface", f"--release_dir={utk}"], "prep_sup")
    row("3", "UTKFace name with age '\u00b2'", r[0] == 0 and rejected_with_reason(
        os.path.join(w, "prep_sup"), "\u00b2"), r)
    # 4. An empty validation split.
    data = copy(p["data"], "data_empty_val")
    with open(os.path.join(data, "val.csv")) as f:
        header = f.readline()
    with open(os.path.join(data, "val.csv"), "w") as f:
        f.write(header)
    r = run(["age_tf.cli.train", "--config=demo", f"--data_dir={data}", "--model_dir=run_ev",
             "--image_size=32", "--epochs=1", "--steps_per_epoch=2", "--batch_size=16"])
    row("4", "training with an empty val.csv", r[0] not in (0, None) and
        "Traceback" not in r[3] and "val.csv" in said(r[3]), r)
    # 5. A face box wholly outside its photo; 6. the age column twice.
    clean = copy(p["clean"], "clean_box")
    csv = os.path.join(clean, "imdb_train_new.csv")
    df = pd.read_csv(csv)
    df.loc[0, ["x_min", "y_min", "x_max", "y_max"]] = [-100, -100, -50, -50]
    df.to_csv(csv, index=False)
    off = df.loc[0, "filename"]
    r = prepare(["--format=imdb_clean", f"--release_dir={clean}", f"--images_dir={p['photos']}"],
                "prep_box")
    row("5", "IMDB-Clean box (-100,-100,-50,-50) off its photo", r[0] == 0 and not listed(
        os.path.join(w, "prep_box"), off), r)
    clean = copy(p["clean"], "clean_twice")
    csv = os.path.join(clean, "imdb_train_new.csv")
    df = pd.read_csv(csv)
    df.insert(2, "age_again", df["age"] + 30)
    df.to_csv(csv, index=False, header=[c if c != "age_again" else "age" for c in df.columns])
    r = prepare(["--format=imdb_clean", f"--release_dir={clean}", f"--images_dir={p['photos']}"],
                "prep_twice")
    row("6", "a release CSV with the column 'age' twice", r[0] not in (0, None) and
        "age" in said(r[3]), r)
    # 7. Without image checks, one path listed three times.
    clean = copy(p["clean"], "clean_thrice")
    csv = os.path.join(clean, "imdb_train_new.csv")
    df = pd.read_csv(csv)
    df = pd.concat([df, df.iloc[[0, 0]].assign(age=[21, 77])], ignore_index=True)
    df.to_csv(csv, index=False)
    r = prepare(["--format=imdb_clean", f"--release_dir={clean}", f"--images_dir={p['photos']}",
                 "--nocheck_images"], "prep_thrice")
    out = os.path.join(w, "prep_thrice")
    paths = pd.concat([pd.read_csv(os.path.join(out, f"{s}.csv")) for s in ("train", "val", "test")
                       if os.path.exists(os.path.join(out, f"{s}.csv"))])["path"] if r[0] == 0 else []
    row("7", "--nocheck_images with one path listed 3 times", r[0] == 0 and
        len(paths) and not pd.Series(paths).duplicated().any(), r)
    # 8. A run trained with a relative --data_dir, exported from another folder.
    r = run(["age_tf.cli.export", f"--model_dir={p['run']}", "--format=tflite",
             "--quantize=int8", f"--out={os.path.join(w, 'int8.tflite')}"], cwd="/")
    row("8", "int8 export of a run from another folder", r[0] == 0, r)
    # 9. An existing output replaced without a word.
    before = os.path.getmtime(p["tflite"])
    r = run(["age_tf.cli.export", "--model_dir=run", "--format=tflite", "--out=model.tflite"])
    row("9", "age-tf-export --out=an existing .tflite", r[0] not in (0, None) and
        os.path.getmtime(p["tflite"]) == before, r)
    # 10. A card with crop_margin -5.
    tfl = os.path.join(w, "card_bad.tflite")
    shutil.copy(p["tflite"], tfl)
    card = json.loads(pathlib.Path(p["tflite"] + ".json").read_text())
    card["preprocessing"]["crop_margin"] = -5
    pathlib.Path(tfl + ".json").write_text(json.dumps(card))
    r = run(["age_tf.cli.predict", f"--model={tfl}", "--faces=given", p["face"]])
    row("10", "model card with crop_margin -5", r[0] not in (0, None) and
        "crop_margin" in said(r[3]), r)
    # 11. A TFLite file cut to half; 4 KiB of flipped weight bytes.
    tfl = os.path.join(w, "half.tflite")
    data = pathlib.Path(p["tflite"]).read_bytes()
    pathlib.Path(tfl).write_bytes(data[: len(data) // 2])
    shutil.copy(p["tflite"] + ".json", tfl + ".json")
    r = run(["age_tf.cli.predict", f"--model={tfl}", "--faces=given", p["face"]])
    row("11", "TFLite file cut to half", r[0] not in (0, None, -11, 139) and "Traceback"
        not in r[3], r)
    tfl = os.path.join(w, "flipped.tflite")
    flipped = bytearray(data)
    mid = len(data) // 2
    flipped[mid:mid + 4096] = bytes(b ^ 0xFF for b in flipped[mid:mid + 4096])
    pathlib.Path(tfl).write_bytes(bytes(flipped))
    shutil.copy(p["tflite"] + ".json", tfl + ".json")
    r = run(["age_tf.cli.predict", f"--model={tfl}", "--faces=given", p["face"]])
    row("11", "TFLite file with 4 KiB of flipped weight bytes", r[0] not in (0, None), r)
    # 12. Intervals calibrated on 3 validation faces.
    data = copy(p["data"], "data_val3")
    val = pd.read_csv(os.path.join(data, "val.csv"))
    val.iloc[:3].to_csv(os.path.join(data, "val.csv"), index=False)
    r = run(["age_tf.cli.train", "--config=demo", f"--data_dir={data}", "--model_dir=run_val3",
             "--image_size=32", "--epochs=1", "--steps_per_epoch=2", "--batch_size=16"],
            timeout=600)
    r2 = run(["age_tf.cli.predict", "--model=run_val3", "--faces=given", p["face"]])
    row("12", "90% intervals from 3 validation faces", r[0] == 0 and r2[0] == 0 and
        "90%" not in r2[2] and "75%" in r2[2], r2)
    # 13. age-tf-cross-dataset given the same folder twice.
    r = run(["age_tf.cli.cross_dataset", f"--model_dirs={p['run']}",
             f"--data_dirs={p['data']},{p['data']}", f"--out={os.path.join(w, 'cross.md')}"])
    row("13", "age-tf-cross-dataset --data_dirs=A,A", r[0] not in (0, None) and r[1] < 60, r)
    # 17. ONNX export that onnxruntime runs.
    r = run(["age_tf.cli.export", "--model_dir=run", "--format=onnx", "--out=model.onnx"],
            timeout=600)
    ok = r[0] == 0
    if ok:
        try:
            import numpy as np
            import onnxruntime

            session = onnxruntime.InferenceSession(os.path.join(w, "model.onnx"))
            shape = [d if isinstance(d, int) else 1 for d in session.get_inputs()[0].shape]
            session.run(None, {session.get_inputs()[0].name: np.zeros(shape, np.float32)})
        except Exception as e:  # noqa: BLE001 (any failure of the runtime is the finding)
            ok, r = False, (r[0], r[1], r[2], f"onnxruntime: {e}")
    row("17", "ONNX export run by onnxruntime", ok, r)


def main(argv):
    del argv
    if os.path.exists(WORK.value):
        sys.exit(f"--work={WORK.value}: exists; give a new folder")
    start = time.monotonic()
    p = setup(os.path.abspath(WORK.value))
    print(f"setup {time.monotonic() - start:.0f} s; code: {os.path.abspath(CODE.value)}")
    print("| cause | try | outcome | exit | s | said |\n|---|---|---|---|---|---|")
    tries(p)
    bad = sum("WENT BADLY" in r for r in ROWS)
    print(f"{len(ROWS) - bad} of {len(ROWS)} held")


if __name__ == "__main__":
    app.run(main)
