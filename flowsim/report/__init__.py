"""Presentation: figures, terminal tables and board reports made from result objects.

Nothing in the domain (scenario, model, results, experiment, appraisal, sweep, calibration) imports this
package: the CLI, or any other caller, runs the domain and hands what comes back to the figure functions
(``figures``, ``appraisal_figures``, ``sweep_figures``, ``calibration_figures``, ``fitdata_figures``) and to the
reports (``html``, from Jinja2 templates in ``templates/``).
"""

from flowsim.report.figures import make_figures

__all__ = ["make_figures"]
