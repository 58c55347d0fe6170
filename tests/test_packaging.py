"""The declared dependency bounds cannot install a combination that breaks the package."""

import configparser
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _lower_bounds():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    bounds = {}
    for line in cfg["options"]["install_requires"].splitlines():
        line = line.split("#")[0].strip()
        m = re.match(r"([A-Za-z0-9_.-]+)\s*(?:>=\s*([0-9.]+))?", line)
        if m and line:
            bounds[m.group(1).lower()] = tuple(int(x) for x in m.group(2).split(".")) if m.group(2) else None
    return bounds


def test_numpy_bound_covers_what_the_code_uses():
    # np.bitwise_count (dedup, audit) appeared in NumPy 2.0.
    uses = any("np.bitwise_count" in open(os.path.join(d, f)).read()
               for d, _, files in os.walk(os.path.join(ROOT, "age_tf")) for f in files if f.endswith(".py"))
    assert uses
    assert (_lower_bounds()["numpy"] or (0,)) >= (2, 0)


def test_tensorflow_bound_admits_no_release_pinned_below_numpy_2():
    # TensorFlow 2.16 and 2.17 require numpy < 2; 2.18 is the first built against NumPy 2.
    assert (_lower_bounds()["tensorflow"] or (0,)) >= (2, 18)
