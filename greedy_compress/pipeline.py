"""Several compression stages in a row, as AIMET recommends (spatial SVD, then channel pruning).

Each stage is a full :func:`greedy_compress.compress` run on the previous stage's output: its
own dictionary (built on the already compressed model), its own target relative to that
model, its own scheme. The overall kept ratio is roughly the product of the stage targets.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn
from typing_extensions import Unpack

from greedy_compress._util.constraints import bad_parameter, check_open_unit
from greedy_compress._util.io import atomic_write_json
from greedy_compress.api import compress
from greedy_compress.apply import FinetuneCallback
from greedy_compress.dictionary import BuildOptions, BuildSettings, Evaluator
from greedy_compress.dictionary.bounds import config_bounds, named_layers
from greedy_compress.model.config_list import ConfigList
from greedy_compress.model.cost import Cost
from greedy_compress.report import CompressionReport
from greedy_compress.schemes import Scheme, scheme_with_data
from greedy_compress.selection import MaxDrop, Solver, check_max_drop, get_solver

__all__ = ["AIMET_PIPELINE", "PipelineReport", "compress_pipeline"]

#: AIMET's recommended sequence; channel pruning needs that scheme to be registered.
AIMET_PIPELINE: tuple[tuple[str, float], ...] = (("spatial_svd", 0.8), ("channel_pruning", 0.8))

_OWNER = "compress_pipeline"


@dataclass(frozen=True)
class PipelineReport:
    """The reports of every stage, and the model before the first and after the last."""

    stages: list[CompressionReport]

    @property
    def model_before(self) -> Cost:
        """Measured cost of the original model."""
        return self.stages[0].model_before

    @property
    def model_after(self) -> Cost:
        """Measured cost of the final model."""
        return self.stages[-1].model_after

    @property
    def achieved_ratio(self) -> float:
        """Final cost over original cost, in the stages' metric."""
        metric = self.stages[0].cost_metric
        return self.model_after.get(metric) / self.model_before.get(metric)

    @property
    def baseline_score(self) -> float:
        """Score of the original model."""
        return self.stages[0].baseline_score

    @property
    def final_score(self) -> float:
        """Score of the final model."""
        return self.stages[-1].final_score

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return {
            "achieved_ratio": self.achieved_ratio,
            "baseline_score": self.baseline_score,
            "final_score": self.final_score,
            "stages": [stage.to_dict() for stage in self.stages],
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the report as JSON, atomically."""
        atomic_write_json(path, self.to_dict())

    def to_table(self) -> str:
        """One line per stage, then the whole pipeline."""
        lines = []
        for i, stage in enumerate(self.stages, 1):
            lines.append(
                f"stage {i}: {stage.scheme:<16} target {stage.target:g}, achieved "
                f"{stage.achieved_ratio:.4f}; score {stage.baseline_score:.4f} -> "
                f"{stage.final_score:.4f}"
            )
        metric = self.stages[0].cost_metric
        lines.append(
            f"pipeline: {metric} kept {self.achieved_ratio:.4f}; score "
            f"{self.baseline_score:.4f} -> {self.final_score:.4f}"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_table()


def _check_stages(stages: Any, data: Any) -> list[tuple[Scheme, float]]:
    allowed = "a non-empty sequence of (scheme, target) pairs with target in (0, 1)"
    if isinstance(stages, (str, bytes)) or not isinstance(stages, Sequence) or not stages:
        raise bad_parameter("stages", _OWNER, allowed, stages)
    checked = []
    for stage in stages:
        if not isinstance(stage, (tuple, list)) or len(stage) != 2:
            raise bad_parameter("stages", _OWNER, allowed, stage)
        scheme, target = stage
        scheme = scheme_with_data(scheme, data, _OWNER)
        scheme.check_ready()  # e.g. channel pruning without data: fail before stage 1
        checked.append((scheme, check_open_unit(target, "target", _OWNER)))
    return checked


def _check_config_list(model: nn.Module, config_list: ConfigList, stages: int) -> None:
    """Refuse, before the first stage, a config list a later stage could not read: a stage
    replaces the layers it compresses, so only the names of layers left alone (``exclude``
    entries) hold in every stage."""
    config_bounds(model, config_list, owner=_OWNER)
    if stages > 1 and named_layers(config_list):
        raise bad_parameter(
            "config_list",
            _OWNER,
            "entries without 'op_names' outside 'exclude' entries when there are several "
            "stages (a stage renames the layers it compresses; choose them by 'op_types')",
            config_list,
        )


def compress_pipeline(
    model: nn.Module,
    evaluator: Evaluator,
    *,
    stages: Sequence[tuple[str | Scheme, float]] = AIMET_PIPELINE,
    solver: str | Solver = "greedy",
    scores_dir: str | os.PathLike[str] | None = None,
    finetune: FinetuneCallback | None = None,
    max_drop: float | MaxDrop | None = None,
    monotone: bool = False,
    data: Iterable[Any] | None = None,
    settings: BuildSettings | None = None,
    **options: Unpack[BuildOptions],
) -> tuple[nn.Module, PipelineReport]:
    """Compress in stages, each with its own scheme and target, each scored on the last's output.

    AIMET's recommendation is spatial SVD to 0.8 then channel pruning to 0.8 (the default;
    channel pruning samples ``data`` for its reconstruction); any registered scheme name or
    instance works. ``model`` is not modified. The other arguments are those of
    :func:`greedy_compress.compress`, applied to every stage.

    Args:
        stages: ``(scheme, target)`` pairs; each target is relative to that stage's input.
        scores_dir: folder for one dictionary file per stage (``stage1-spatial_svd.json``...),
            reused and resumed like ``scores_path``.
        data: batches of inputs (e.g. the training DataLoader) given to stages named by a
            scheme that samples data (``channel_pruning``, ``filter_pruning_nuclear``).

    A ``config_list`` applies to every stage, its bounds relative to that stage's input;
    with several stages it may name layers (``op_names``) only to exclude them.

    Returns:
        The final model and a :class:`PipelineReport` holding every stage's report.

    Example:
        >>> small, report = compress_pipeline(model, evaluator, input_shape=(1, 1, 8, 8),
        ...                                   stages=[("spatial_svd", 0.8), ("weight_svd", 0.8)],
        ...                                   candidates=4, progress=False)
        >>> len(report.stages), report.achieved_ratio < 0.8
        (2, True)
    """
    # Check everything cheap before the first (expensive) dictionary.
    checked = _check_stages(stages, data)
    config = BuildSettings.resolve(settings, dict(options), _OWNER)
    solver = get_solver(solver, _OWNER)
    check_max_drop(max_drop, _OWNER)
    example = config.example_for(model, _OWNER)
    config = config.replace(owner=_OWNER, example_input=example, input_shape=None)
    if config.config_list is not None:
        _check_config_list(model, config.config_list, len(checked))
    folder = None if scores_dir is None else Path(scores_dir)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    current, reports = model, []
    for index, (scheme, target) in enumerate(checked, 1):
        path = None if folder is None else folder / f"stage{index}-{scheme.name}.json"
        current, report = compress(
            current,
            evaluator,
            target=target,
            scheme=scheme,
            solver=solver,
            scores_path=path,
            finetune=finetune,
            max_drop=max_drop,
            monotone=monotone,
            settings=config,
        )
        reports.append(report)
    return current, PipelineReport(stages=reports)
