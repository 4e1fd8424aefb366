"""memkin.run, memkin.sweep and memkin.mc: the CLI's code in process."""

import csv
import json

import numpy as np

import memkin

SPEC = {
    "dataset": "digits",
    "seed": 3,
    "readout": "ridge",
    "grid": {"alpha": {"values": [0.2, 0.6]}, "beta": {"values": [0.3, 0.9]}},
}


def rows_without_seconds(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r.pop("seconds", None)
    return rows


def test_sweep_equals_the_cli_and_loads_as_columns(tmp_path, cli):
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    cli("sweep", tmp_path / "spec.json", "--out", tmp_path / "cli", "--backend", "cpu")
    r = memkin.sweep(tmp_path / "spec.json", tmp_path / "py", backend="cpu")
    assert rows_without_seconds(tmp_path / "py" / "results.csv") == rows_without_seconds(
        tmp_path / "cli" / "results.csv"
    )
    cols = r["results"]
    assert len(cols["alpha"]) == 4 and cols["test_accuracy"].dtype == np.float64
    assert r["manifest"]["selected"]["index"] in range(4)
    # A dict spec is the same study.
    r2 = memkin.sweep(SPEC, tmp_path / "dict", backend="cpu")
    np.testing.assert_array_equal(r2["results"]["test_accuracy"], cols["test_accuracy"])


def test_mc_returns_draws_and_summary(tmp_path):
    spec = {"dataset": "digits", "draws": 6, "seed": 2, "readout": "ridge",
            "variability": {"relative": True, "sigma": {"alpha": 0.1, "beta": 0.1}}}
    r = memkin.mc(spec, tmp_path / "mc", backend="cpu")
    assert len(r["draws"]["test_accuracy"]) == 6
    assert r["summary"]["n"] == 6
    assert 0.0 <= r["summary"]["mean"] <= 1.0


def test_run_returns_the_report(tmp_path):
    rep = memkin.run("digits", readout="ridge", backend="cpu", out=tmp_path / "run")
    assert (tmp_path / "run" / "report.json").exists()
    assert json.loads((tmp_path / "run" / "report.json").read_text()) == rep
