import numpy as np
import pytest

from gcpo.diagnostics.report import correlation_rows, correlations_markdown, rows_to_csv
from gcpo.diagnostics.stats import spearman


def _rows(n, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        rd = 0.0 if i % 3 == 0 else float(rng.uniform(0.1, 0.5))
        v = 0.0 if rd == 0 else float(rng.uniform(1, 10))
        rows.append(
            {
                "prompt_id": f"p{i}",
                "reward_dispersion": rd,
                "grad_variance": v,
                "grad_nsr": v / 2,
                "sig": v + float(rng.normal()),
                "noise": float(rng.normal()),
            }
        )
    return rows


def test_correlation_rows_use_only_groups_with_reward_dispersion():
    rows = _rows(30)
    corr = correlation_rows(rows, ["sig", "noise"], n_resamples=100)
    assert {(c["signal"], c["target"]) for c in corr} == {
        ("sig", "V"),
        ("sig", "NSR"),
        ("noise", "V"),
        ("noise", "NSR"),
    }
    used = [r for r in rows if r["reward_dispersion"] > 0]
    sig_v = next(c for c in corr if c["signal"] == "sig" and c["target"] == "V")
    assert sig_v["n_groups"] == len(used) == 20
    assert sig_v["spearman"] == pytest.approx(
        spearman([r["sig"] for r in used], [r["grad_variance"] for r in used])
    )
    assert sig_v["ci_low"] <= sig_v["spearman"] <= sig_v["ci_high"]


def test_markdown_table_and_too_few_groups():
    rows = _rows(30)
    corr = correlation_rows(rows, ["sig"], n_resamples=50)
    md = correlations_markdown(corr, n_groups=20, n_total=30, title="t")
    assert "| sig | +" in md and "n/a" not in md
    few = correlations_markdown(
        correlation_rows(rows[:4], ["sig"], n_resamples=10), n_groups=2, n_total=4
    )
    assert "| sig | n/a | n/a | n/a | n/a |" in few and "no correlation is defined" in few


def test_rows_to_csv_formats_floats_and_keeps_column_order():
    text = rows_to_csv([{"a": 1.0 / 3, "b": "x"}, {"b": "y", "c": 2}])
    assert text.splitlines() == ["a,b,c", "0.333333,x,", ",y,2"]
