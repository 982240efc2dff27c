"""benchmarks/scaling.py: one fresh process per device count, a throughput per point, JSON appended."""

import json

from benchmarks import scaling


def test_scaling_benchmark_measures_every_point(tmp_path, capsys):
    out = tmp_path / "scaling.json"
    assert scaling.main(["--devices", "1,2", "--algos", "bp", "--epochs", "1", "--n-train", "512", "--batch", "64",
                         "--json", str(out)]) == 0
    (result,) = json.loads(out.read_text())
    points = result["points"]
    assert [p["devices"] for p in points] == [1, 2] and result["forced_host_devices"] == 2
    assert all(p["examples_per_s"] > 0 and p["device_count"] == 2 for p in points)
    assert points[0]["speedup"] == 1.0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["benchmark"] == "scaling"
