"""What the docstring examples and the README / docs code blocks run against.

Every example uses the shipped demo model (the digits CNN, trained once per session into a
temporary cache) and its bundled data, under the same names, so examples read like user
code and really run (``pytest --doctest-modules``).
"""

from __future__ import annotations

import os
import types
from typing import Any

import pytest


@pytest.fixture(scope="session", autouse=True)
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the trained demo weights in one temporary cache for the whole session."""
    os.environ["GREEDY_COMPRESS_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def example_namespace(demo_cache: None) -> dict[str, Any]:
    """The names examples may use: the demo ``model`` and its data, an ``evaluator``, a
    spatial-SVD dictionary ``scores`` of the model, and the public API."""
    import torch
    from torch import nn

    import evaluators
    import greedy_compress as gc
    from greedy_compress.demo.models import DigitsCNN
    from greedy_compress.demo.run import trained_digits_cnn

    model, data = trained_digits_cnn(progress=False)
    evaluator = evaluators.TopKAccuracy(data.val_loader())
    example_input = torch.zeros(1, 1, 8, 8)
    scores = gc.build_eval_scores(
        model, evaluator, input_shape=tuple(example_input.shape), progress=False
    )
    namespace: dict[str, Any] = {name: getattr(gc, name) for name in gc.__all__}
    namespace.update(
        gc=gc,
        torch=torch,
        nn=nn,
        DigitsCNN=DigitsCNN,
        TopKAccuracy=evaluators.TopKAccuracy,
        NegativeLoss=evaluators.NegativeLoss,
        model=model,
        data=data,
        train_loader=data.train_loader(),
        val_loader=data.val_loader(),
        evaluator=evaluator,
        example_input=example_input,
        scores=scores,
    )
    return namespace


@pytest.fixture(autouse=True)
def _doctest_names(request: pytest.FixtureRequest) -> None:
    """Give doctests the example namespace (tests ask for it by name); a module's own
    globals win over it, except submodules a package's namespace happens to hold
    (``greedy_compress.model`` is not the demo ``model``). Each example starts from the same
    random state, so what it prints does not depend on which examples ran before it."""
    if isinstance(request.node, pytest.DoctestItem):
        import torch

        torch.manual_seed(0)
        globs = request.node.dtest.globs
        for name, value in request.getfixturevalue("example_namespace").items():
            if name not in globs or isinstance(globs[name], types.ModuleType):
                globs[name] = value
