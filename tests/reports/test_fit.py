"""Hardware fit against real ResultsStore databases: verdicts at and around the limits,
unmeasured metrics, failed cells, the recommendation and its tie-break, board budgets
inherited by emulated profiles, and emulated estimates against real measurements."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from harness.errors import ConfigError
from harness.reports.fit import (
    DEFAULT_ACCURACY_TOLERANCE,
    FIT_METRICS,
    BudgetCheck,
    CheckStatus,
    Verdict,
    assess_cell,
    board_of,
    boards_from_profiles,
    budget_for,
    fit_report,
    load_suite_budgets,
    parse_budget_options,
    plan_fit,
    recommend,
    with_overrides,
)
from harness.reports.fit.render import details_text, render_json, render_markdown, render_rich
from harness.results.store import CellRecord, ResultsStore
from harness.results.thresholds import Direction
from harness.suite.config import Budget
from tests.results_builders import add_run, failed_cell, ok_cell
from tests.suite_files import REPO


@pytest.fixture
def store(tmp_path: Path):
    with ResultsStore(tmp_path / "harness.db") as s:
        yield s


def check(key: str, limit: float) -> BudgetCheck:
    return BudgetCheck(FIT_METRICS[key], limit)


def only_device(report, name: str):
    [device] = [d for d in report.devices if d.device == name]
    return device


def variant_fit(device, variant: str, runtime: str = "onnxruntime"):
    [fit] = [v for v in device.variants if v.variant == variant and v.runtime == runtime]
    return fit


# --- verdicts at and around the limits ---------------------------------------------------


@pytest.mark.parametrize(
    ("key", "limit", "cell", "status"),
    [
        ("p90_ms", 20.0, ok_cell(p90=20.0), CheckStatus.MET),  # at the limit: fits
        ("p90_ms", 20.0, ok_cell(p90=19.99), CheckStatus.MET),
        ("p90_ms", 20.0, ok_cell(p90=20.01), CheckStatus.BROKEN),
        ("peak_memory_mb", 300.0, ok_cell(peak=300.0), CheckStatus.MET),
        ("peak_memory_mb", 300.0, ok_cell(peak=300.5), CheckStatus.BROKEN),
        ("energy_mj", 5.0, ok_cell(energy=5.0), CheckStatus.MET),
        ("energy_mj", 5.0, ok_cell(energy=5.001), CheckStatus.BROKEN),
        ("min_accuracy", 0.95, ok_cell(accuracy=0.95), CheckStatus.MET),  # a floor
        ("min_accuracy", 0.95, ok_cell(accuracy=0.9499), CheckStatus.BROKEN),
        ("min_accuracy", 0.95, ok_cell(accuracy=1.0), CheckStatus.MET),
        ("max_size_bytes", 1000, ok_cell(size=1000), CheckStatus.MET),
        ("max_size_bytes", 1000, ok_cell(size=1001), CheckStatus.BROKEN),
    ],
)
def test_each_limit_holds_at_the_limit_and_breaks_just_past_it(key, limit, cell, status):
    assert check(key, limit).evaluate(cell).status is status


def test_a_broken_ceiling_says_by_how_much_absolute_and_relative():
    result = check("p90_ms", 20.0).evaluate(ok_cell(p90=31.2))
    assert result.text == "p90 31.2 ms > 20 ms budget (+11.2 ms, +56%)"
    assert result.excess == pytest.approx(11.2)
    assert result.relative == pytest.approx(0.56)
    assert result.direction is Direction.HIGHER_IS_WORSE


def test_a_missed_accuracy_floor_says_by_how_many_points():
    result = check("min_accuracy", 0.95).evaluate(ok_cell(accuracy=0.91))
    assert result.text == "accuracy 91.0% < 95.0% minimum (-4.0 pts, -4.2%)"
    assert result.excess == pytest.approx(-0.04)


def test_size_and_memory_read_in_their_units():
    size = check("max_size_bytes", 2**20).evaluate(ok_cell(size=3 * 2**20 // 2))
    assert size.text == "size 1.5 MB > 1 MB budget (+512 KB, +50%)"
    memory = check("peak_memory_mb", 300).evaluate(ok_cell(peak=250))
    assert memory.status is CheckStatus.MET and memory.text == "peak memory 250 MB <= 300 MB"


def test_a_metric_that_was_not_measured_is_unknown_not_a_pass():
    checks = [check("p90_ms", 20.0), check("energy_mj", 5.0)]
    fit = assess_cell(ok_cell(p90=10.0, energy=None), checks)
    assert fit.verdict is Verdict.UNKNOWN
    assert [c.status for c in fit.checks] == [CheckStatus.MET, CheckStatus.UNKNOWN]
    assert fit.summary == "energy unknown (not measured; limit 5 mJ)"
    # A broken limit still makes it "breaks", with the unknown one listed after it.
    fit = assess_cell(ok_cell(p90=30.0, energy=None), checks)
    assert fit.verdict is Verdict.BREAKS
    assert fit.summary.startswith("p90 30 ms > 20 ms budget") and "energy unknown" in fit.summary


def test_a_failed_cell_is_kept_with_its_reason():
    fit = assess_cell(failed_cell(reason="export_error: boom"), [check("p90_ms", 20.0)])
    assert fit.verdict is Verdict.FAILED and fit.checks == ()
    assert fit.summary == "failed: export_error: boom"


# --- the recommendation ----------------------------------------------------------------


def fits(cells: list[CellRecord], budget: Budget | None = None):
    checks = [check("p90_ms", 20.0)] if budget is None else None
    if budget is not None:
        from harness.reports.fit import budget_checks

        checks = list(budget_checks(budget))
    return [assess_cell(c, checks) for c in cells]


def test_recommends_the_best_accuracy_among_those_that_fit():
    variants = fits(
        [
            ok_cell("fp32", accuracy=0.99, p90=30.0),  # best accuracy but too slow
            ok_cell("int8", accuracy=0.97, p90=5.0),
            ok_cell("pruned", accuracy=0.95, p90=3.0),
        ]
    )
    rec = recommend("digits-cnn", variants, DEFAULT_ACCURACY_TOLERANCE)
    assert (rec.variant, rec.runtime, rec.fitting) == ("int8", "onnxruntime", 2)
    assert "best accuracy (97%)" in rec.reason and "pruned/onnxruntime at 95%" in rec.reason


def test_accuracies_within_the_tolerance_tie_and_the_lower_p90_wins():
    variants = fits(
        [
            ok_cell("fp32", accuracy=0.985, p90=8.0),
            ok_cell("int8", accuracy=0.980, p90=4.0),  # exactly 0.5 pts below: a tie
            ok_cell("fp16", accuracy=0.970, p90=1.0),  # outside the tolerance
        ]
    )
    rec = recommend("digits-cnn", variants, 0.005)
    assert rec.variant == "int8"
    assert rec.reason == (
        "accuracy 98% is within 0.5 pts of the best of the 3 variants that fit "
        "(fp32/onnxruntime, 98.5%) and its p90 is lower (4 ms against 8 ms)"
    )
    # With no tolerance the most accurate wins, however slow.
    assert recommend("digits-cnn", variants, 0.0).variant == "fp32"


def test_equal_latency_in_a_tie_goes_to_the_more_accurate():
    variants = fits([ok_cell("a", accuracy=0.980, p90=4.0), ok_cell("b", accuracy=0.984, p90=4.0)])
    assert recommend("digits-cnn", variants, 0.005).variant == "b"


def test_the_best_that_is_also_the_fastest_of_its_tie_says_so():
    variants = fits([ok_cell("a", accuracy=0.961, p90=2.0), ok_cell("b", accuracy=0.958, p90=3.0)])
    rec = recommend("digits-cnn", variants, 0.005)
    assert rec.variant == "a"
    assert rec.reason == (
        "the best accuracy (96.1%) of the 2 variants that fit; b/onnxruntime is within "
        "0.5 pts (95.8%) but slower (p90 2 ms against 3 ms)"
    )


def test_the_only_fitting_variant_is_recommended_as_such():
    variants = fits([ok_cell("fp32", p90=30.0), ok_cell("int8", p90=5.0)])
    rec = recommend("digits-cnn", variants, 0.005)
    assert rec.variant == "int8" and rec.reason.startswith("the only variant that fits")


def test_without_labels_agreement_ranks_the_variants():
    variants = fits(
        [
            ok_cell("fp32", accuracy=None, agreement=1.0, p90=9.0),
            ok_cell("int8", accuracy=None, agreement=0.96, p90=2.0),
        ]
    )
    rec = recommend("m", variants, 0.005)
    assert rec.variant == "fp32" and "best agreement (100%)" in rec.reason


def test_nothing_fits_names_the_closest_miss_and_the_rest():
    budget = Budget(p90_ms=20.0, energy_mj=5.0)
    variants = fits(
        [
            ok_cell("fp32", p90=40.0),
            ok_cell("int8", p90=22.0),
            ok_cell("qat", p90=10.0, energy=None),
            failed_cell("fp16"),
        ],
        budget,
    )
    rec = recommend("digits-cnn", variants, 0.005)
    assert rec.variant is None and rec.runtime is None and rec.fitting == 0
    assert "1 meet every measured limit but have no energy measurement" in rec.reason
    # The closest miss in its own figures, not just a percentage.
    assert (
        "2 break a budget (closest: int8/onnxruntime, p90 22 ms > 20 ms budget (+2 ms, +10%))"
        in rec.reason
    )
    assert "1 failed (fp16/onnxruntime)" in rec.reason


def test_unknown_and_failed_variants_are_never_recommended():
    variants = fits(
        [ok_cell("a", p90=1.0, energy=None), failed_cell("b"), ok_cell("c", p90=19.0)],
        Budget(p90_ms=20.0, energy_mj=5.0),
    )
    assert recommend("digits-cnn", variants, 0.005).variant == "c"


def test_a_valid_measurement_that_fits_is_preferred_to_an_invalid_one():
    variants = fits(
        [
            ok_cell("int8", accuracy=0.99, p90=2.0, validity=["unstable"]),  # best on paper
            ok_cell("pruned", accuracy=0.97, p90=3.0),
            ok_cell("fp32", accuracy=0.96, p90=4.0, validity=["throttled"]),
        ]
    )
    assert [v.verdict.value for v in variants] == ["fits"] * 3  # verdicts stay per budget
    rec = recommend("digits-cnn", variants, 0.005)
    assert (rec.variant, rec.fitting) == ("pruned", 3)
    assert rec.reason == (
        "the only validly measured variant that fits every budget (accuracy 97.0%); "
        "set aside as not validly measured: int8/onnxruntime (unstable), "
        "fp32/onnxruntime (throttled)"
    )


def test_a_pick_among_invalid_measurements_says_to_measure_again():
    variants = fits(
        [
            ok_cell("int8", accuracy=0.99, p90=2.0, validity=["unstable"]),
            ok_cell("fp32", accuracy=0.96, p90=4.0, validity=["throttled", "unstable"]),
        ]
    )
    rec = recommend("digits-cnn", variants, 0.005)
    assert rec.variant == "int8"
    assert rec.reason.endswith(
        "but no variant that fits has a valid measurement (throttled, unstable): "
        "measure again before shipping on this number"
    )


# --- budgets: inheritance, overrides, parsing ----------------------------------------


def test_a_board_budget_holds_for_its_emulated_profile_unless_it_has_its_own():
    board, own = Budget(p90_ms=20.0), Budget(p90_ms=80.0)
    assert budget_for("pi4-emulated", "pi4", {"pi4": board}) == ("pi4", board)
    assert budget_for("pi4-emulated", "pi4", {"pi4": board, "pi4-emulated": own}) == (
        "pi4-emulated",
        own,
    )
    assert budget_for("local", None, {"pi4": board}) is None


def test_board_of_uses_the_profile_then_the_naming_convention():
    assert board_of("pi4-emulated", True, {}) == "pi4"
    assert board_of("my-pi", True, {"my-pi": "pi5"}) == "pi5"
    assert board_of("my-pi", True, {}) is None
    assert board_of("pi4", False, {"pi4": "x"}) is None  # a real board emulates nothing


def test_boards_come_from_the_shipped_profiles():
    boards = boards_from_profiles([REPO / "devices"])
    assert boards["pi4-emulated"] == "pi4" and boards["jetson-nano-emulated"] == "jetson-nano"
    assert "pi4" not in boards and "local" not in boards


def test_command_line_limits_override_the_suite_key_by_key():
    suite = {"pi4": Budget(p90_ms=20.0, peak_memory_mb=300)}
    merged = with_overrides(suite, {"p90_ms": 50.0}, {"pi4-emulated": "pi4", "local": None})
    assert merged["pi4-emulated"] == Budget(p90_ms=50.0, peak_memory_mb=300)
    assert merged["local"] == Budget(p90_ms=50.0)
    assert merged["pi4"] == suite["pi4"]  # the board's own budget is left as it was
    assert with_overrides(suite, {}, {"local": None}) == suite


def test_budget_options_parse_and_validate_like_the_suite():
    assert parse_budget_options(["p90_ms=20", " peak_memory_mb = 300 ", "p90_ms=25"]) == {
        "p90_ms": 25.0,
        "peak_memory_mb": 300.0,
    }
    assert parse_budget_options(["max_size_bytes=1.5e6"]) == {"max_size_bytes": 1_500_000.0}


@pytest.mark.parametrize(
    ("option", "key", "expected"),
    [
        ("p90_ms", "--budget", "KEY=VALUE with KEY one of p90_ms"),
        ("=20", "--budget", "KEY=VALUE"),
        ("p90=20", "--budget p90", "did you mean 'p90_ms'"),
        ("p90_ms=fast", "--budget p90_ms", "a finite number"),
        ("p90_ms=nan", "--budget p90_ms", "a finite number"),
        ("p90_ms=-1", "--budget p90_ms", "greater than 0"),
        ("min_accuracy=95", "--budget min_accuracy", "less than or equal to 1"),
        ("max_size_bytes=10.5", "--budget max_size_bytes", "integer"),
    ],
)
def test_bad_budget_options_name_the_key_and_what_was_expected(option, key, expected):
    with pytest.raises(ConfigError) as info:
        parse_budget_options([option])
    assert info.value.key == key and info.value.file == "<command line>"
    assert expected in str(info.value)


def test_suite_budgets_are_read_without_loading_the_models(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(
        'name = "s"\nmodels = [{ name = "gone", factory = "no_such_module:make" }]\n'
        "[budgets.pi4]\np90_ms = 20\nmin_accuracy = 0.9\n"
    )
    loaded = load_suite_budgets(suite)
    assert loaded.budgets == {"pi4": Budget(p90_ms=20.0, min_accuracy=0.9)}
    assert tmp_path / "devices" in loaded.device_dirs
    suite.write_text("[budgets.pi4]\np90_ms = -3\n")
    with pytest.raises(ConfigError) as info:
        load_suite_budgets(suite)
    assert info.value.key == "budgets.pi4.p90_ms"


# --- the report from a store -------------------------------------------------------------


def test_report_covers_every_cell_of_a_budgeted_device(store):
    run = add_run(
        store,
        [
            ok_cell("fp32", p90=30.0),
            ok_cell("int8", p90=5.0, accuracy=0.97),
            failed_cell("fp16"),
            ok_cell("fp32", device="other"),
        ],
    )
    report = fit_report(store, run, {"local": Budget(p90_ms=20.0)})
    local = only_device(report, "local")
    assert [v.variant for v in local.variants] == ["fp32", "int8", "fp16"]
    assert [v.verdict for v in local.variants] == [Verdict.BREAKS, Verdict.FITS, Verdict.FAILED]
    assert not local.emulated and local.label == "measured" and local.budget_from == "local"
    [rec] = local.recommendations
    assert rec.variant == "int8"
    assert report.devices_without_budget == ("other",)
    assert report.suite_name == "fit-test" and report.run_id == run


def test_a_budget_with_no_limits_counts_as_none(store):
    run = add_run(store, [ok_cell()])
    report = fit_report(store, run, {"local": Budget()})
    assert report.devices == () and report.devices_without_budget == ("local",)


def test_one_recommendation_per_model(store):
    run = add_run(
        store,
        [
            ok_cell("fp32", model="a", accuracy=0.99),
            ok_cell("int8", model="a", accuracy=0.90),
            ok_cell("fp32", model="b", p90=50.0),
        ],
    )
    local = only_device(fit_report(store, run, {"local": Budget(p90_ms=20.0)}), "local")
    assert [(r.model, r.variant) for r in local.recommendations] == [("a", "fp32"), ("b", None)]


def test_the_plan_of_a_fit_lays_the_command_line_over_the_suite_for_the_asked_devices(
    store, tmp_path
):
    suite = tmp_path / "suite.toml"
    suite.write_text("[budgets.pi4]\np90_ms = 20.0\npeak_memory_mb = 300\n")
    cells = [ok_cell(device="local"), ok_cell(device="pi4-emulated", emulated=True)]
    run = store.get_run(add_run(store, cells, suite_path=suite))
    plan = plan_fit(store, run, None, {"p90_ms": 50.0}, ["pi4", "pi5"])
    assert plan.suite is not None and plan.suite.path == suite and plan.notes == ()
    assert plan.present == {"local": False, "pi4-emulated": True}
    assert plan.unknown_devices == ("pi5",)
    assert plan.boards["pi4-emulated"] == "pi4"
    assert plan.budgets["pi4"] == Budget(p90_ms=50.0, peak_memory_mb=300)
    assert "local" not in plan.budgets


def test_the_plan_of_a_fit_notes_a_missing_suite_file(store):
    run = store.get_run(add_run(store, [ok_cell()]))
    plan = plan_fit(store, run, None, {"p90_ms": 5.0})
    assert plan.suite is None and plan.devices is None
    assert plan.notes == ("the run's suite file /nonexistent/suite.toml is not there",)
    assert plan.budgets == {"local": Budget(p90_ms=5.0)}


def test_emulated_devices_inherit_the_board_budget_and_are_labelled_estimates(store):
    caveat = {"not_enforced": ["speed: needs a writable cgroup cpu controller (CFS quota)"]}
    run = add_run(
        store,
        [
            ok_cell("fp32", device="pi4-emulated", emulated=True, p90=30.0, emulation=caveat),
            ok_cell("int8", device="pi4-emulated", emulated=True, p90=10.0),
        ],
    )
    report = fit_report(store, run, {"pi4": Budget(p90_ms=20.0)}, boards={"pi4-emulated": "pi4"})
    device = only_device(report, "pi4-emulated")
    assert device.emulated and device.board == "pi4" and device.budget_from == "pi4"
    assert device.label == "estimate: emulated on this machine with pi4's caps"
    fp32 = variant_fit(device, "fp32")
    assert fp32.estimate and fp32.estimate_caveats == ("speed cap not enforced",)
    # Its own budget wins over the board's.
    own = fit_report(
        store,
        run,
        {"pi4": Budget(p90_ms=20.0), "pi4-emulated": Budget(p90_ms=50.0)},
        boards={"pi4-emulated": "pi4"},
    )
    assert only_device(own, "pi4-emulated").budget_from == "pi4-emulated"
    assert variant_fit(only_device(own, "pi4-emulated"), "fp32").verdict is Verdict.FITS


def test_device_selection_by_name_or_board(store):
    run = add_run(
        store,
        [ok_cell(device="local"), ok_cell(device="pi4-emulated", emulated=True)],
    )
    budgets = {"local": Budget(p90_ms=20.0), "pi4": Budget(p90_ms=20.0)}
    by_board = fit_report(store, run, budgets, devices=["pi4"])
    assert [d.device for d in by_board.devices] == ["pi4-emulated"]
    by_name = fit_report(store, run, budgets, devices=["local"])
    assert [d.device for d in by_name.devices] == ["local"]


def real_and_emulated(store):
    """Run 1: the board measured; run 2: its emulated profile; run 3: the board again,
    faster (the newest real measurement is the one to compare with)."""
    real_1 = add_run(store, [ok_cell("fp32", device="pi4", p50=10.0, peak=200.0)])
    emulated = add_run(
        store,
        [
            ok_cell("fp32", device="pi4-emulated", emulated=True, p50=12.0, peak=180.0),
            ok_cell("int8", device="pi4-emulated", emulated=True, p50=6.0, peak=None),
            ok_cell("fp32", device="local", p50=1.0),
        ],
    )
    real_3 = add_run(
        store,
        [
            ok_cell("fp32", device="pi4", p50=8.0, peak=200.0),
            ok_cell("int8", device="pi4", p50=4.0, peak=150.0),
            failed_cell("qat", device="pi4"),
        ],
    )
    return real_1, emulated, real_3


def test_emulated_estimates_meet_the_latest_real_measurement_across_runs(store):
    _, emulated, real_3 = real_and_emulated(store)
    budgets = {"pi4": Budget(p90_ms=100.0)}
    report = fit_report(store, emulated, budgets, boards={"pi4-emulated": "pi4"})
    pairs = {(c.variant, c.emulated_run_id, c.real_run_id): c for c in report.emulation_vs_real}
    assert set(pairs) == {("fp32", emulated, real_3), ("int8", emulated, real_3)}
    fp32 = pairs["fp32", emulated, real_3]
    assert (fp32.board, fp32.emulated_device, fp32.real_device) == ("pi4", "pi4-emulated", "pi4")
    assert fp32.p50_ms.ratio == pytest.approx(12.0 / 8.0)
    assert fp32.peak_memory_mb.ratio == pytest.approx(180.0 / 200.0)
    assert pairs["int8", emulated, real_3].peak_memory_mb.ratio is None  # no peak measured
    [trust] = report.emulation_trust
    assert trust.pairs == 2 and trust.emulated_device == "pi4-emulated"
    assert trust.p50_ratio_geomean == pytest.approx(((12 / 8) * (6 / 4)) ** 0.5)
    assert trust.peak_memory_ratio_geomean == pytest.approx(0.9)


def test_a_real_board_run_finds_its_emulated_estimates(store):
    real_1, emulated, _ = real_and_emulated(store)
    report = fit_report(store, real_1, {"pi4": Budget(p90_ms=100.0)})
    [pair] = report.emulation_vs_real
    assert (pair.variant, pair.emulated_run_id, pair.real_run_id) == ("fp32", emulated, real_1)
    assert pair.p50_ms.ratio == pytest.approx(12.0 / 10.0)
    assert only_device(report, "pi4").label == "measured"


def test_the_reported_run_has_the_last_word_on_its_own_side(store):
    add_run(store, [ok_cell("fp32", device="pi4-emulated", emulated=True, p50=99.0)])
    both = add_run(
        store,
        [
            ok_cell("fp32", device="pi4-emulated", emulated=True, p50=12.0),
            ok_cell("fp32", device="pi4", p50=10.0),
        ],
    )
    add_run(store, [ok_cell("fp32", device="pi4-emulated", emulated=True, p50=50.0)])
    report = fit_report(store, both, {"pi4": Budget(p90_ms=100.0)})
    [pair] = report.emulation_vs_real
    assert pair.p50_ms.ratio == pytest.approx(1.2) and pair.emulated_run_id == both


def test_to_dict_has_the_documented_shape_and_is_json(store):
    _, emulated, _ = real_and_emulated(store)
    report = fit_report(store, emulated, {"pi4": Budget(p90_ms=11.0, energy_mj=5.0)})
    data = json.loads(render_json(report))
    assert set(data) == {
        "run_id",
        "suite_name",
        "accuracy_tolerance",
        "devices",
        "devices_without_budget",
        "emulation_vs_real",
        "emulation_trust",
    }
    [device] = data["devices"]
    assert set(device) == {
        "device",
        "board",
        "emulated",
        "label",
        "budget_from",
        "budget",
        "variants",
        "recommendations",
    }
    assert device["budget"] == {"p90_ms": 11.0, "energy_mj": 5.0}
    variant = device["variants"][0]
    assert set(variant) >= {"verdict", "summary", "checks", "metrics", "estimate", "reason"}
    assert variant["checks"][0]["direction"] == "higher_is_worse"
    assert data["devices_without_budget"] == ["local"]
    assert set(data["emulation_vs_real"][0]["p50_ms"]) == {"estimate", "measured", "ratio"}


def test_renderers_show_verdicts_reasons_and_the_comparison(store):
    _, emulated, _ = real_and_emulated(store)
    store.record_cell(emulated, failed_cell("fp16", device="pi4-emulated", emulated=True), [])
    report = fit_report(store, emulated, {"pi4": Budget(p90_ms=11.0)})
    markdown = render_markdown(report)
    assert "## pi4-emulated (estimate: emulated on this machine with pi4's caps)" in markdown
    assert "budget (from pi4): p90 <= 11 ms" in markdown
    assert "failed: unsupported: no fp16 kernels" in markdown
    assert "p90 14.4 ms > 11 ms budget (+3.4 ms, +31%)" in markdown
    assert "- digits-cnn: int8/onnxruntime: the only variant that fits" in markdown
    assert "| pi4 | digits-cnn | fp32 | onnxruntime | 12.000 | 8.000 | 1.50x |" in markdown
    assert "not checked (no budget): local" in markdown
    out = io.StringIO()
    render_rich(report, Console(file=out, width=250, highlight=False))
    text = out.getvalue()
    assert "pi4-emulated (estimate" in text and "failed: unsupported" in text
    assert "pi4-emulated against pi4 over 2 variants: p50 estimate/measured 1.50x" in text


# --- every row says why, in the variant's own numbers ------------------------------------


def _device(report, name: str = "local"):
    return only_device(report, name)


def _why(report, variant: str, device: str = "local", runtime: str = "onnxruntime") -> str:
    dev = _device(report, device)
    return details_text(variant_fit(dev, variant, runtime), dev, report)


def test_a_fitting_variant_names_its_margins_and_why_it_was_or_was_not_picked(store):
    run = add_run(
        store,
        [
            ok_cell("fp32", accuracy=0.99, p90=0.81, peak=120.0),
            ok_cell("int8", accuracy=0.96, p90=0.5, peak=90.0),
            ok_cell("pruned", accuracy=0.987, p90=0.6, peak=95.0),
        ],
    )
    report = fit_report(store, run, {"local": Budget(p90_ms=1.0, peak_memory_mb=300)})
    fp32 = variant_fit(_device(report), "fp32")
    # The summary of a fit says what it fits with, not just "fits".
    assert fp32.summary == "fits: p90 0.81 ms <= 1 ms; peak memory 120 MB <= 300 MB"
    picked = _why(report, "pruned")
    assert picked.startswith("p90 0.6 ms <= 1 ms, peak memory 95 MB <= 300 MB; recommended: ")
    assert "the best accuracy (98.7%)" not in picked  # fp32 is best: pruned ties and is faster
    assert "accuracy 98.7% is within 0.5 pts of the best" in picked
    # The others say why they were passed over, in both variants' numbers.
    assert _why(report, "fp32").endswith(
        "not picked: accuracy 99% is within 0.5 pts of pruned/onnxruntime's 98.7%, but its "
        "p90 is higher (0.81 ms against 0.6 ms)"
    )
    assert _why(report, "int8").endswith(
        "not picked: accuracy 96% against pruned/onnxruntime's 98.7%"
    )
    [rec] = _device(report).recommendations
    assert set(dict(rec.passed_over)) == {"fp32/onnxruntime", "int8/onnxruntime"}
    assert rec.to_dict()["passed_over"]["int8/onnxruntime"].startswith("accuracy 96%")


def test_breaks_unknown_and_failed_rows_say_what_and_by_how_much(store):
    run = add_run(
        store,
        [
            ok_cell("fp32", p90=1.38),
            ok_cell("qat", p90=0.5, energy=None),
            failed_cell("fp16", reason="unsupported: no fp16 kernels"),
        ],
    )
    report = fit_report(store, run, {"local": Budget(p90_ms=1.0, energy_mj=5.0)})
    assert _why(report, "fp32") == "p90 1.38 ms > 1 ms budget (+0.38 ms, +38%)"
    assert _why(report, "qat") == "energy unknown (not measured; limit 5 mJ)"
    assert _why(report, "fp16") == "failed: unsupported: no fp16 kernels"


def test_a_measurement_not_trusted_says_why_in_its_numbers(store):
    latency = {"p50": 1.0, "p90": 1.2, "trial_p50s": [0.82, 1.0, 1.3], "count": 90}
    run = add_run(
        store,
        [
            ok_cell("int8", accuracy=0.99, validity=["unstable"], latency_ms=latency),
            ok_cell("fp32", accuracy=0.97, p90=3.0),
        ],
    )
    report = fit_report(store, run, {"local": Budget(p90_ms=20.0)})
    int8 = variant_fit(_device(report), "int8")
    assert int8.untrusted == ("unstable: trial p50s 0.82, 1, 1.3 ms (CV 23%)",)
    why = _why(report, "int8")
    assert "not picked: not validly measured (unstable: trial p50s 0.82, 1, 1.3 ms" in why
    assert why.endswith("measurement not trusted: unstable: trial p50s 0.82, 1, 1.3 ms (CV 23%)")
    assert json.loads(render_json(report))["devices"][0]["variants"][0]["untrusted"] == [
        "unstable: trial p50s 0.82, 1, 1.3 ms (CV 23%)"
    ]


def test_too_few_samples_says_how_many_were_timed():
    latency = {"p50": 1.0, "p90": 1.2, "count": 12}
    cell = ok_cell(validity=["too_few_samples"], latency_ms=latency)
    fit = assess_cell(cell, [check("p90_ms", 5.0)])
    assert fit.untrusted == ("too_few_samples: 12 timed",)


def test_unstable_within_a_trial_is_told_from_unstable_between_trials(store):
    """The quickstart's case: trials agree (CV 1%) but one trial's samples spread over
    max_cv; the row must not blame the trials' spread."""
    latency = {"p50": 0.31, "p90": 0.44, "cv": 0.162, "trial_p50s": [0.311, 0.314, 0.318]}
    cell = ok_cell(validity=["unstable"], latency_ms=latency, measure={"max_cv": 0.2})
    fit = assess_cell(cell, [check("p90_ms", 1.0)])
    assert fit.untrusted == (
        "unstable: a trial's samples spread more than the 20% CV limit; CV 16% over all "
        "samples; trial p50s 0.311, 0.314, 0.318 ms",
    )
    spread = ok_cell(
        validity=["unstable"],
        latency_ms={"p50": 1.0, "p90": 1.2, "trial_p50s": [0.82, 1.0, 1.3]},
        measure={"max_cv": 0.2},
    )
    assert assess_cell(spread, [check("p90_ms", 1.0)]).untrusted == (
        "unstable: trial p50s 0.82, 1, 1.3 ms (CV 23%)",
    )
    # A reason that carries its own numbers is kept as it is.
    loaded = ok_cell(validity=["host_loaded: 2.5 other runnable tasks"])
    assert assess_cell(loaded, []).untrusted == ("host_loaded: 2.5 other runnable tasks",)


def test_an_emulated_estimate_says_so_and_how_far_the_real_board_was(store):
    _, emulated, real_3 = real_and_emulated(store)
    report = fit_report(store, emulated, {"pi4": Budget(p90_ms=11.0)})
    why = _why(report, "fp32", device="pi4-emulated")
    assert why.startswith("p90 14.4 ms > 11 ms budget (+3.4 ms, +31%); estimate (emulated); ")
    assert why.endswith(f"pi4 measured p50 8.000 ms (run {real_3}), estimate/real 1.50x")


def test_every_row_of_the_rich_table_has_a_why(store):
    run = add_run(
        store,
        [ok_cell("fp32", p90=1.38), ok_cell("int8", p90=0.5), failed_cell("fp16")],
    )
    report = fit_report(store, run, {"local": Budget(p90_ms=1.0)})
    out = io.StringIO()
    render_rich(report, Console(file=out, width=300, highlight=False))
    text = out.getvalue()
    assert "why" in text and "details" not in text
    for expected in (
        "p90 1.38 ms > 1 ms budget (+0.38 ms, +38%)",
        "p90 0.5 ms <= 1 ms; recommended: the only variant that fits every budget",
        "failed: unsupported: no fp16 kernels",
    ):
        assert expected in text, expected
