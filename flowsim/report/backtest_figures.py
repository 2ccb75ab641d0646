"""The back-test figure: error and coverage by horizon, the model beside the naive baselines.
Same conventions as ``figures.py``; the CLI hands :func:`draw_backtest` to ``run_backtest``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flowsim.report.figures import (
    NHS_BLUE,
    NHS_DARK_GREY,
    NHS_ORANGE,
    NHS_PALE_GREY,
    NHS_RED,
    _new_figure,
    _tidy,
    plain_text,
    save_atomic,
)

if TYPE_CHECKING:
    from flowsim.experiment.backtest import BacktestResult


@plain_text
def backtest_figure(result: BacktestResult, path: Path) -> Path:
    """Left: mean absolute error by horizon (model, last value, four-week mean). Right: coverage of the
    model's 50% and 90% prediction intervals with the range a calibrated forecast shows by chance."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h = result.horizons
    cfg = result.backtest.config
    fig, panel = _new_figure(11, 4.6, "Back-test", f"{cfg.name or 'back-test'}: {cfg.series}",
                             f"{len(cfg.origins)} origins, {cfg.replications} replications each (seed {cfg.seed}); "
                             "grey bands: coverage a calibrated forecast shows by chance (99%)")
    left, right = panel.subplots(1, 2)
    left.plot(h["horizon"], h["mae"], "o-", color=NHS_BLUE, label="model (mean of replications)")
    left.plot(h["horizon"], h["naive_last_mae"], "s--", color=NHS_ORANGE, label="naive: last observed value")
    left.plot(h["horizon"], h["naive_mean_mae"], "^:", color=NHS_DARK_GREY, label="naive: mean of previous 4 weeks")
    left.set_xlabel("horizon (days after the snapshot)")
    left.set_ylabel("mean absolute error")
    left.set_ylim(bottom=0)
    left.legend(fontsize=8, frameon=False)
    for level, colour in ((50, NHS_BLUE), (90, NHS_RED)):
        right.fill_between(h["horizon"], 100 * h[f"coverage_{level}_chance_low"],
                           100 * h[f"coverage_{level}_chance_high"], color=NHS_PALE_GREY, alpha=0.9)
        right.plot(h["horizon"], 100 * h[f"coverage_{level}"], "o-", color=colour, label=f"{level}% interval")
        right.axhline(level, color=colour, linestyle=":", linewidth=1)
    right.set_ylim(0, 100)
    right.set_xlabel("horizon (days after the snapshot)")
    right.set_ylabel("observations inside the prediction interval (%)")
    right.legend(fontsize=8, frameon=False)
    for ax in (left, right):
        _tidy(ax)
    return save_atomic(fig, path)


def draw_backtest(result: BacktestResult, outdir: Path) -> dict[str, Path]:
    """The back-test figure into ``outdir`` (the ``draw`` hook of ``run_backtest``)."""
    return {"figure_backtest": backtest_figure(result, outdir / "backtest.png")}
