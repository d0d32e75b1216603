"""Hardware fit: which variants meet a device's budgets, and which one to ship there.

A *budget* (``[budgets.<device>]`` in a suite, or ``--budget KEY=VALUE`` on the command
line) holds limits on p90 latency, peak memory, energy per inference, accuracy, output
fidelity (``min_snr_db``: the SNR of a variant's outputs against the fp32 PyTorch model,
the budget for models without labels; see :func:`fidelity_snr`) and artifact size.
Each limit becomes a :class:`BudgetCheck` (metric, limit, direction); every cell of the
run on a budgeted device is checked against all of them:

* ``fits``: every limit is met;
* ``breaks``: at least one limit is broken (each broken one says by how much);
* ``unknown``: nothing is broken but a limited metric was not measured (no energy
  reading, no labelled accuracy): never counted as fitting;
* ``failed``: the cell failed; its reason is kept.

A budget for a board (``pi4``) also holds for the emulated profiles of that board
(``pi4-emulated``, ``board = "pi4"``) unless they have their own. Emulated results are
estimates; where the store also holds a real measurement of the same board and variant
(in this run or the latest run that has one), the report sets the two side by side.

``FitReport.to_dict()`` is what ``harness fit --format json`` prints and what the HTML
report renders. Its shape (keys are always present; ``null`` where not known)::

    {
      "run_id": 3, "suite_name": "quickstart",
      "accuracy_tolerance": 0.005,          # accuracies this close count as a tie
      "devices": [{
        "device": "pi4-emulated", "board": "pi4", "emulated": true,
        "label": "estimate: emulated on this machine with pi4's caps",
        "budget_from": "pi4",               # the budget table used (own name or board)
        "budget": {"p90_ms": 20.0, ...},    # only the limits that are set
        "variants": [{
          "model", "variant", "runtime", "run_id",
          "status": "ok" | "failed", "reason": str | null,
          "verdict": "fits" | "breaks" | "unknown" | "failed",
          "summary": "p90 31.2 ms > 20 ms budget (+11.2 ms, +56%)",  # or "fits: p90 ...", ...
          "estimate": bool, "estimate_caveats": ["speed cap not enforced", ...],
          "validity": "ok" | [reasons] | null,
          "untrusted": ["unstable: trial p50s 0.82, 1, 1.3 ms (CV 23%)", ...],  # [] if valid
          "metrics": {"p50_ms", "p90_ms", "peak_memory_mb", "energy_mj",
                      "accuracy", "agreement", "snr_db", "size_bytes"},
          "checks": [{"metric": "p90_ms", "label": "p90",
                      "direction": "higher_is_worse" | "lower_is_worse",  # ceiling | floor
                      "limit", "value", "status": "met" | "broken" | "unknown",
                      "excess": value - limit | null, "relative": excess / limit | null,
                      "text": str}],
        }],
        "recommendations": [{             # one per model on this device
          "model", "variant": str | null, "runtime": str | null,  # null: nothing fits
          "fitting": int, "reason": str,
          "passed_over": {"int8/onnxruntime": "accuracy 97% against ...'s 98.1%", ...},
        }],
      }],
      "devices_without_budget": ["local"],
      "emulation_vs_real": [{
        "board", "model", "variant", "runtime",
        "emulated_device", "emulated_run_id", "real_device", "real_run_id",
        "p50_ms": {"estimate", "measured", "ratio"},          # ratio = estimate / measured
        "peak_memory_mb": {"estimate", "measured", "ratio"},
      }],
      "emulation_trust": [{                # per emulated device and board, over the pairs
        "board", "emulated_device", "pairs",
        "p50_ratio_geomean", "p50_ratio_range": [min, max] | null,
        "peak_memory_ratio_geomean", "peak_memory_ratio_range": [min, max] | null,
      }],
    }

The package, one module per job: :mod:`~harness.reports.fit.budgets` (limits and how
they read a cell, ``--budget`` parsing), :mod:`~harness.reports.fit.sources` (a suite's
budgets, the boards of emulated profiles, the run's devices),
:mod:`~harness.reports.fit.verdicts` (one cell against a budget),
:mod:`~harness.reports.fit.ranking` (the variant to ship),
:mod:`~harness.reports.fit.emulation` (estimates against real boards),
:mod:`~harness.reports.fit.plan` (the budgets and boards a run is checked against) and
:mod:`~harness.reports.fit.report` (the report of a run); the formats are in
:mod:`~harness.reports.fit.render` (imported on its own: it needs rich).
"""

from harness.reports.fit.budgets import (
    COMMAND_LINE,
    FIT_METRICS,
    BudgetCheck,
    CheckResult,
    CheckStatus,
    FitMetric,
    budget_checks,
    budget_for,
    fidelity_snr,
    parse_budget_options,
    with_overrides,
)
from harness.reports.fit.emulation import (
    EmulationComparison,
    EmulationTrust,
    EstimateVsMeasured,
    compare_emulation,
    emulation_trust,
)
from harness.reports.fit.plan import FitPlan, plan_fit
from harness.reports.fit.ranking import (
    DEFAULT_ACCURACY_TOLERANCE,
    DeviceFit,
    Recommendation,
    assess_device,
    recommend,
)
from harness.reports.fit.report import FitReport, fit_report
from harness.reports.fit.sources import (
    EMULATED_SUFFIX,
    SuiteBudgets,
    board_of,
    boards_from_profiles,
    device_selected,
    load_suite_budgets,
    run_devices,
)
from harness.reports.fit.verdicts import VariantFit, Verdict, assess_cell

__all__ = [
    "COMMAND_LINE",
    "DEFAULT_ACCURACY_TOLERANCE",
    "EMULATED_SUFFIX",
    "FIT_METRICS",
    "BudgetCheck",
    "CheckResult",
    "CheckStatus",
    "DeviceFit",
    "EmulationComparison",
    "EmulationTrust",
    "EstimateVsMeasured",
    "FitMetric",
    "FitPlan",
    "FitReport",
    "Recommendation",
    "SuiteBudgets",
    "VariantFit",
    "Verdict",
    "assess_cell",
    "assess_device",
    "board_of",
    "boards_from_profiles",
    "budget_checks",
    "budget_for",
    "compare_emulation",
    "device_selected",
    "emulation_trust",
    "fidelity_snr",
    "fit_report",
    "load_suite_budgets",
    "parse_budget_options",
    "plan_fit",
    "recommend",
    "run_devices",
    "with_overrides",
]
