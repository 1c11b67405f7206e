import numpy as np
import pytest

from gcpo.diagnostics.report import (
    comparison_markdown,
    comparison_rows,
    correlation_rows,
    correlations_markdown,
    rows_to_csv,
)
from gcpo.diagnostics.stats import partial_spearman, spearman


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
                "mean_tokens": float(rng.integers(3, 30)),
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
    assert sig_v["partial_given_rd_len"] == pytest.approx(
        partial_spearman(
            [r["sig"] for r in used],
            [r["grad_variance"] for r in used],
            [r["reward_dispersion"] for r in used],
            [r["mean_tokens"] for r in used],
        )
    )
    assert sig_v["partial_rd_len_ci_low"] <= sig_v["partial_given_rd_len"]
    assert sig_v["partial_given_rd_len"] <= sig_v["partial_rd_len_ci_high"]
    # rows without a completion length: that column is absent, the rest stays
    no_len = [{k: v for k, v in r.items() if k != "mean_tokens"} for r in rows]
    bare = correlation_rows(no_len, ["sig"], n_resamples=20)
    assert bare[0]["partial_given_rd_len"] is None and bare[0]["spearman"] == sig_v["spearman"]


def test_comparison_rows_difference_of_rhos_with_paired_ci():
    rows = _rows(60, seed=3)
    comp = comparison_rows(rows, [("sig", "noise"), ("sig", "missing")], n_resamples=200)
    assert [(c["signal"], c["versus"], c["target"]) for c in comp] == [
        ("sig", "noise", "V"),
        ("sig", "noise", "NSR"),
    ]  # a pair with an absent column is skipped
    used = [r for r in rows if r["reward_dispersion"] > 0]
    v = [r["grad_variance"] for r in used]
    c = comp[0]
    assert c["n_groups"] == len(used)
    assert c["difference"] == pytest.approx(
        spearman([r["sig"] for r in used], v) - spearman([r["noise"] for r in used], v)
    )
    assert 0 < c["ci_low"] < c["difference"] < c["ci_high"]  # sig tracks V, noise does not
    assert c["partial_ci_low"] <= c["partial_difference"] <= c["partial_ci_high"]
    md = comparison_markdown(comp, n_groups=len(used))
    assert "| sig − noise | V | +" in md
    assert "| sig − noise | V | n/a | n/a |" in comparison_markdown(comp, n_groups=2)


def test_markdown_table_and_too_few_groups():
    rows = _rows(30)
    corr = correlation_rows(rows, ["sig"], n_resamples=50)
    md = correlations_markdown(corr, n_groups=20, n_total=30, title="t")
    assert "| sig | +" in md and "n/a" not in md
    few = correlations_markdown(
        correlation_rows(rows[:4], ["sig"], n_resamples=10), n_groups=2, n_total=4
    )
    assert "| sig | n/a | n/a | n/a | n/a | n/a | n/a |" in few
    assert "no correlation is defined" in few


def test_rows_to_csv_formats_floats_and_keeps_column_order():
    text = rows_to_csv([{"a": 1.0 / 3, "b": "x"}, {"b": "y", "c": 2}])
    assert text.splitlines() == ["a,b,c", "0.333333,x,", ",y,2"]


def _leveled_rows(n_per_level=40, seed=0):
    """Two difficulty levels; within a level the signal is noise, but the hard level has both a
    larger signal and a larger V: pooled, the signal 'tracks' V through the level alone."""
    rng = np.random.default_rng(seed)
    rows = []
    for li, level in enumerate(["easy", "hard"]):
        for i in range(n_per_level):
            v = float(rng.uniform(1, 2)) + 5 * li
            rows.append(
                {
                    "prompt_id": f"{level}{i}",
                    "level": level,
                    "reward_dispersion": float(rng.uniform(0.1, 0.5)),
                    "grad_variance": v,
                    "grad_nsr": float(rng.uniform(1, 2)),
                    "confounded": float(rng.normal()) + 5 * li,
                    "within": v + 0.1 * float(rng.normal()),
                    "mean_tokens": float(rng.integers(3, 30)),
                }
            )
    rows.append({**rows[0], "prompt_id": "flat", "reward_dispersion": 0.0, "level": "third"})
    return rows


def test_level_rows_separate_a_difficulty_confound():
    from gcpo.diagnostics.report import level_markdown, level_rows

    rows = _leveled_rows()
    lv = level_rows(rows, ["confounded", "within"], n_resamples=200)
    conf = next(r for r in lv if r["signal"] == "confounded" and r["target"] == "V")
    within = next(r for r in lv if r["signal"] == "within" and r["target"] == "V")
    # the RD = 0 group (and its level) is out; the per-level rhos are plain Spearman on the level
    assert conf["levels"] == ["easy", "hard"] and conf["n_groups"] == 80
    easy = [r for r in rows if r["level"] == "easy"]
    assert conf["rho_easy"] == pytest.approx(
        spearman([r["confounded"] for r in easy], [r["grad_variance"] for r in easy])
    )
    assert spearman([r["confounded"] for r in rows[:80]], [r["grad_variance"] for r in rows[:80]]) > 0.5
    # given the level (with RD and length) the confounded signal no longer tracks V
    assert conf["ci_low"] < 0 < conf["ci_high"] and abs(conf["partial_given_rd_len_level"]) < 0.3
    assert within["partial_given_rd_len_level"] > 0.9 and within["ci_low"] > 0.8
    md = level_markdown(lv, n_groups=80)
    assert "| within |" in md and "easy (n=40)" in md
    # the paired difference of the level-adjusted partials
    comp = level_rows(rows, ["within", "confounded"], pairs=[("within", "confounded")], n_resamples=100)
    diff = next(r for r in comp if r.get("versus") == "confounded" and r["target"] == "V")
    assert diff["difference"] == pytest.approx(
        within["partial_given_rd_len_level"] - conf["partial_given_rd_len_level"]
    )
    assert diff["ci_low"] > 0
    # no level column (or a single level): nothing to separate
    assert level_rows([{k: v for k, v in r.items() if k != "level"} for r in rows], ["within"]) == []
    assert level_rows([r for r in rows if r["level"] == "easy"], ["within"]) == []
