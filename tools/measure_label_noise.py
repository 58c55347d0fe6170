"""Lower bounds on the share of wrong ages in real IMDB-WIKI metadata (e.g. wiki.mat).

Run by hand:
  python tools/measure_label_noise.py --mat=../shared/data/imdb-wiki/wiki.mat

No published share of wrong IMDB-WIKI ages is known to us. What the metadata alone can
prove is a floor: an age computed from dob and photo_taken that is impossible (negative:
the photo predates the birth; over 100) is certainly wrong, and ages of 90-100 are so rare
among photographed people that most of them are date errors too. Errors that land on a
plausible age are invisible here, so the true rate is higher than any of these figures.
Printed for all rows and for the rows that pass prepare's face filters (one face,
face_score >= 3), which is what training sees.
"""

from __future__ import annotations

import numpy as np
from absl import app, flags

from age_tf.data import metadata

FLAGS = flags.FLAGS
flags.DEFINE_string("mat", "../shared/data/imdb-wiki/wiki.mat", "imdb.mat or wiki.mat.")
flags.DEFINE_float("min_face_score", 3.0, "prepare's face filter.")


def main(_):
    df = metadata.load_metadata(FLAGS.mat)
    score, second = df["face_score"].to_numpy(), df["second_face_score"].to_numpy()
    faces = np.isfinite(score) & np.isnan(second) & (score >= FLAGS.min_face_score)
    age = df["age"].to_numpy(float)
    print(f"{FLAGS.mat}: {len(df):,} rows, {faces.sum():,} pass the face filters")
    print("| rows | n | age < 0 | age > 100 | impossible (either) | 90 < age <= 100 |")
    print("|---|---|---|---|---|---|")
    for name, m in (("all", np.ones(len(df), bool)), ("after face filters", faces)):
        a = age[m]
        neg, old, very = (a < 0).mean(), (a > 100).mean(), ((a > 90) & (a <= 100)).mean()
        print(f"| {name} | {m.sum():,} | {neg:.2%} | {old:.2%} | {neg + old:.2%} | {very:.2%} |")


if __name__ == "__main__":
    app.run(main)
