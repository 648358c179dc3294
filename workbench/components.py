"""The one module that imports every module registering a built-in component.

Import it before building a :class:`~workbench.spec.RunSpec` (whose defaults are registered
components); the run layer, the command line and ``workbench.experiments`` do. Nothing that this
module imports may import it back.
"""

from __future__ import annotations

import workbench.data.filters  # mmc4_filter
import workbench.data.mixture  # mixture
import workbench.eval.tasks  # task
import workbench.model.embeddings  # special_embeddings
import workbench.model.factory  # the spec rule for model.xattn_every
import workbench.model.lm  # lm (adapters by model_type)
import workbench.model.presets  # preset
import workbench.model.resampler  # resampler
import workbench.model.tiny  # tiny_lm
import workbench.spec_ranges  # the spec rule for numeric ranges
import workbench.train.optim  # noqa: F401  schedule
from workbench.registry import REGISTRIES

__all__ = ["REGISTRIES"]
