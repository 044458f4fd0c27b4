"""A rollout's report: data (from the store or a recording), SVG charts, one self-contained HTML page."""

from canary.report.data import (
    Bucket,
    DecisionMark,
    Forecast,
    Observation,
    ReportData,
    bucket_width,
    buckets,
    from_recording,
    from_store,
)
from canary.report.html import build_charts, chart_panels, render, write_report

__all__ = [
    "Bucket",
    "DecisionMark",
    "Forecast",
    "Observation",
    "ReportData",
    "bucket_width",
    "buckets",
    "build_charts",
    "chart_panels",
    "from_recording",
    "from_store",
    "render",
    "write_report",
]
