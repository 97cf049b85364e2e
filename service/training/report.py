"""The site-validation report as one self-contained HTML page, drawn from the JSON numbers alone.

No network: the plots are inline SVG, the style sheet is inline, nothing is linked or fetched.
No patient-level data: only aggregates (counts, proportions, curves) appear.
"""

from __future__ import annotations

from html import escape
from typing import Any

from service.training import plots
from service.training.metrics import SMOOTHING

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; } td, th { border: 1px solid #bbb;
padding: 0.25em 0.6em; text-align: right; } th { background: #eee; } td:first-child,
th:first-child { text-align: left; } .pass { color: #176117; font-weight: bold; }
.fail { color: #a01010; font-weight: bold; } .note { color: #555; font-size: 0.9em; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; }
"""


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _ci(pair: list[float], digits: int = 3) -> str:
    return f"{_f(pair[0], digits)} to {_f(pair[1], digits)}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html(doc: dict[str, Any]) -> str:
    m, c, cal = doc["model"], doc["cohort"], doc["calibration"]
    name = f"{m['name']} {m['version']}"
    acc = doc.get("acceptance")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Site validation: {escape(name)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Site validation of {escape(name)}</h1>",
        f"<p>Cohort <code>{escape(c['file'])}</code> (sha256 <code>{escape(c['sha256'])}</code>), "
        f"n = {doc['n']}, {doc['events']} events (prevalence {_f(doc['prevalence'])}); model "
        f"artifact sha256 <code>{escape(m['sha256'])}</code>; {escape(doc['date'])}; "
        f"{doc['bootstrap_replicates']} bootstrap replicates, seed {doc['seed']}. Every patient "
        "was scored by the service's own code (input rules, unit conversion, predictor).</p>",
    ]
    if acc is not None:
        verdict = "met" if acc["passed"] else "NOT met"
        cls = "pass" if acc["passed"] else "fail"
        parts.append(f'<h2>Acceptance criteria: <span class="{cls}">{verdict}</span></h2>')
        parts.append(
            _table(
                ["criterion", "met"],
                [
                    [escape(x["criterion"]), "yes" if x["met"] else "<b>no</b>"]
                    for x in acc["criteria"]
                ],
            )
        )
    parts += [
        "<h2>Discrimination, calibration, overall</h2>",
        _table(
            ["metric", "value", "95% CI"],
            [
                ["AUC (bootstrap CI)", _f(doc["auc"]), _ci(doc["auc_ci95"])],
                [
                    "calibration-in-the-large (ideal 0; Wald CI)",
                    _f(cal["intercept"]),
                    _ci(cal["intercept_ci95"]),
                ],
                ["calibration slope (ideal 1; Wald CI)", _f(cal["slope"]), _ci(cal["slope_ci95"])],
                ["Brier score (bootstrap CI)", _f(doc["brier"], 4), _ci(doc["brier_ci95"], 4)],
                ["observed / expected events", _f(doc["observed_expected_ratio"], 2), ""],
                [
                    "mean predicted vs observed",
                    f"{_f(doc['mean_predicted'])} vs {_f(doc['prevalence'])}",
                    "",
                ],
            ],  # fmt: skip
        ),
        "<h2>Calibration</h2>",
        "<figure>",
        plots.calibration_svg(doc, f"{name}: calibration on {c['file']}"),
        f'<figcaption class="note">Smoothed curve: {escape(SMOOTHING)}. Points: deciles of '
        "predicted risk with Wilson 95% intervals.</figcaption></figure>",
        _table(
            ["decile", "n", "events", "mean predicted", "observed", "Wilson 95% CI"],
            [
                [
                    str(i),
                    str(int(b["n"])),
                    str(b["events"]),
                    _f(b["mean_predicted"]),
                    _f(b["observed"]),
                    _ci(b["observed_ci95"]),
                ]
                for i, b in enumerate(doc["calibration_by_decile"], start=1)
            ],
        ),
        "<h2>Decision curve</h2>",
        "<figure>",
        plots.decision_curve_svg(doc, f"{name}: net benefit on {c['file']}"),
        '<figcaption class="note">Net benefit = TP/n − FP/n × t/(1−t) when patients with '
        "predicted risk ≥ t are treated (Vickers &amp; Elkin 2006).</figcaption></figure>",
        "<h2>Risk bands</h2>",
        _table(
            ["band", "range", "n", "events", "observed (Wilson 95% CI)", "mean predicted"],
            [
                [
                    escape(b["band"]),
                    f"{b['lower']} to {b['upper']}",
                    str(b["n"]),
                    str(b["events"]),
                    f"{_f(b['observed'])} ({_ci(b['observed_ci95'])})",
                    _f(b["mean_predicted"]),
                ]
                for b in doc["risk_bands"]
            ],
        ),
        _table(
            [
                "cut-off (positive: p ≥ cut-off)",
                "n positive",
                "sensitivity",
                "specificity",
                "PPV",
                "NPV",
            ],
            [
                [
                    str(r["cutoff"]),
                    str(r["n_at_or_above"]),
                    _f(r["sensitivity"]),
                    _f(r["specificity"]),
                    _f(r["ppv"]),
                    _f(r["npv"]),
                ]
                for r in doc["risk_band_cutoffs"]
            ],
        ),
        "<h2>Subgroups</h2>",
    ]
    rows = []
    for var, table in doc["subgroups"].items():
        for level, e in table.items():
            auc = f"{_f(e['auc'])} ({_ci(e['auc_ci95'])})" if e["auc"] is not None else e["note"]
            rows.append(
                [
                    escape(var),
                    escape(level),
                    str(e["n"]),
                    str(e["events"]),
                    _f(e["observed"]),
                    _f(e["mean_predicted"]),
                    escape(auc),
                ]
            )
    if rows:
        parts.append(
            _table(
                ["variable", "level", "n", "events", "observed", "mean predicted", "AUC (95% CI)"],
                rows,
            )
        )
    else:
        parts.append("<p>The cohort has no subgroup columns for this model.</p>")
    parts += [
        '<p class="note">The same numbers are in validation.json beside this page. Criteria and '
        "methods: docs/VALIDATION.md in the service's repository.</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
