"""Bad inputs fail at start-up with a ConfigError naming the field (never a raw ValueError traceback),
keys outside the schema fail wherever they come from, labels outside the classes are rejected, and
finite blow-ups stop a run like non-finite ones."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pcjax as pj
from pcjax.config import Config, check_schema, validate_config
from pcjax.experiment import run_experiment, to_dict

from conftest import tiny_config as tiny

ROOT = Path(__file__).resolve().parents[1]



def _refused(c: Config, tmp_path: Path, fragments) -> str:
    """Running ``c`` into ``tmp_path/run`` raises a ConfigError naming every fragment and writes nothing;
    the message."""
    with pytest.raises(pj.ConfigError) as err:
        run_experiment(c, run_dir=tmp_path / "run")
    msg = str(err.value)
    for fragment in fragments:
        assert fragment in msg, msg
    assert not (tmp_path / "run").exists()
    return msg


def _set(c: Config, key: str, value):
    *parents, last = key.split(".")
    node = c
    for p in parents:
        node = getattr(node, p)
    setattr(node, last, value)
    return c


# (key, value, fragments the error names)
CASES = [
    ("dataset.limit_train", -5, ["dataset.limit_train=-5", ">= 1"]),
    ("dataset.limit_test", 0, ["dataset.limit_test=0"]),
    ("trainer.eval_batch_size", 0, ["trainer.eval_batch_size=0", ">= 1"]),
    ("trainer.batch_size", 0, ["trainer.batch_size=0"]),
    ("trainer.epochs", 0, ["trainer.epochs=0"]),
    ("trainer.chunks_per_epoch", 0, ["trainer.chunks_per_epoch=0"]),
    ("trainer.val_fraction", 1.5, ["trainer.val_fraction=1.5"]),
    ("trainer.loop", "python", ["trainer.loop", "scan"]),
    ("trainer.divergence_threshold", 0.0, ["trainer.divergence_threshold"]),
    ("seed", -1, ["seed=-1"]),
    ("model.depth", 0, ["model.depth=0", ">= 1"]),
    ("model.width", 0, ["model.width=0"]),
    ("model.backward", "foo", ["model.backward='foo'", "learned", "tied"]),
    ("model.act", "swishy", ["model.act='swishy'", "gelu"]),
    ("model.width_multiplier", 0.0, ["model.width_multiplier"]),
    ("model.name", "nonet", ["model.name='nonet'", "mlp"]),
    ("tracking.backends", ["foo"], ["tracking.backends", "foo", "jsonl"]),
    ("tracking.wandb.mode", "sometimes", ["tracking.wandb.mode", "offline"]),
    ("energy.lam", -0.1, ["energy.lam=-0.1", ">= 0", "unbounded below"]),
    ("energy.lam", [0.1, -0.2], ["energy.lam=[0.1, -0.2]", ">= 0"]),
    ("energy.alpha", -1.0, ["energy.alpha=-1.0", ">= 0"]),
    ("energy.alpha", [0.0, 0.0], ["energy.alpha", "all zero"]),
    ("energy.alpha", "heavy", ["energy.alpha", "number"]),
    ("optim.lr", -1.0, ["optim.lr=-1.0"]),
    ("optim.weight_decay", -0.1, ["optim.weight_decay"]),
    ("optim.warmup", 2.0, ["optim.warmup"]),
    ("optim.grad_clip", 0.0, ["optim.grad_clip"]),
    ("algorithm.T", -1, ["algorithm.T=-1"]),
    ("algorithm.latent.lr", -0.1, ["algorithm.latent.lr"]),
    ("algorithm.latent.momentum", 1.0, ["algorithm.latent.momentum"]),
    ("dataset.name", "imagenet22k", ["dataset.name", "digits"]),
]


@pytest.mark.parametrize("key,value,fragments", CASES, ids=[f"{k}={v}" for k, v, _ in CASES])
def test_bad_value_is_a_config_error_naming_the_field(key, value, fragments, tmp_path):
    with pytest.raises(pj.ConfigError) as err:
        run_experiment(_set(tiny(), key, value), run_dir=tmp_path / "run")
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)
    assert not (tmp_path / "run").exists()  # refused before the run started: nothing written


def test_every_invalid_field_is_named_at_once():
    c = to_dict(_set(_set(tiny(), "model.depth", 0), "seed", -3))
    with pytest.raises(pj.ConfigError, match=r"2 invalid config values") as err:
        validate_config(c)
    assert "model.depth=0" in str(err.value) and "seed=-3" in str(err.value)


def test_the_defaults_are_valid():
    """The dataclass defaults and the composed default config pass the schema and value checks (every
    experiment config is checked the same way in test_cli.py's test of every documented command)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from pcjax.config import register_configs

    validate_config(to_dict(Config()))
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        c = OmegaConf.to_container(compose("config"), resolve=True)
    assert c["trainer"]["divergence_threshold"] == 1e12  # a float, not the YAML string "1e12"
    check_schema(c)
    validate_config(c)


def _cli(args, cwd):
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "experiments" / "train.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_bad_value_exits_2_without_traceback(tmp_path):
    proc = _cli(["dataset.limit_train=-5", "model.backward=foo", "trainer.progress=false"], tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "ValueError" not in proc.stderr
    assert "error: 2 invalid config values" in proc.stderr
    assert "dataset.limit_train=-5" in proc.stderr and "model.backward='foo'" in proc.stderr


def test_finite_blow_up_beyond_the_threshold_stops_the_run(tmp_path):
    """|energy| or |loss| above trainer.divergence_threshold counts as divergence (here a threshold far
    below the normal energy stands in for an energy that grew to 1e26 while staying finite)."""
    c = tiny()
    c.trainer.divergence_threshold = 1e-6
    with pytest.raises(pj.DivergenceError) as err:
        run_experiment(c, run_dir=tmp_path)
    msg = str(err.value)
    assert "trainer.divergence_threshold=1e-06" in msg and "epoch 1, batch 0" in msg
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["status"] == "diverged" and record["epochs"] == []
    assert "DivergenceError" in record["error"] and "reached" in record["divergence"]["where"]


# ------------------------------------------------------------------------- keys outside the schema
def test_plus_key_outside_the_schema_is_rejected(tmp_path):
    from hydra import compose, initialize_config_dir

    from pcjax.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose("config", overrides=["+trainer.epoch=1", "trainer.progress=false"])
        free = compose("config", overrides=["+lalr.params.my_option=2"])
    with pytest.raises(pj.ConfigError) as err:
        run_experiment(cfg, run_dir=tmp_path / "run")
    assert "'trainer.epoch'" in str(err.value) and "did you mean 'trainer.epochs'" in str(err.value)
    assert not (tmp_path / "run").exists()
    from omegaconf import OmegaConf

    check_schema(OmegaConf.to_container(free, resolve=True))  # free-form dicts are not looked into
    with pytest.raises(pj.ConfigError, match=r"(?s)2 unknown config keys.*'modle'.*'model'.*optim.lrr.*optim.lr"):
        check_schema({"modle": {}, "optim": {"lrr": 1}})


def test_allowed_keys_come_from_the_dataclasses():
    from dataclasses import dataclass, field

    @dataclass
    class Algo:
        compute_dtype: str = "float32"

    @dataclass
    class Schema:
        algorithm: Algo = field(default_factory=Algo)
        params: dict = field(default_factory=dict)

    check_schema({"algorithm": {"compute_dtype": "bfloat16"}, "params": {"anything": {"goes": 1}}}, Schema)
    with pytest.raises(pj.ConfigError, match="did you mean 'algorithm.compute_dtype'"):
        check_schema({"algorithm": {"compute_dtyp": "bfloat16"}}, Schema)


def test_cli_plus_key_fails(tmp_path):
    proc = _cli(["+trainer.epoch=1", "trainer.progress=false"], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "unknown config key 'trainer.epoch'" in proc.stderr and "trainer.epochs" in proc.stderr
    assert not list(tmp_path.rglob("record.json"))


# ---------------------------------------------------------------------------- labels in range
@pytest.mark.parametrize("split,labels,bad", [("train", [0, 1, 12, 3, 12], "12"), ("test", [0, -1, 2, 1], "-1")])
def test_array_dataset_rejects_labels_outside_the_classes(split, labels, bad):
    from pcjax.data import ArrayDataset
    from pcjax.data.dataset import LabelError

    y = np.asarray(labels, np.int32)
    good = np.zeros(len(labels), np.int32)
    x = np.zeros((len(labels), 2, 2, 1), np.uint8)
    ys = {"train_y": y, "test_y": good} if split == "train" else {"train_y": good, "test_y": y}
    with pytest.raises(LabelError) as err:
        ArrayDataset("toy", x, ys["train_y"], x, ys["test_y"], 10, (0.5,), (0.2,), tuple(map(str, range(10))))
    msg = str(err.value)
    n_bad = sum(1 for v in labels if not 0 <= v < 10)
    assert f"{n_bad} of the {len(labels)} {split} labels" in msg and f"first bad value {bad}" in msg
    assert "[0, 10)" in msg
    assert isinstance(err.value, ValueError) and isinstance(err.value, pj.PCJaxError)


# ------------------------------------------------------------------ LALR parameters in range
LALR_CASES = [
    ("error_normalised", {"max_scale": -1}, ["lalr.params.max_scale=-1", "[1, inf)", "lalr.rule=error_normalised"]),
    ("geometric", {"r": -2.0}, ["lalr.params.r=-2.0", "(0, inf)", "set lalr.params.r to a value in (0, inf)"]),
    ("geometric", {"r": 0}, ["lalr.params.r=0", "(0, inf)"]),
    ("geometric", {"r": float("nan")}, ["lalr.params.r=nan", "finite number"]),
    ("error_normalised", {"eps": -1}, ["lalr.params.eps=-1", "(0, inf)"]),
    ("error_normalised", {"max_scale": "abc"}, ["lalr.params.max_scale='abc'", "finite number", "[1, inf)"]),
    ("precision", {"norm": "max"}, ["lalr.params.norm='max'", "'sum', 'peak'"]),
    ("log_normalised", {"power": -0.5}, ["lalr.params.power=-0.5", "[0, inf)"]),
]


@pytest.mark.parametrize("rule,params,fragments", LALR_CASES, ids=[f"{r}:{p}" for r, p, _ in LALR_CASES])
def test_lalr_parameter_outside_its_range_is_refused_at_start_up(rule, params, fragments, tmp_path):
    """Every rule parameter has a declared range, checked before the run starts (a negative max_scale
    made inference climb the energy; a non-number was a raw TypeError at trace time)."""
    c = tiny()
    c.lalr.rule, c.lalr.params = rule, params
    _refused(c, tmp_path, fragments)
    with pytest.raises(pj.ConfigError, match=fragments[0].replace("[", r"\[").replace("(", r"\(")):
        pj.make_lalr(rule, **params)  # the same check where a rule is built in Python


def test_lalr_rules_with_valid_parameters_and_user_rules_declare_ranges():
    from dataclasses import dataclass

    from pcjax.lalr import CheckedRule, lalr_param

    assert pj.make_lalr("error_normalised", eps=1e-3, max_scale=1).max_scale == 1
    assert pj.make_lalr("geometric", r=0.5).r == 0.5

    @dataclass(frozen=True)
    class Mine(CheckedRule):
        gain: float = lalr_param(1.0, 0.0, 2.0)
        plain: float = 0.3  # no declared range: must still be a finite number

    with pytest.raises(pj.ConfigError, match=r"lalr.params.gain=3.0 is out of range \[0, 2\] for lalr.rule=Mine"):
        Mine(gain=3.0)
    with pytest.raises(pj.ConfigError, match=r"lalr.params.plain='x' must be a finite number"):
        Mine(plain="x")


# ----------------------------------------------------------------- one policy for every registry
def test_every_registry_refuses_a_taken_name_unless_overwrite(monkeypatch):
    """register_model and register_lalr replaced built-ins silently (a plugin re-registering `mlp`
    trained another net under the same name); now every registry refuses, naming the fix."""
    from conftest import isolated_registries

    from pcjax.lalr import Geometric

    def tiny_mlp(input_shape, num_classes, *, key, **options):
        return pj.models.mlp(input_shape, num_classes, key=key, width=4)

    with isolated_registries(monkeypatch, root_on_path=False):
        registrations = [
            (lambda **kw: pj.register_model("mlp", tiny_mlp, **kw), "model 'mlp'", lambda: pj.models.MODELS["mlp"]),
            (lambda **kw: pj.register_lalr("constant", Geometric, **kw), "LALR rule 'constant'",
             lambda: pj.lalr._RULES["constant"]),
            (lambda **kw: pj.register_energy("gaussian", lambda p, v: p, **kw), "energy term 'gaussian'",
             lambda: pj.energies._REGISTRY["gaussian"]),
            (lambda **kw: pj.register_algorithm("pc", lambda ctx: None, **kw), "algorithm 'pc'",
             lambda: pj.algorithms.registry._REGISTRY["pc"]),
        ]
        for register, what, current in registrations:
            before = current()
            with pytest.raises(pj.ConfigError) as err:
                register()
            assert f"{what} is already registered" in str(err.value) and "overwrite=True" in str(err.value)
            assert current() is before  # nothing replaced
        pj.register_model("mlp", pj.models.MODELS["mlp"])  # the very same builder again: fine
        pj.register_lalr("geometric", Geometric)
        assert pj.register_model("mlp", tiny_mlp, overwrite=True) is tiny_mlp and pj.models.MODELS["mlp"] is tiny_mlp
        assert pj.register_lalr("constant", Geometric, overwrite=True) is Geometric


# ------------------------------------------------------- model options the builder does not take
def test_model_option_the_builder_does_not_take_is_refused(tmp_path):
    """`model=mnist_cnn model.width=3 model.depth=7` trained the default convnet while the record said
    width 3, depth 7: an option the builder would drop is refused, naming the options it takes."""
    c = tiny()
    c.model.name, c.model.width, c.model.depth = "mnist_cnn", 3, 7
    _refused(c, tmp_path, ("model.width=3 and model.depth=7", "not options of model 'mnist_cnn'",
                           "takes: act, width_multiplier, skip, backward, backward_from", "Remove them"))
    ok = to_dict(Config())
    ok["model"]["name"] = "mnist_cnn"  # conf/model/*.yaml defaults the builder does not take stay accepted
    validate_config(ok)


def test_custom_builder_without_an_option_refuses_it_when_set(monkeypatch):
    """A custom builder without `act` ran its own activation with `model.act=relu` recorded."""
    from conftest import isolated_registries

    def no_act(input_shape, num_classes, *, width=8, key):
        return pj.models.mlp(input_shape, num_classes, width=width, depth=1, key=key)

    def any_option(input_shape, num_classes, *, key, **options):
        return pj.models.mlp(input_shape, num_classes, key=key, **options)

    with isolated_registries(monkeypatch, root_on_path=False):
        pj.register_model("no_act", no_act)
        pj.register_model("any_option", any_option)
        c = to_dict(Config())
        c["model"].update(name="no_act", act="relu", width=8)
        with pytest.raises(pj.ConfigError, match=r"model.act='relu': not an option of model 'no_act'.*takes: width"):
            validate_config(c)
        c["model"]["act"] = "gelu"  # the schema default: accepted, unless the command line set it
        validate_config(c)
        with pytest.raises(pj.ConfigError, match=r"model.act='gelu': not an option of model 'no_act'"):
            validate_config(c, ["model=mlp", "model.act=gelu"])
        from pcjax.models import model_options

        model = {k: v for k, v in c["model"].items() if k != "name"}
        assert model_options("any_option", {**model, "act": "relu"}, to_dict(Config())["model"]) == {"act": "relu", "width": 8}


# ---------------------------------------------------------------------- energy terms in floats
@pytest.mark.parametrize("which", ["hidden", "output"])
def test_integer_valued_energy_term_is_refused(which, tmp_path, monkeypatch):
    """An energy term returning integers was accepted (every hidden energy 0, no gradient, 9 %
    accuracy): the dtype is checked as well as the shape, naming the node, the term and the fix."""
    import jax.numpy as jnp
    from conftest import isolated_registries

    def int_count(pred, value):
        return jnp.sum(jnp.abs(value - pred) > 0.5, axis=tuple(range(1, pred.ndim)))

    with isolated_registries(monkeypatch, root_on_path=False):
        pj.register_energy("int_count", int_count)
        c = tiny()
        setattr(c.energy, which, "int_count")
        with pytest.raises(pj.ShapeError) as err:
            run_experiment(c, run_dir=tmp_path / "run")
    msg = str(err.value)
    node = "node 2" if which == "output" else "node 1"
    for fragment in (node, f"energy.{which}='int_count'", "int32 values", "floating-point", ".astype(jnp.float32)"):
        assert fragment in msg, msg
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["status"] == "failed" and record["epochs"] == []  # failed in the first compilation


# ------------------------------------------------------------------ beta and resume=true
def test_non_finite_beta_is_refused_at_start_up(tmp_path):
    """algorithm.beta=nan made the energy non-finite at inference step 0, blamed on learning rates."""
    c = tiny()
    c.algorithm.beta = float("nan")
    with pytest.raises(pj.ConfigError, match=r"algorithm.beta=nan must be a finite number"):
        run_experiment(c, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_resume_true_with_nothing_to_resume_says_it_starts_fresh(tmp_path):
    c = tiny()
    c.trainer.resume = True
    with pytest.warns(UserWarning, match=r"trainer.resume=true: no checkpoint in .*starting a fresh run"):
        record = run_experiment(c, run_dir=tmp_path / "runs" / "a")
    assert record["status"] == "complete" and "resumes" not in record


# =========================================================== errors that name the real cause
# ------------------------------------------------------- command-line overrides, before Hydra
def test_cli_typo_without_plus_gets_the_closest_key_not_hydras_plus_advice(tmp_path):
    """Hydra said "Could not override 'trainer.epoch' ... To append to your config use +trainer.epoch=1"
    (the wrong fix: the schema check then refuses it) and had no did-you-mean."""
    proc = _cli(["trainer.epoch=1", "trainer.progress=false"], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "unknown config key 'trainer.epoch'" in proc.stderr
    assert "did you mean 'trainer.epochs' (trainer.epochs=1)?" in proc.stderr
    assert "To append to your config use +" not in proc.stderr and "Could not override" not in proc.stderr
    assert not list(tmp_path.rglob("*.json")) and not (tmp_path / "outputs").exists()  # nothing written


def test_overrides_are_checked_against_the_schema_before_composition():
    from pcjax.config import check_overrides

    check_overrides(["trainer.epochs=1", "algorithm=pcalm", "algorithm.params.rho=2", "+lalr.params.x=1",
                     "seed=0,1", "hydra.run.dir=x", "experiment=mnist_mlp_pc_se", "~seed"])  # all fine
    with pytest.raises(pj.ConfigError) as err:
        check_overrides(["optim.lrr=1e-3", "modle.width=3"])
    msg = str(err.value)
    assert "2 problems" in msg and "did you mean 'optim.lr'" in msg and "did you mean 'model.width'" in msg


def test_algorithm_param_typo_names_the_algorithms_parameters():
    """`algorithm.params.tauu=1` got Hydra's "use +algorithm.params.tauu": name the parameters the
    algorithm's config sets, with the closest one."""
    from pcjax.config import check_overrides

    with pytest.raises(pj.ConfigError) as err:
        check_overrides(["algorithm=pcalm", "algorithm.params.rhoo=2"])
    msg = str(err.value)
    for fragment in ("algorithm.params.rhoo=2", "'rhoo' is not a parameter", "algorithm 'pc-alm'",
                     "it sets: dual_lr, rho", "did you mean algorithm.params.rho=2?"):
        assert fragment in msg, msg
    with pytest.raises(pj.ConfigError, match=r"algorithm 'bpc' \(algorithm.name=pc\) sets no algorithm.params.*"
                                             r"the built-in pc and bp take none"):
        check_overrides(["algorithm.params.tauu=1"])
    with pytest.raises(pj.ConfigError, match=r"algorithm.params.rho=abc: must be a number.*1.0"):
        check_overrides(["algorithm=pcalm", "algorithm.params.rho=abc"])


def test_plugin_algorithm_without_its_plugin_says_how_to_load_it(monkeypatch):
    from conftest import isolated_registries
    from hydra.core.config_store import ConfigStore

    from pcjax.config import check_overrides
    from pcjax.plugins import load_plugins

    stored = ConfigStore.instance().repo.setdefault("algorithm", {})
    monkeypatch.delitem(stored, "pc_every_k.yaml", raising=False)  # as in a fresh process
    with pytest.raises(pj.ConfigError) as err:
        check_overrides(["algorithm=pc_every_k"])
    msg = str(err.value)
    for fragment in ("algorithm=pc_every_k: no such algorithm config", "bpc", "pcalm",
                     "'plugins=[my_algorithm.py]' algorithm=pc_every_k", "pj.register_algorithm"):
        assert fragment in msg, msg
    with pytest.raises(pj.ConfigError, match="did you mean algorithm=pcalm"):
        check_overrides(["algorithm=pcalmm"])
    with isolated_registries(monkeypatch, root_on_path=False):
        load_plugins(["examples/every_k.py"])
        check_overrides(["algorithm=pc_every_k", "algorithm.params.k=4"])  # loaded: a choice
        with pytest.raises(pj.ConfigError, match=r"algorithm.params.k=abc: must be a number.*default.*2"):
            check_overrides(["algorithm=pc_every_k", "algorithm.params.k=abc"])  # was a raw TypeError


def test_plugins_without_brackets_is_a_one_entry_list(tmp_path):
    """The docs accept `plugins=a.py`; Hydra refused it (a str is not a list)."""
    from pcjax.plugins import bracket_plugins

    assert bracket_plugins(["plugins=a.py", "+plugins=b,c", "plugins=[d]", "seed=1"]) == \
        ["plugins=[a.py]", "+plugins=[b,c]", "plugins=[d]", "seed=1"]
    plugin = ROOT / "examples" / "huber_energy.py"
    proc = _cli([f"plugins={plugin}", "energy.hidden=huber", "algorithm=pc", "trainer.epochs=1",
                 "trainer.progress=false", "model.width=16", "model.depth=1", "algorithm.T=2",
                 "dataset.limit_train=256", "dataset.limit_test=100", "tracking.backends=[jsonl]"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["algorithm"] == "pc-se+hidden:huber"


# ------------------------------------------------------------ a plugin that fails to import
PLUGIN_FAILURES = [
    ("syntax.py", "import pcjax\n\ndef f(:\n    pass\n",
     ["plugin", "syntax.py", "has a syntax error at", "line 3", "def f(:", "Fix the file", "py_compile"]),
    ("missing_dep.py", "import os\nimport a_module_that_does_not_exist_xyz\n",
     ["missing_dep.py", "failed to import at", "line 2", "import a_module_that_does_not_exist_xyz",
      "No module named 'a_module_that_does_not_exist_xyz'", "pip install"]),
    ("duplicate.py", "import pcjax as pj\n\n\npj.register_model('mlp', lambda *a, **k: None)\n",
     ["duplicate.py", "line 4", "model 'mlp' is already registered", "Choose another name", "overwrite=True"]),
    ("raises.py", "x = 1\nraise ValueError('bad setting')\n",
     ["raises.py", "raised ValueError at", "line 2", "bad setting", "Fix the plugin"]),
]


@pytest.mark.parametrize("name,source,fragments", PLUGIN_FAILURES, ids=[n for n, _, _ in PLUGIN_FAILURES])
def test_plugin_that_fails_to_import_names_the_file_line_and_fix(name, source, fragments, tmp_path, monkeypatch):
    """A plugin with a syntax error or a missing dependency was a raw traceback; a duplicate
    registration did not name the plugin."""
    from conftest import isolated_registries

    from pcjax.plugins import load_plugin

    plugin = tmp_path / name
    plugin.write_text(source)
    with isolated_registries(monkeypatch, root_on_path=False):
        before = dict(pj.models.MODELS)
        with pytest.raises(pj.ConfigError) as err:
            load_plugin(str(plugin))
        assert pj.models.MODELS == before  # nothing registered or replaced
    msg = str(err.value)
    for fragment in fragments:
        assert fragment in msg, msg
    assert "Nothing has run" in msg and err.value.__cause__ is not None


def test_cli_plugin_syntax_error_is_one_paragraph(tmp_path):
    plugin = tmp_path / "broken_plugin.py"
    plugin.write_text("def f(:\n")
    proc = _cli([f"plugins=[{plugin}]", "trainer.progress=false"], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"has a syntax error at {plugin}, line 1" in proc.stderr
    assert not (tmp_path / "outputs").exists()


# -------------------------------------------------------------- a non-numeric plugin parameter
def test_non_numeric_energy_parameter_is_refused_at_start_up(tmp_path, monkeypatch):
    """`+energy.params.delta=abc` for a plugin's Huber term was a raw TypeError at trace time."""
    from conftest import isolated_registries

    with isolated_registries(monkeypatch, root_on_path=False):
        c = tiny()
        c.plugins = ["examples/huber_energy.py"]
        c.energy.hidden, c.energy.params = "huber", {"delta": "abc"}
        _refused(c, tmp_path, ("energy.params.delta='abc' must be a number", "energy term 'huber' (energy.hidden)",
                               "default 0.05", "+energy.params.delta=0.05"))


def test_unknown_energy_term_is_refused_before_the_run_starts(tmp_path):
    c = tiny()
    c.energy.hidden = "hubber"
    with pytest.raises(pj.ConfigError, match=r"energy.hidden: unknown energy term 'hubber'.*gaussian"):
        run_experiment(c, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------- non-finite values nobody's rate could cause
def _nan_term(pred, value):
    import jax.numpy as jnp

    return jnp.sum((value - pred) ** 2, axis=tuple(range(1, pred.ndim))) * jnp.nan


def test_nan_energy_at_step_0_of_batch_0_is_blamed_on_the_energy_not_the_rates(tmp_path, monkeypatch):
    """A user energy that is NaN at the feed-forward point was blamed on the learning rates; at
    inference step 0 of the first batch no rate has acted."""
    from conftest import isolated_registries

    with isolated_registries(monkeypatch, root_on_path=False):
        pj.register_energy("nan_term", _nan_term)
        c = tiny()
        c.energy.hidden = "nan_term"
        with pytest.raises(pj.DivergenceError) as err:
            run_experiment(c, run_dir=tmp_path)
    msg = str(err.value)
    for fragment in ("epoch 1, batch 0, inference step 0", "no learning rate has acted",
                     "the cause is the input or the energy, not a rate", "energy.hidden",
                     "a custom term must be finite"):
        assert fragment in msg, msg
    assert "Try a smaller inference rate" not in msg
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["status"] == "diverged" and record["divergence"]["batch"] == 0


def test_nan_normalisation_at_the_first_step_points_at_the_data(tmp_path, monkeypatch):
    import dataclasses

    import pcjax.experiment as experiment

    real = experiment.load_dataset

    def zero_std(*args, **kwargs):
        return dataclasses.replace(real(*args, **kwargs), std=(0.0,))  # x / 0: inf and nan inputs

    monkeypatch.setattr(experiment, "load_dataset", zero_std)
    with pytest.raises(pj.DivergenceError) as err:
        run_experiment(tiny(), run_dir=tmp_path)
    msg = str(err.value)
    for fragment in ("batch 0, inference step 0", "no learning rate has acted", "standard deviation is 0"):
        assert fragment in msg, msg
    assert json.loads((tmp_path / "record.json").read_text())["status"] == "diverged"


def test_backprop_divergence_names_the_weight_rate_and_the_loss_not_inference(tmp_path):
    """A BP run that diverged was told about the energy and algorithm.latent.lr."""
    c = tiny()
    c.algorithm.name, c.algorithm.label, c.optim.lr = "bp", "bp", 1e5
    with pytest.raises(pj.DivergenceError) as err:
        run_experiment(c, run_dir=tmp_path / "lr")
    msg = str(err.value)
    for fragment in ("the loss reached", "Backprop has no inference", "optim.lr", "optim.grad_clip", "algorithm.loss"):
        assert fragment in msg, msg
    assert "Try a smaller inference rate" not in msg and "the energy" not in msg
    assert json.loads((tmp_path / "lr" / "record.json").read_text())["status"] == "diverged"


def test_backprop_nan_loss_at_the_first_step_is_not_blamed_on_a_rate(tmp_path, monkeypatch):
    from conftest import isolated_registries

    with isolated_registries(monkeypatch, root_on_path=False):
        pj.register_energy("nan_term", _nan_term)
        c = tiny()
        c.algorithm.name, c.energy.output = "bp", "nan_term"
        with pytest.raises(pj.DivergenceError) as err:
            run_experiment(c, run_dir=tmp_path)
    msg = str(err.value)
    for fragment in ("the loss became non-finite in epoch 1, batch 0.", "before any weight update",
                     "no learning rate is the cause", "energy.output"):
        assert fragment in msg, msg


# ---------------------------------------------------------- read-only or full output folder
_READ_ONLY_PLUGIN = """
import errno
import pathlib

_mkdir = pathlib.Path.mkdir


def mkdir(self, *args, **kwargs):  # stands in for a folder on a read-only file system
    if str(self).startswith({root!r}):
        raise OSError(errno.EROFS, "Read-only file system", str(self))
    return _mkdir(self, *args, **kwargs)


pathlib.Path.mkdir = mkdir
"""


def test_cli_read_only_output_folder_is_one_paragraph(tmp_path):
    ro = tmp_path / "readonly"
    plugin = tmp_path / "ro_plugin.py"
    plugin.write_text(_READ_ONLY_PLUGIN.format(root=str(ro)))
    proc = _cli([f"plugins=[{plugin}]", f"hydra.run.dir={ro}/run", "trainer.progress=false"], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for fragment in (f"cannot write {ro}/run", "the file system is read-only", "hydra.run.dir=DIR",
                     "Nothing was trained or recorded"):
        assert fragment in proc.stderr, proc.stderr
    assert not ro.exists()


def test_read_only_run_dir_in_python_is_a_config_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(pj.ConfigError) as err:
        run_experiment(tiny(), run_dir=blocker / "run")
    assert f"cannot write {blocker / 'run'}" in str(err.value) and "run_dir=DIR" in str(err.value)


def test_cli_full_disk_mid_run_names_the_file_and_keeps_the_checkpoints(tmp_path):
    """A full disk during a run was a raw traceback; now: the file, the cause, the fix, and the
    resume command; the record and the checkpoints already written are intact."""
    plugin = tmp_path / "full_disk_plugin.py"
    plugin.write_text("import errno\nfrom pcjax import tracking\n\n\nclass Full:\n    def __init__(self, **_): pass\n"
                      "    def start(self, config, run_dir): self.run_dir = run_dir\n"
                      "    def log(self, metrics, step):\n"
                      "        if step == 2:\n"
                      "            raise OSError(errno.ENOSPC, 'No space left on device', "
                      "str(self.run_dir) + '/metrics.jsonl')\n"
                      "    def finish(self, summary=None): pass\n\n\n"
                      "tracking.BACKENDS['full'] = Full\n")
    run = tmp_path / "run"
    proc = _cli([f"plugins=[{plugin}]", "tracking.backends=[full]", f"hydra.run.dir={run}", "trainer.epochs=3",
                 "trainer.progress=false", "algorithm=pc", "model.width=16", "model.depth=1", "algorithm.T=2",
                 "dataset.limit_train=256", "dataset.limit_test=100"], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for fragment in (f"cannot write {run}/metrics.jsonl", "the disk is full", "free space on that disk",
                     "hydra.run.dir=DIR", "checkpoints written before the failure are intact",
                     f"trainer.resume={run}"):
        assert fragment in proc.stderr, proc.stderr
    record = json.loads((run / "record.json").read_text())
    assert record["status"] == "failed" and len(record["epochs"]) == 2 and "No space left" in record["error"]
    assert (run / "ckpt_00002.pcjax").exists() and (run / "latest").read_text().strip() == "ckpt_00002.pcjax"


# ------------------------------------------------------- a multi-process run without a coordinator
@pytest.mark.parametrize("args,env,fragments", [
    (["trainer.distributed=on"], {}, ["trainer.distributed=on asks this run to join a multi-process job",
                                      "trainer.coordinator=HOST:PORT", "trainer.distributed=off"]),
    (["trainer.distributed=auto"], {"SLURM_NTASKS": "2"}, ["trainer.distributed=auto and SLURM_NTASKS=2", "srun",
                                                           "unset SLURM_NTASKS"]),
], ids=["distributed=on", "SLURM_NTASKS=2"])
def test_cli_multi_process_without_a_coordinator_is_one_paragraph(args, env, fragments, tmp_path, monkeypatch):
    """Was a raw `ValueError: coordinator_address should be defined.` traceback."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    proc = _cli([*args, "trainer.progress=false"], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr
    assert "nothing was trained or recorded" in proc.stderr and not list(tmp_path.rglob("record.json"))
