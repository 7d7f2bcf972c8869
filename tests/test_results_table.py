"""README's figures against the files the project writes: the results table against docs/eval/ and
weights/MANIFEST.json, the "training longer" figures against the curve and the loss log, and the
training example against the manifest's command."""

import csv
import json
import re
import shlex

import pytest
import results_table
from conftest import ROOT

README = (ROOT / "README.md").read_text()
MANIFEST = json.loads((ROOT / "weights" / "MANIFEST.json").read_text())


def test_readme_results_table_is_the_one_built_from_the_evaluation_files():
    assert results_table.readme_table(README) == results_table.table(), (
        "README.md's results table differs from docs/eval/: run python scripts/results_table.py --write README.md"
    )


def test_a_changed_figure_is_caught(monkeypatch):
    real = results_table.evaluations()
    changed = [(*row[:3], json.loads(json.dumps(row[3]))) for row in real]
    changed[0][3]["context_accuracy"]["overall"] += 0.01
    monkeypatch.setattr(results_table, "evaluations", lambda: changed)
    assert results_table.readme_table(README) != results_table.table()


@pytest.mark.parametrize("label, guided, candidates", results_table.ROWS)
def test_every_row_is_recorded_in_the_manifest(label, guided, candidates):
    evaluation = json.loads(results_table.row_file(candidates).read_text())
    assert evaluation in MANIFEST["evaluation"], (
        f"{candidates[0]} is not in weights/MANIFEST.json: "
        "record it with python scripts/ship_weights.py --refresh-eval <the evaluation files>"
    )


def test_readme_yardstick_table_is_the_one_built_from_the_yardstick_files():
    shown = results_table.readme_table(README, results_table.YARDSTICK_BEGIN, results_table.YARDSTICK_END)
    assert shown == results_table.yardstick_table(), (
        "README.md's yardstick table differs from docs/eval/yardstick/: "
        "run python scripts/results_table.py --write README.md"
    )
    assert "same drawings" in shown and "new drawings" in shown


def test_every_yardstick_file_is_recorded_in_the_manifest():
    for _, path, evaluation in results_table.yardstick_evaluations():
        assert evaluation in MANIFEST["evaluation"], f"{path.name} is not in weights/MANIFEST.json"
        assert evaluation["n_conditional"] >= 2000 and evaluation["fd"]["n"] >= 2000


def test_the_manifests_per_file_figures_are_its_recorded_evaluations():
    for name, info in MANIFEST["files"].items():
        for evaluation in info["evaluation"]:
            assert evaluation in MANIFEST["evaluation"], name


def test_training_longer_figures_come_from_the_curve_and_the_loss_log():
    text = " ".join(README.split())
    curve = {e: json.loads((ROOT / "docs" / "eval" / "curve" / f"epoch{e}.json").read_text()) for e in (21, 41)}
    fd = [f"{curve[e]['fd']['generated']:.2f}" for e in (21, 41)]
    assert f"FD from {fd[0]} to {fd[1]}" in text
    with open(ROOT / "weights" / "loss_log.csv") as f:
        rows = list(csv.DictReader(f))

    def epoch_mean(epoch):
        losses = [float(r["loss"]) for r in rows if int(r["epoch"]) == epoch]
        return f"{sum(losses) / len(losses):.3f}"

    assert f"from {epoch_mean(21)} to {epoch_mean(41)}" in text
    assert "63.4%" not in text


def test_the_readme_training_example_is_the_command_that_made_the_shipped_weights():
    line = next(line for line in README.splitlines() if line.strip().startswith("python scripts/train.py --context"))
    shown = shlex.split(line)
    recorded = shlex.split(MANIFEST["command"])

    def options(words):
        pairs = re.findall(r"(--[\w-]+)(?: ([^-][^ ]*))?", " ".join(words[2:]))
        return {k: v for k, v in pairs if k not in ("--out", "--data")}

    assert options(shown) == options(recorded)
    assert MANIFEST["epochs"] == 42 and "42 epochs" in README
