"""Leaderboard HTML from results folders: `build_report(folders, out, ReportOptions())`.

- runs.py: results folders -> typed cells, provenance, a few samples
- leaderboard.py: per-length scores, RULER weighted averages, effective lengths
- charts.py: inline-SVG chart geometry and the score colour scale
- build.py: view models and rendering of template.html.j2 (one self-contained file)
"""

from metabench.report.build import ReportOptions, build_report, render
from metabench.report.leaderboard import Standing, effective_length, standing, weighted_average

__all__ = ["ReportOptions", "Standing", "build_report", "effective_length", "render", "standing", "weighted_average"]
