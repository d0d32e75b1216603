"""Which variant to ship on a device: the best quality among those that fit, ties
broken by p90 latency, with why every other fitting variant was passed over."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness.reports.cells import reasons_of
from harness.reports.fit.budgets import CheckStatus, budget_checks
from harness.reports.fit.figures import number
from harness.reports.fit.verdicts import VariantFit, Verdict, assess_cell
from harness.results.store import CellRecord
from harness.suite.config import Budget

# Accuracies within half a percentage point are a tie: the held-out digits set has a
# few thousand images, so smaller differences are a handful of images either way.
DEFAULT_ACCURACY_TOLERANCE = 0.005


@dataclass(frozen=True)
class Recommendation:
    model: str
    variant: str | None
    runtime: str | None
    fitting: int
    reason: str
    # Every other variant that fits, by name ("int8/onnxruntime"), with why it was not
    # the pick in the numbers of both ("accuracy 97% against fp32/onnxruntime's 98.1%").
    passed_over: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "variant": self.variant,
            "runtime": self.runtime,
            "fitting": self.fitting,
            "reason": self.reason,
            "passed_over": dict(self.passed_over),
        }


@dataclass(frozen=True)
class DeviceFit:
    device: str
    board: str | None
    emulated: bool
    budget_from: str
    budget: Budget
    variants: tuple[VariantFit, ...]
    recommendations: tuple[Recommendation, ...]

    @property
    def label(self) -> str:
        if not self.emulated:
            return "measured"
        caps = f"{self.board}'s caps" if self.board else "its profile's caps"
        return f"estimate: emulated on this machine with {caps}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "board": self.board,
            "emulated": self.emulated,
            "label": self.label,
            "budget_from": self.budget_from,
            "budget": self.budget.model_dump(exclude_none=True),
            "variants": [v.to_dict() for v in self.variants],
            "recommendations": [r.to_dict() for r in self.recommendations],
        }


def _p90_key(fit: VariantFit) -> float:
    p90 = fit.metrics["p90_ms"]
    return math.inf if p90 is None else p90


def _quality_basis(fits: list[VariantFit]) -> str | None:
    """Rank by accuracy when every candidate has one, else by agreement with fp32 when
    every candidate has that; mixing the two would compare different things."""
    for key in ("accuracy", "agreement"):
        if all(f.metrics[key] is not None for f in fits):
            return key
    return None


def _no_fit_reason(model: str, variants: list[VariantFit]) -> str:
    counts = {v: sum(1 for f in variants if f.verdict is v) for v in Verdict}
    parts = []
    if counts[Verdict.UNKNOWN]:
        missing = sorted(
            {
                c.label
                for f in variants
                if f.verdict is Verdict.UNKNOWN
                for c in f.checks
                if c.status is CheckStatus.UNKNOWN
            }
        )
        parts.append(
            f"{counts[Verdict.UNKNOWN]} meet every measured limit but have no "
            + " or ".join(missing)
            + " measurement"
        )
    breaking = [f for f in variants if f.verdict is Verdict.BREAKS]
    if breaking:
        # The closest miss: the smallest worst overshoot, so the user knows how far off.
        def worst(fit: VariantFit) -> float:
            return max(abs(c.relative or 0.0) for c in fit.checks if c.status is CheckStatus.BROKEN)

        closest = min(breaking, key=lambda f: (worst(f), _p90_key(f)))
        broken = ", ".join(c.text for c in closest.checks if c.status is CheckStatus.BROKEN)
        parts.append(f"{len(breaking)} break a budget (closest: {closest.name}, {broken})")
    if counts[Verdict.FAILED]:
        names = ", ".join(f.name for f in variants if f.verdict is Verdict.FAILED)
        parts.append(f"{counts[Verdict.FAILED]} failed ({names})")
    return "no variant fits: " + "; ".join(parts)


def _show_quality(basis: str, value: float) -> str:
    return f"{basis} {value * 100:.1f}%"


def recommend(model: str, variants: list[VariantFit], tolerance: float) -> Recommendation:
    """The variant to ship: the best accuracy among those that fit; accuracies within
    ``tolerance`` of the best are a tie, which the lowest p90 latency breaks. Variants
    whose measurement is not valid (throttled, unstable, ...) still get their verdict,
    but a valid one that fits is preferred, and a pick from invalid ones says so."""
    fitting = [f for f in variants if f.verdict is Verdict.FITS]
    if not fitting:
        return Recommendation(model, None, None, 0, _no_fit_reason(model, variants))
    valid = [f for f in fitting if not reasons_of(f.validity)]
    set_aside = [f for f in fitting if reasons_of(f.validity)]
    fits = valid or fitting
    pick, reason = _rank(fits, tolerance, "validly measured " if set_aside and valid else "")
    if valid and set_aside:
        names = ", ".join(f"{f.name} ({', '.join(reasons_of(f.validity))})" for f in set_aside)
        reason += f"; set aside as not validly measured: {names}"
    elif not valid:
        reasons = sorted({r for f in fitting for r in reasons_of(f.validity)})
        reason += (
            f"; but no variant that fits has a valid measurement ({', '.join(reasons)}): "
            "measure again before shipping on this number"
        )
    others = tuple(
        (f.name, _passed_over(f, pick, fits, tolerance, bool(valid)))
        for f in fitting
        if f is not pick
    )
    return Recommendation(model, pick.variant, pick.runtime, len(fitting), reason, others)


def _passed_over(
    fit: VariantFit, pick: VariantFit, fits: list[VariantFit], tolerance: float, valid: bool
) -> str:
    """Why ``fit`` (which fits too) is not the pick, in the numbers of both; ``fits`` are
    the candidates the pick was ranked among (the valid ones when there are any)."""
    reasons = reasons_of(fit.validity)
    if valid and reasons:
        return f"not validly measured ({', '.join(fit.untrusted or reasons)})"
    p90, pick_p90 = number(_p90_key(fit)), number(_p90_key(pick))
    basis = _quality_basis(fits)
    if basis is None:
        return f"p90 {p90} ms against {pick.name}'s {pick_p90} ms"
    quality, pick_quality = fit.metrics[basis], pick.metrics[basis]
    assert quality is not None and pick_quality is not None
    shown, pick_shown = f"{number(quality * 100)}%", f"{number(pick_quality * 100)}%"
    best = max(f.metrics[basis] or 0.0 for f in fits)
    if quality < best - tolerance - 1e-12:
        return f"{basis} {shown} against {pick.name}'s {pick_shown}"
    if _p90_key(fit) > _p90_key(pick):
        return (
            f"{basis} {shown} is within {number(tolerance * 100)} pts of {pick.name}'s "
            f"{pick_shown}, but its p90 is higher ({p90} ms against {pick_p90} ms)"
        )
    if quality == pick_quality:
        return f"ties with {pick.name} on {basis} ({shown}) and p90 ({p90} ms); the name decides"
    return f"the same p90 as {pick.name} ({p90} ms), {basis} {shown} against its {pick_shown}"


def _rank(fits: list[VariantFit], tolerance: float, qualifier: str = "") -> tuple[VariantFit, str]:
    """The best of ``fits`` (not empty) by quality with the latency tie-break, and why;
    ``qualifier`` narrows what the reason calls them ("validly measured ")."""
    basis = _quality_basis(fits)
    if basis is None:
        pick = min(fits, key=_p90_key)
        reason = (
            f"the lowest p90 ({number(_p90_key(pick))} ms) of the {len(fits)} "
            f"{qualifier}variants that fit; "
            "not every one has an accuracy or agreement to rank by"
        )
        return pick, reason

    def quality(fit: VariantFit) -> float:
        value = fit.metrics[basis]
        assert value is not None
        return value

    if len(fits) == 1:
        [pick] = fits
        shown = _show_quality(basis, quality(pick))
        reason = f"the only {qualifier}variant that fits every budget ({shown})"
        return pick, reason
    best = max(quality(f) for f in fits)
    # A small epsilon: 0.985 - 0.005 must tie with 0.98 despite binary floats.
    tied = [f for f in fits if quality(f) >= best - tolerance - 1e-12]
    pick = min(tied, key=lambda f: (_p90_key(f), -quality(f), f.variant, f.runtime))
    pct = {id(f): f"{number(quality(f) * 100)}%" for f in fits}
    tie = f"within {number(tolerance * 100)} pts"
    if len(tied) == 1:
        runner_up = max((f for f in fits if f is not pick), key=quality)
        reason = (
            f"the best {basis} ({pct[id(pick)]}) of the {len(fits)} {qualifier}variants "
            "that fit; "
            f"next: {runner_up.name} at {pct[id(runner_up)]}"
        )
    elif quality(pick) >= best - 1e-12:
        slower = min((f for f in tied if f is not pick), key=_p90_key)
        reason = (
            f"the best {basis} ({pct[id(pick)]}) of the {len(fits)} {qualifier}variants "
            "that fit; "
            f"{slower.name} is {tie} ({pct[id(slower)]}) but slower "
            f"(p90 {number(_p90_key(pick))} ms against {number(_p90_key(slower))} ms)"
        )
    else:
        most = max(tied, key=lambda f: (quality(f), -_p90_key(f)))
        reason = (
            f"{basis} {pct[id(pick)]} is {tie} of the best of the {len(fits)} "
            f"{qualifier}variants that fit ({most.name}, {pct[id(most)]}) and its p90 is lower "
            f"({number(_p90_key(pick))} ms against {number(_p90_key(most))} ms)"
        )
    return pick, reason


def assess_device(
    device: str,
    cells: list[CellRecord],
    budget_from: str,
    budget: Budget,
    board: str | None,
    tolerance: float = DEFAULT_ACCURACY_TOLERANCE,
) -> DeviceFit:
    """Every cell of one device against its budget, and a recommendation per model."""
    checks = budget_checks(budget)
    variants = tuple(assess_cell(c, checks) for c in cells)
    models = list(dict.fromkeys(c.model for c in cells))
    recommendations = tuple(
        recommend(m, [v for v in variants if v.model == m], tolerance) for m in models
    )
    return DeviceFit(
        device=device,
        board=board,
        emulated=any(c.emulated for c in cells),
        budget_from=budget_from,
        budget=budget,
        variants=variants,
        recommendations=recommendations,
    )
