"""Tests for age_tf.config: flags generated from the config dataclasses, shipped configs,
flagfile includes, and that no command's flags drift from its dataclass."""

import dataclasses
import json
import os
import subprocess
import sys
import zipfile

import pytest
from absl import flags

from age_tf import config
from age_tf.data import pipeline
from age_tf.train import models, standin_weights, train_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _console_scripts() -> dict[str, str]:
    """Every console script of setup.cfg: {"age-tf-train": "train", ...}."""
    import configparser

    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    lines = parser["options.entry_points"]["console_scripts"].strip().splitlines()
    pairs = [line.split("=") for line in lines]
    return {name.strip(): target.split(":")[0].strip().rsplit(".", 1)[-1]
            for name, target in pairs}


COMMANDS = sorted(_console_scripts().values())

# Run in a fresh interpreter: each command defines its flags on the global FLAGS at import,
# and several share names (--seed), so they cannot all be imported into one process.
_DUMP = r"""
import importlib, json, sys, warnings
from absl import flags
from age_tf import config
out = {}
for name in sys.argv[1:]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mod = importlib.import_module(f"age_tf.cli.{name}")
    command = mod.COMMAND
    key = mod.__name__
    got = {f.name: {"default": f.default, "help": f.help}
           for f in flags.FLAGS.get_flags_for_module(key)}
    want = {s.name: {"default": None if s.name in command.required else
                     list(map(str, s.default)) if s.kind.endswith("list") and s.default is not None
                     else s.default, "help": s.help}
            for s in config.flag_specs(command.config_class, command.exclude)}
    out[name] = {"got": got, "want": want, "required": list(command.required),
                 "help": command.help_text(f"age-tf-{name}"),
                 "warnings": [str(w.message) for w in caught]}
    for f in list(got):
        delattr(flags.FLAGS, f)
print(json.dumps(out, default=str))
"""


@pytest.fixture(scope="module")
def command_dump():
    r = subprocess.run([sys.executable, "-c", _DUMP, *COMMANDS], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.integration
def test_every_command_has_exactly_its_dataclass_fields_as_flags(command_dump):
    dump = command_dump
    for name in COMMANDS:
        got, want = dump[name]["got"], dump[name]["want"]
        assert set(got) == set(want), (name, set(got) ^ set(want))
        for flag in want:
            assert got[flag]["default"] == want[flag]["default"], (name, flag, got[flag], want[flag])
            # absl prefixes an enum's help with its choices.
            assert got[flag]["help"].endswith(want[flag]["help"]), (name, flag, got[flag], want[flag])
            assert want[flag]["help"], (name, flag, "has no help")


def test_library_defaults_are_the_command_line_defaults():
    # The two that used to differ: exact resume and synchronized BatchNorm by default.
    assert pipeline.PipelineConfig().deterministic is True
    assert models.ModelConfig().sync_batchnorm is True
    for spec in config.flag_specs(train_config.TrainConfig):
        obj = train_config.TrainConfig()
        for path in spec.paths:
            value = obj
            for part in path:
                value = getattr(value, part)
            assert value == spec.default, (path, value, spec.default)


def test_nested_fields_become_flags_each_with_one_owner():
    spec = {s.name: s for s in config.flag_specs(train_config.TrainConfig)}
    assert spec["image_size"].paths == (("model", "image_size"),)
    assert spec["seed"].paths == (("seed",),) and spec["cache"].paths == (("pipeline", "cache"),)
    fv = flags.FlagValues()
    config.define_flags(train_config.TrainConfig, flag_values=fv)
    fv(["prog", "--image_size=48", "--seed=7", "--head_units=64,8", "--nodeterministic"])
    cfg = config.from_flags(train_config.TrainConfig, flag_values=fv)
    assert cfg.model.image_size == 48 and cfg.seed == 7
    assert cfg.model.head_units == (64, 8) and cfg.pipeline.deterministic is False


def test_a_value_with_two_homes_is_refused():
    @dataclasses.dataclass
    class Inner:
        size: int = config.field(1, "inner size")

    @dataclasses.dataclass
    class Outer:
        size: int = config.field(1, "outer size")
        inner: Inner = config.field(default_factory=Inner)

    with pytest.raises(ValueError, match="--size would set both size and inner.size"):
        config.flag_specs(Outer)


def test_bad_list_value_names_the_flag():
    fv = flags.FlagValues()
    config.define_flags(train_config.TrainConfig, flag_values=fv)
    fv(["prog", "--head_units=64,x"])
    with pytest.raises(ValueError, match="--head_units takes a comma-separated list of ints"):
        config.from_flags(train_config.TrainConfig, flag_values=fv)


def test_configs_by_name_and_by_path_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # includes must not depend on the current folder
    by_name = config.expand_flagfiles(["prog", "--config=demo", "--epochs=2"])
    by_path = config.expand_flagfiles(["prog", f"--flagfile={config.CONFIGS_DIR}/demo.cfg",
                                       "--epochs=2"])
    assert by_name == by_path
    assert "--image_size=256" in by_name and "--image_size=64" in by_name  # base, then demo
    assert by_name.index("--image_size=256") < by_name.index("--image_size=64")
    assert by_name[-1] == "--epochs=2"  # the command line still overrides


def test_user_flagfile_includes_relative_to_itself(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "mine.cfg").write_text("# mine\n--flagfile=more.cfg\n--epochs=3\n")
    (tmp_path / "a" / "more.cfg").write_text("--config=demo\n--batch_size=8\n")
    monkeypatch.chdir(tmp_path)
    argv = config.expand_flagfiles(["prog", "--flagfile=a/mine.cfg"])
    assert argv[-2:] == ["--batch_size=8", "--epochs=3"]  # in include order
    assert "--image_size=64" in argv
    (tmp_path / "a" / "loop.cfg").write_text("--flagfile=loop.cfg\n")
    with pytest.raises(ValueError, match="includes itself"):
        config.expand_flagfiles(["prog", "--flagfile=a/loop.cfg"])
    with pytest.raises(ValueError, match="not a shipped config \\(shipped: base, benchmark, benchmark_demo, demo"):
        config.expand_flagfiles(["prog", "--config=nope"])


def test_run_configs_derive_from_the_base_without_touching_global_flags():
    from age_tf import experiment

    base = train_config.TrainConfig(learning_rate=0.5, epochs=2)
    cfg = experiment.ExperimentConfig(out_dir="/x", train=base)
    run = experiment.run_config(cfg, "efficientnet_b3_full")
    assert (run.model.backbone, run.model.tune, run.learning_rate) == ("efficientnet_b3", "full", 1e-4)
    assert run.model.freeze_batchnorm and not base.model.freeze_batchnorm
    assert run.epochs == 2  # the base's (command line's), not base.cfg's 30
    assert run.model_dir == "/x/runs/efficientnet_b3_full" and run.data_dir == "/x/data"
    assert "learning_rate" not in flags.FLAGS  # nothing was defined globally
    with pytest.raises(ValueError, match="Unknown command line flag 'nope'"):
        config.apply_flag_lines(base, ["--nope=1"])


def test_full_runs_start_from_their_backbones_head_run():
    from age_tf import experiment

    base = train_config.TrainConfig(epochs=6)
    cfg = experiment.ExperimentConfig(out_dir="/x", train=base,
                                      runs=("mobilenet_v2_head", "mobilenet_v2_full"))
    runs = experiment.run_configs(cfg)
    assert runs["mobilenet_v2_head"].init_from is None and runs["mobilenet_v2_head"].epochs == 6
    full = runs["mobilenet_v2_full"]
    assert cfg.full_from_head_epochs == 2  # the default (the demo's time budget)
    assert (full.init_from, full.epochs) == ("/x/runs/mobilenet_v2_head", 2)
    assert "--init_from=/x/runs/mobilenet_v2_head" in full.flags_text  # flags.txt says so
    cfg.full_from_head_epochs = 0  # the study: a random head, --epochs
    assert (experiment.run_configs(cfg)["mobilenet_v2_full"].init_from,
            experiment.run_configs(cfg)["mobilenet_v2_full"].epochs) == (None, 6)
    cfg.full_from_head_epochs = 3
    cfg.runs = ("mobilenet_v2_head", "efficientnet_b3_full")  # another backbone's head
    with pytest.raises(ValueError, match="efficientnet_b3_full has no head-only efficientnet_b3 run"):
        cfg.validate()
    cfg.runs = ("mobilenet_v2_full", "mobilenet_v2_head")  # the head run must come first
    with pytest.raises(ValueError, match="--full_from_head_epochs=3: run mobilenet_v2_full"):
        experiment.run_configs(cfg)


@pytest.mark.integration
def test_the_wheel_ships_the_configs_and_standin_weights(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-w", str(tmp_path), ROOT], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next(p for p in os.listdir(tmp_path) if p.endswith(".whl"))
    names = zipfile.ZipFile(tmp_path / wheel).namelist()
    shipped = sorted(n.split("/")[-1] for n in names if n.startswith("age_tf/configs/"))
    assert shipped == sorted(os.listdir(config.CONFIGS_DIR))
    data = lambda name: name.endswith((".npz", ".json"))  # noqa: E731
    weights = sorted(n.split("/")[-1] for n in names if n.startswith("age_tf/standin/") and data(n))
    assert weights == sorted(filter(data, os.listdir(standin_weights.STANDIN_DIR))) and weights


# Hostile-input items 3 and 12: every numeric flag finite and in its field's range, named.
@pytest.mark.parametrize("field, value, message", [
    ("learning_rate", float("nan"), "--learning_rate=nan: must be a finite number"),
    ("learning_rate", float("inf"), "--learning_rate=inf: must be a finite number"),
    ("learning_rate", 0.0, "--learning_rate=0.0: must be > 0"),
    ("steps_per_epoch", -5, "--steps_per_epoch=-5: must be >= 0"),
    ("min_lr_ratio", -2.0, r"--min_lr_ratio=-2.0: must be in \[0, 1\]"),
    ("warmup_epochs", float("nan"), "--warmup_epochs=nan"),
    ("early_stopping_patience", -1, "--early_stopping_patience=-1: must be >= 0"),
    ("interval_coverage", 1.0, r"--interval_coverage=1.0: must be in \(0, 1\)"),
])
def test_bad_numbers_are_refused_naming_the_flag(field, value, message):
    cfg = dataclasses.replace(train_config.TrainConfig(data_dir="d", model_dir="m"),
                              **{field: value})
    with pytest.raises(ValueError, match=message):
        config.check_values(cfg)


def test_nested_and_list_values_are_checked_too():
    cfg = train_config.TrainConfig(data_dir="d", model_dir="m",
                                   model=models.ModelConfig(head_units=(512, 0)))
    with pytest.raises(ValueError, match="--head_units=512,0: must be >= 1"):
        config.check_values(cfg)
    cfg = train_config.TrainConfig(pipeline=pipeline.PipelineConfig(batch_size=0))
    with pytest.raises(ValueError, match="--batch_size=0"):
        config.check_values(cfg)


def test_every_command_checks_its_numbers_when_flags_are_read():
    from age_tf.serve import predict

    fv = flags.FlagValues()
    config.define_flags(predict.PredictConfig, flag_values=fv)
    for argv, message in ((["--min_confidence=1.5"], r"--min_confidence=1.5: must be in \[0, 1\]"),
                          (["--face_margin=-0.6"], "--face_margin=-0.6: must be >= 0"),
                          (["--min_face_size=0"], "--min_face_size=0: must be >= 12"),
                          (["--batch_size=0"], "--batch_size=0: must be >= 1")):
        fv.unparse_flags()
        fv(["predict", "--model=m", *argv])
        with pytest.raises(ValueError, match=message):
            config.from_flags(predict.PredictConfig, flag_values=fv)


def test_an_unwritable_cache_folder_is_named():
    with pytest.raises(ValueError, match="--cache='/proc/nope/x'"):
        pipeline.PipelineConfig(cache="/proc/nope/x").validate()


@pytest.mark.integration
def test_every_commands_help_lists_its_flags_with_their_help(command_dump):
    assert len(COMMANDS) >= 13 and "cross_dataset" in COMMANDS
    for name in COMMANDS:
        text, want = command_dump[name]["help"], command_dump[name]["want"]
        assert text.startswith(f"age-tf-{name.replace('_', '-')}:"), (name, text[:80])
        for flag in command_dump[name]["required"]:
            assert f"--{flag}: (required)" in text, (name, flag)
        for flag, spec in want.items():  # every flag, with (the start of) its help
            assert f"  --{flag}" in text, (name, flag)
            assert " ".join(spec["help"].split())[:40] in " ".join(text.split()), (name, flag)
        assert "--config" in text and "--verbosity" in text


@pytest.mark.integration
def test_defining_the_flags_warns_of_nothing(command_dump):
    # A required flag with a default made absl warn ("mark_flag_as_required will pass even if
    # flag is not specified") at every start of age-tf-cross-dataset.
    for name in COMMANDS:
        assert command_dump[name]["warnings"] == [], (name, command_dump[name]["warnings"])


@pytest.mark.parametrize("arg", ["--help", "--helpshort", "-h"])
def test_the_console_script_prints_its_help(arg):
    # prepare never imports TensorFlow: the real entry point, in a second.
    r = subprocess.run([sys.executable, "-m", "age_tf.cli.prepare", arg], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stderr == ""
    assert "--out_dir: (required)" in r.stdout and "--format:" in r.stdout
    assert "PrepareConfig:" in r.stdout


def test_no_command_loads_tensorflow_for_its_help_or_a_flag_error():
    """Every command's module, help text and flag parsing need no TensorFlow or Keras (the
    flags come from the config dataclasses): `--help` answers in a second, not in 5-20."""
    import pkgutil

    import age_tf.cli as cli

    names = [m.name for m in pkgutil.iter_modules(cli.__path__) if m.name.replace("_", "-")
             in {e.removeprefix("age-tf-") for e in _console_scripts()}]
    assert len(names) == len(_console_scripts())
    script = ("import importlib, sys\n"
              "mod = importlib.import_module('age_tf.cli.' + sys.argv[1])\n"
              "assert 'USAGE' in mod.COMMAND.help_text('x')\n"
              "print(sorted(n for n in sys.modules if n.split('.')[0] in ('tensorflow', "
              "'keras'))[:3])\n")
    # One process per command (absl's flags are global), all at once.
    procs = [subprocess.Popen([sys.executable, "-c", script, name], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for name in names]
    for name, p in zip(names, procs):
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.strip() == "[]", (name, out, err[-1000:])
    for args in (["--helpfull"], ["--model=m", "--no_such_flag"], ["--batch_size=x"]):
        r = subprocess.run([sys.executable, "-X", "importtime", "-m", "age_tf.cli.predict",
                            *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
        imported = [line for line in r.stderr.splitlines() if line.startswith("import time:")]
        assert imported and not [line for line in imported
                                 if "tensorflow" in line or "keras" in line], args
        if args == ["--helpfull"]:  # absl's full help (it exits 1, as absl does)
            assert "--model" in r.stdout and "--flagfile" in r.stdout
        else:
            assert r.returncode != 0 and args[-1].split("=")[0].lstrip("-") in r.stderr


def _console_scripts() -> list[str]:
    import configparser

    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    lines = parser["options.entry_points"]["console_scripts"].strip().splitlines()
    return [line.split("=")[0].strip() for line in lines]
