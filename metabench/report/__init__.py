"""Leaderboard HTML from results folders: `build_report(folders, out, ReportOptions())`.

- runs.py: results folders -> typed cells, provenance, a few samples
- leaderboard.py: per-length scores, RULER weighted averages, effective lengths
- analyses.py: `metabench analyze` results (analysis.json), validated, for the Analyses section
- charts.py: inline-SVG chart geometry and the colour scales
- build.py: view models and rendering of template.html.j2 (one self-contained file)
"""

from metabench.report.build import ReportOptions, build_report, render
from metabench.report.leaderboard import Standing, effective_length, standing, weighted_average

__all__ = ["ReportOptions", "Standing", "build_report", "effective_length", "render", "standing", "weighted_average"]
