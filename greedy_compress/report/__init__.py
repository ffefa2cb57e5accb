"""What happened: the compression report, analysis records of a dictionary, and (in
:mod:`.plots`, which imports matplotlib) plots of them."""

from __future__ import annotations

from greedy_compress.report.report import CompressionReport, LayerReport, build_report, layer_rows

__all__ = ["CompressionReport", "LayerReport", "build_report", "layer_rows"]
