"""Finite blow-ups (``pcjax.collapse``): the first epoch whose held-out accuracy fell 20 points below the
best before it, in the record's summary, the trainer's log, ``pcjax status`` and the result tables."""

from __future__ import annotations

import json
import logging

import pytest

from pcjax.collapse import describe_collapse, find_collapse
from pcjax.progress import describe_progress, run_progress
from pcjax.reporting import group_rows, load_records
from pcjax.training import _summarise, _warn_collapse


def _epochs(val, test=None, energy=None):
    test = test or val
    energy = energy or [1.0] * len(val)
    return [{"epoch": i + 1, "val_acc": v, "test_acc": t, "train_energy": e, "seconds": 1.0}
            for i, (v, t, e) in enumerate(zip(val, test, energy))]


def test_the_fashion_mnist_128_layer_pcalm_blow_up_is_found_at_epoch_5():
    """The measured run (results/runs/fashion_mnist_resmlp128e5_pcalm_se): 85-86 %, then 9.92 %."""
    c = find_collapse(_epochs([0.8522, 0.8527, 0.8618, 0.8518, 0.0992], energy=[0.18, 0.13, 0.118, 0.11, 1.29e7]))
    assert (c["epoch"], c["best_epoch"], c["metric"]) == (5, 3, "val_acc")
    assert c["best_train_energy"] == 0.118 and c["train_energy"] == 1.29e7
    assert describe_collapse(c) == ("epoch 5: validation accuracy 9.92 %, down from 86.18 % at epoch 3 "
                                    "(mean training energy 0.118 -> 1.29e+07)")


@pytest.mark.parametrize("val", [
    [0.90, 0.95, 0.96, 0.97],        # improving
    [0.97, 0.80, 0.78, 0.96],        # a fall of 19 points, never 20
    [0.10, 0.11, 0.10],              # never learnt: nothing to fall from
    [],
])
def test_no_collapse_without_a_20_point_fall(val):
    assert find_collapse(_epochs(val)) is None


def test_the_fall_is_measured_from_the_best_earlier_epoch_and_the_first_fall_is_named():
    c = find_collapse(_epochs([0.50, 0.90, 0.75, 0.69, 0.10]))
    assert (c["epoch"], c["best_epoch"], c["acc"], c["best_acc"]) == (4, 2, 0.69, 0.90)
    assert find_collapse(_epochs([0.50, 0.90, 0.75]), drop=0.1)["epoch"] == 3
    with pytest.raises(ValueError, match="drop must be > 0"):
        find_collapse(_epochs([0.5]), drop=0)


def test_a_fall_of_exactly_drop_counts_despite_rounding():
    assert 0.65 > 0.85 - 0.2  # float rounding: the exact fall would be missed
    assert find_collapse(_epochs([0.85, 0.65]))["epoch"] == 2
    assert find_collapse(_epochs([0.85, 0.6501])) is None


def test_epochs_are_numbered_as_the_record_numbers_them_and_non_finite_values_are_skipped():
    eps = _epochs([0.9, float("nan"), 0.95, 0.5])
    for e, n in zip(eps, (3, 4, 5, 6)):  # a record continued from epoch 2
        e["epoch"] = n
    c = find_collapse(eps)
    assert (c["metric"], c["epoch"], c["best_epoch"]) == ("val_acc", 6, 5)  # the NaN epoch keeps val_acc chosen


def test_without_validation_the_test_accuracy_is_read():
    c = find_collapse(_epochs([None, None, None], test=[0.9, 0.95, 0.3]))
    assert (c["metric"], c["epoch"]) == ("test_acc", 3)
    assert describe_collapse(c).startswith("epoch 3: test accuracy 30.00 %")


def test_summary_records_the_collapse_and_the_trainer_warns_once(caplog):
    record = {"epochs": _epochs([0.9, 0.95]), "summary": {}}
    _summarise(record)
    assert "collapse" not in record["summary"]
    record["epochs"] += _epochs([0.9, 0.95, 0.2])[2:]
    _summarise(record)
    assert record["summary"]["collapse"]["epoch"] == 3
    assert record["summary"]["test_acc"] == 0.95  # the strict protocol still reads epoch 2
    with caplog.at_level(logging.WARNING, logger="pcjax.training"):
        _warn_collapse(record, epoch=2)
        _warn_collapse(record, epoch=3)  # a later epoch: the collapse was reported already
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "training collapsed at epoch 3" in warnings[0]
    assert "reads the best validation epoch" in warnings[0]
    caplog.clear()
    record = {"epochs": _epochs([None, None], test=[0.9, 0.3]), "summary": {}}
    _summarise(record)
    assert record["summary"]["test_acc"] == 0.3  # no validation split: the last epoch, the collapsed one
    with caplog.at_level(logging.WARNING, logger="pcjax.training"):
        _warn_collapse(record, epoch=1, seed=4)
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith("seed 4: training collapsed at epoch 2: test accuracy")
    assert "with no validation split the strict protocol reads the last epoch" in message


def test_a_replica_groups_summary_keeps_each_seeds_collapse(tmp_path):
    from pcjax.replicas import group_result

    records = []
    for seed, val in ((0, [0.9, 0.95]), (1, [0.9, 0.2])):
        r = {"seed": seed, "status": "complete", "epochs": _epochs(val), "summary": {}}
        _summarise(r)
        records.append(r)
    summary = group_result(records, tmp_path)["summary"]
    assert summary["collapse"][0] is None and summary["collapse"][1]["epoch"] == 2
    assert "collapse" not in group_result(records[:1], tmp_path)["summary"]


def test_a_prediction_reads_the_sources_the_error_front_assumes():
    import jax

    import pcjax as pj
    from pcjax.error_front import node_sources
    from pcjax.network import Network

    base = pj.build_model("mlp", (6,), 3, key=jax.random.PRNGKey(0), width=5, depth=5, residual=True)
    edges = [(s, t, p) for (s, t), p in zip(base.skip_edges, base.skips)]
    edges += [(1, 4, pj.blocks.Identity()), (0, 2, pj.blocks.Dense(6, 5, key=jax.random.PRNGKey(1)))]
    model = Network(base.blocks, base.input_shape, skips=edges)
    sources = node_sources(model.num_nodes, model.skip_edges)
    values = (jax.random.normal(jax.random.PRNGKey(2), (2, 6)),) + tuple(
        jax.random.normal(jax.random.PRNGKey(3 + i), (2,) + s) for i, s in enumerate(model.node_shapes))
    for l in range(1, model.num_nodes + 1):
        p = model.prediction(l)
        assert p.reads == sources[l]
        only = tuple(v if i in p.reads else None for i, v in enumerate(values[:l]))
        assert (p(only) == model.predict(l, values)).all()


def _write(run, val, status="complete"):
    run.mkdir(parents=True)
    rec = {"schema": 1, "name": run.name, "dataset": "mnist", "model": "mlp", "algorithm": "pc-alm",
           "seed": int(run.name[-1]), "config": {}, "status": status,
           "epochs": _epochs(val), "summary": {}, "hardware": {}}
    (run / "record.json").write_text(json.dumps(rec))


def test_status_and_tables_flag_a_collapsed_run(tmp_path):
    _write(tmp_path / "row" / "row_seed0", [0.9, 0.95, 0.1])
    _write(tmp_path / "row" / "row_seed1", [0.9, 0.95, 0.96])
    assert run_progress(tmp_path / "row" / "row_seed0").collapse["epoch"] == 3
    assert "collapsed at epoch 3 (from 95.00 % at epoch 2)" in describe_progress(tmp_path / "row" / "row_seed0")
    assert "collapsed" not in describe_progress(tmp_path / "row" / "row_seed1")
    (row,) = group_rows(load_records([tmp_path / "row"]))
    assert row.flags() == ["1 collapsed (seed 0 at epoch 3)"]
