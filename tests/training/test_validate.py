"""ecmo-validate: a site's cohort scored with a served version, judged, and recalibrated.

Every number of the report is recomputed here independently (scikit-learn metrics, statsmodels
GLMs and Wilson intervals, the artifact's own predict_proba) from the cohort CSV."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import statsmodels.api as sm
from sklearn.metrics import brier_score_loss, confusion_matrix, roc_auc_score
from statsmodels.stats.proportion import proportion_confint

from service.core.kinds import ICH, WEANING
from service.core.registry import Registry, load_version, sha256_file
from service.training.cohort import read_csv, write_csv
from service.training.fit import predict_proba
from service.training.simulate import example_site_cohort
from service.training.train import simulated_cohort
from service.training.validate import main

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
EXAMPLE = REPO / "examples" / "ich_site_cohort_simulated.csv"
LATER = REPO / "examples" / "ich_site_cohort_simulated_later.csv"
KEYS = {"status", "cohort_sha256", "n", "events", "date", "auc", "calibration_slope", "report"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The README example: validate 1.0.0 on the example cohort and recalibrate it."""
    tmp = tmp_path_factory.mktemp("site")
    args = ["ich", "--data", str(EXAMPLE), "--report", str(tmp / "report"), "--bootstrap", "200"]
    assert main([*args, "--recalibrate", "--out", str(tmp / "models")]) == 0
    doc = json.loads((tmp / "report" / "validation.json").read_text())
    return {"tmp": tmp, "doc": doc, "new": tmp / "models" / "ich" / "1.0.1"}


def _independent(path: Path, artifact: Path) -> tuple[np.ndarray, np.ndarray]:
    """Outcome and the artifact's own predict_proba (not the service's linear form), with each
    feature held to the derivation range as the service does (docs/CLINICAL_SAFETY.md)."""
    cohort = read_csv(ICH, path)
    ranges = [
        f["derivation_range"]
        for f in json.loads((artifact.parent / "manifest.json").read_text())["features"]
    ]
    x = np.clip(cohort.features, [lo for lo, _ in ranges], [hi for _, hi in ranges])
    return cohort.outcome, predict_proba(joblib.load(artifact), x)


def test_the_example_cohorts_are_the_documented_simulation(tmp_path):
    # Equal up to the last bits of a float: numpy's vectorised exp/log may round the last digit
    # differently on another CPU, so the bytes of the CSV are not the thing to compare.
    for period, path in ((1, EXAMPLE), (2, LATER)):
        write_csv(example_site_cohort(period), tmp_path / "x.csv")
        regenerated, shipped = (tmp_path / "x.csv").read_text(), path.read_text()
        assert regenerated.splitlines()[0] == shipped.splitlines()[0]  # the columns
        assert len(regenerated.splitlines()) == len(shipped.splitlines())
        np.testing.assert_allclose(
            np.loadtxt(tmp_path / "x.csv", delimiter=",", skiprows=1),
            np.loadtxt(path, delimiter=",", skiprows=1),
            rtol=1e-12,
            atol=0,
        )


def test_report_numbers_match_an_independent_computation(site):
    doc = site["doc"]
    y, p = _independent(EXAMPLE, MODELS / "ich" / "1.0.0" / "model.joblib")
    assert (doc["n"], doc["events"]) == (len(y), int(y.sum()))
    assert doc["model"] == {
        "name": "ich",
        "version": "1.0.0",
        "sha256": sha256_file(MODELS / "ich" / "1.0.0" / "model.joblib"),
    }
    assert doc["cohort"]["sha256"] == sha256_file(EXAMPLE)
    assert doc["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert doc["auc_ci95"][0] < doc["auc"] < doc["auc_ci95"][1]
    assert doc["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    assert doc["brier_ci95"][0] < doc["brier"] < doc["brier_ci95"][1]
    lp = np.log(p / (1 - p))
    citl = sm.GLM(y, np.ones((len(y), 1)), family=sm.families.Binomial(), offset=lp).fit()
    slope = sm.GLM(y, sm.add_constant(lp), family=sm.families.Binomial()).fit()
    cal = doc["calibration"]
    assert cal["intercept"] == pytest.approx(citl.params[0], abs=1e-7)
    assert cal["intercept_ci95"] == pytest.approx(list(citl.conf_int()[0]), abs=1e-6)
    assert cal["slope"] == pytest.approx(slope.params[1], abs=1e-7)
    assert cal["slope_ci95"] == pytest.approx(list(slope.conf_int()[1]), abs=1e-6)
    for row in doc["risk_band_cutoffs"]:
        tn, fp, fn, tp = confusion_matrix(y, p >= row["cutoff"]).ravel()
        assert row["sensitivity"] == pytest.approx(tp / (tp + fn))
        assert row["specificity"] == pytest.approx(tn / (tn + fp))
        assert row["ppv"] == pytest.approx(tp / (tp + fp))
        assert row["npv"] == pytest.approx(tn / (tn + fn))
    for band in doc["risk_bands"]:
        upper = p <= band["upper"] if band["upper"] == 1.0 else p < band["upper"]
        mask = (p >= band["lower"]) & upper
        assert (band["n"], band["events"]) == (int(mask.sum()), int(y[mask].sum()))
        lo, hi = proportion_confint(int(y[mask].sum()), int(mask.sum()), method="wilson")
        assert band["observed_ci95"] == pytest.approx([lo, hi], abs=1e-12)
    dc = doc["decision_curve"]
    assert dc["threshold"][0] == 0.01 and dc["threshold"][-1] == 0.4
    for t, nb, all_ in zip(dc["threshold"], dc["model"], dc["treat_all"], strict=True):
        tp = np.sum((p >= t) & (y == 1))
        fp = np.sum((p >= t) & (y == 0))
        assert nb == pytest.approx(tp / len(y) - fp / len(y) * t / (1 - t), abs=1e-12)
        assert all_ == pytest.approx(y.mean() - (1 - y.mean()) * t / (1 - t), abs=1e-12)


def test_the_smoothed_calibration_curve_agrees_with_lowess(site):
    curve = site["doc"]["calibration_curve"]
    y, p = _independent(EXAMPLE, MODELS / "ich" / "1.0.0" / "model.joblib")
    # it=0: no robustness iterations, which would treat every event as an outlier.
    smooth = sm.nonparametric.lowess(y.astype(float), p, frac=2 / 3, it=0, return_sorted=True)
    reference = np.interp(curve["predicted"], smooth[:, 0], smooth[:, 1])
    # Two different smoothers of the same 1000 patients: close, not equal.
    assert np.mean(np.abs(np.array(curve["observed"]) - reference)) < 0.03
    # The site's risk is higher than predicted (log-odds shift +0.5): the curve says so, and it
    # is close to the simulation's truth, expit(logit(p) + 0.5).
    predicted, observed = np.array(curve["predicted"]), np.array(curve["observed"])
    assert np.mean(observed > predicted) > 0.8
    truth = 1 / (1 + np.exp(-(np.log(predicted / (1 - predicted)) + 0.5)))
    assert np.mean(np.abs(observed - truth)) < 0.03


def test_the_parent_fails_acceptance_on_a_miscalibrated_site(site):
    acc = site["doc"]["acceptance"]
    assert not acc["passed"]
    failed = [c["criterion"] for c in acc["criteria"] if not c["met"]]
    assert failed == ["calibration-in-the-large 95% CI includes 0"]


def test_recalibrated_version_is_loaded_and_verified_and_says_what_it_is(site):
    new = site["new"]
    doc = json.loads((new / "manifest.json").read_text())
    assert doc["version"] == "1.0.1" and doc["parent_version"] == "1.0.0"
    sv = doc["site_validation"]
    assert set(sv) == KEYS and sv["status"] == "not_run" and sv["report"] == "validation.json"
    assert sv["cohort_sha256"] == sha256_file(EXAMPLE) == doc["recalibration"]["cohort_sha256"]
    assert (sv["n"], sv["events"]) == (1000, site["doc"]["events"])
    assert doc["recalibration"]["parent_validation"]["auc"] == site["doc"]["auc"]
    assert (new / "validation.json").is_file() and (new / "validation.html").is_file()
    card = (new / "MODEL_CARD.md").read_text()
    assert (
        "recalibrated on a local cohort" in card and "Site validation status: **not_run**" in card
    )
    from tests.contract.spec import schema_errors

    assert not schema_errors(doc, {"$ref": "#/components/schemas/Manifest"})  # openapi.yaml
    loaded = load_version(new)  # sha256, sklearn version, feature order, self-tests
    assert loaded.version == "1.0.1"
    pinned = Registry.load(new.parents[1], default_versions={"ich": "1.0.1"})
    assert pinned.get("ich").version == "1.0.1"
    # Intercept recalibration: same slopes, log-odds shifted by a; on the recalibration cohort the
    # calibration-in-the-large becomes 0.
    parent = load_version(MODELS / "ich" / "1.0.0")
    assert loaded.linear.weights == pytest.approx(parent.linear.weights, rel=1e-12)
    a = doc["recalibration"]["a"]
    assert loaded.linear.baseline == pytest.approx(parent.linear.baseline + a, abs=1e-12)
    assert a == pytest.approx(site["doc"]["calibration"]["intercept"], abs=1e-12)
    y, p = _independent(EXAMPLE, new / "model.joblib")
    lp = np.log(p / (1 - p))
    citl = sm.GLM(y, np.ones((len(y), 1)), family=sm.families.Binomial(), offset=lp).fit()
    assert abs(citl.params[0]) < 1e-6


def test_slope_recalibration_makes_intercept_and_slope_ideal_on_its_cohort(tmp_path):
    args = ["ich", "--data", str(EXAMPLE), "--report", str(tmp_path / "r"), "--bootstrap", "100"]
    assert main([*args, "--recalibrate", "slope", "--out", str(tmp_path / "m")]) == 0
    new = tmp_path / "m" / "ich" / "1.0.1"
    assert json.loads((new / "manifest.json").read_text())["recalibration"]["method"] == "slope"
    y, p = _independent(EXAMPLE, new / "model.joblib")
    fit = sm.GLM(y, sm.add_constant(np.log(p / (1 - p))), family=sm.families.Binomial()).fit()
    assert fit.params == pytest.approx([0.0, 1.0], abs=1e-6)


def test_accept_records_passed_on_an_independent_later_cohort(site, capsys):
    models = site["new"].parents[1]
    args = ["ich", "--data", str(LATER), "--models", str(models), "--version", "1.0.1"]
    args += ["--report", str(site["tmp"] / "later"), "--bootstrap", "200", "--accept"]
    assert main(args) == 0
    sv = json.loads((site["new"] / "manifest.json").read_text())["site_validation"]
    assert set(sv) == KEYS and sv["status"] == "passed"
    assert sv["cohort_sha256"] == sha256_file(LATER)
    later = json.loads((site["tmp"] / "later" / "validation.json").read_text())
    assert sv["auc"] == later["auc"] and sv["calibration_slope"] == later["calibration"]["slope"]
    assert json.loads((site["new"] / "validation.json").read_text()) == later
    assert "Site validation status: **passed**" in (site["new"] / "MODEL_CARD.md").read_text()
    accepted = json.loads((site["new"] / "manifest.json").read_text())
    assert "site validation passed" in accepted["label"] and "simulated data" in accepted["label"]
    from tests.contract.spec import schema_errors

    assert not schema_errors(accepted, {"$ref": "#/components/schemas/Manifest"})
    assert load_version(site["new"]).version == "1.0.1"
    assert "recorded site_validation passed" in capsys.readouterr().out


def test_accept_on_the_recalibration_cohort_itself_fails(site, tmp_path):
    models = tmp_path / "m"
    shutil.copytree(site["new"].parents[1], models)
    args = ["ich", "--data", str(EXAMPLE), "--models", str(models), "--version", "1.0.1"]
    assert main([*args, "--report", str(tmp_path / "r"), "--bootstrap", "100", "--accept"]) == 1
    sv = json.loads((models / "ich" / "1.0.1" / "manifest.json").read_text())["site_validation"]
    assert sv["status"] == "failed"


def test_subgroup_table_where_the_cohort_has_the_columns(tmp_path):
    path = tmp_path / "weaning.csv"
    write_csv(simulated_cohort(WEANING, 600, 12), path)
    assert (
        main(["weaning", "--data", str(path), "--report", str(tmp_path), "--bootstrap", "100"]) == 0
    )
    doc = json.loads((tmp_path / "validation.json").read_text())
    assert set(doc["subgroups"]) == {"etiology", "ecpr", "crrt"}
    y = read_csv(WEANING, path).outcome
    ecpr = read_csv(WEANING, path).subgroups["ecpr"]
    assert doc["subgroups"]["ecpr"]["yes"]["n"] == int((ecpr == 1).sum())
    assert doc["subgroups"]["ecpr"]["yes"]["observed"] == pytest.approx(y[ecpr == 1].mean())


def test_a_bad_cohort_is_refused_and_nothing_is_written(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text(EXAMPLE.read_text().replace("\n1.", "\n2.", 1))  # a GWR of 2.x
    out = tmp_path / "report"
    assert main(["ich", "--data", str(path), "--report", str(out), "--recalibrate"]) == 1
    assert "rule: range" in capsys.readouterr().err and not out.exists()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is installed by .ci/run")
def test_the_html_report_renders_in_headless_chromium_without_network(site, tmp_path):
    page = site["tmp"] / "report" / "validation.html"
    text = page.read_text()
    assert text.count("<svg") == 2
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "@import" not in text and "url(http" not in text
    shot = tmp_path / "shot.png"
    run = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1000,2400",
         f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (2400, 1000)
    dark = (pixels[..., :3].mean(axis=2) < 0.5).mean()
    assert 0.01 < dark < 0.5  # text and two plots, not a blank or an error page


def test_the_command_runs_as_a_console_script_and_a_module():
    for argv in (
        [str(Path(sys.executable).parent / "ecmo-validate"), "--help"],
        [sys.executable, "-m", "service.training.validate", "--help"],
    ):
        run = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode == 0 and "--recalibrate" in run.stdout and "--accept" in run.stdout


def test_the_readme_example_runs(tmp_path, capsys):
    """The README's ecmo-validate command, as written (its /tmp paths moved under tmp_path)."""
    import shlex
    import time

    (line,) = [
        line
        for line in (REPO / "README.md").read_text().splitlines()
        if line.startswith(".venv/bin/ecmo-validate ")
    ]
    argv = shlex.split(line.replace("/tmp/ich-site", str(tmp_path / "ich-site")))[1:]
    start = time.perf_counter()
    assert main(argv) == 0
    print(f"README example: {time.perf_counter() - start:.1f} s", file=sys.stderr)  # no assertion
    assert (tmp_path / "ich-site" / "validation.html").is_file()
    assert (tmp_path / "ich-site" / "models" / "ich" / "1.0.1" / "manifest.json").is_file()


def test_a_recalibrated_version_becomes_the_default_only_once_accepted(tmp_path):
    """Beside its parent, a not_run version is served only when asked for; --accept on an
    independent cohort (passed) makes it the registry's default."""
    models = tmp_path / "models"
    shutil.copytree(MODELS / "ich" / "1.0.0", models / "ich" / "1.0.0")
    args = ["ich", "--data", str(EXAMPLE), "--models", str(models), "--bootstrap", "100"]
    assert main([*args, "--report", str(tmp_path / "r1"), "--recalibrate"]) == 0
    assert Registry.load(models).get("ich").version == "1.0.0"
    assert Registry.load(models).get("ich", "1.0.1").version == "1.0.1"
    args = ["ich", "--data", str(LATER), "--models", str(models), "--version", "1.0.1"]
    assert main([*args, "--report", str(tmp_path / "r2"), "--bootstrap", "100", "--accept"]) == 0
    assert Registry.load(models).get("ich").version == "1.0.1"
