"""Controls that prove the instrument: a variant that changes nothing, and planted effects.

- ``noop``: evaluates in batches twice as large. That gives it its own configuration id, but
  nothing it computes changes: rank classification scores each question on its own and the
  validation sets are read in fixed batches, so its objective equals the baseline's, seed by
  seed. A study must find no difference (the A/A test).
- ``laion_mismatched``: trains on LAION pairs whose every caption describes another scene (the
  world's ``laion_mismatched/`` shards): the image-text signal of that source is gone, and a
  study must find it worse.
"""

from pathlib import Path

from workbench.axes import Axis
from workbench.data.shapes import PLANTED_FOLDER
from workbench.data.stream import expand_shards
from workbench.spec import RunSpec, SpecError

AXIS = Axis("control", __doc__.splitlines()[0], baseline="none")


@AXIS.variant("none")
def none(spec: RunSpec) -> RunSpec:
    return spec


@AXIS.variant("noop")
def noop(spec: RunSpec) -> RunSpec:
    return spec.override({"eval.batch_size": 2 * spec.eval.batch_size})


@AXIS.variant("laion_mismatched")
def laion_mismatched(spec: RunSpec) -> RunSpec:
    pattern = spec.data.laion_shards
    folder = Path(pattern).parent if pattern else None
    if folder is None or folder.name != "laion":
        raise SpecError(
            f"control=laion_mismatched needs shards in a laion/ folder, got {pattern!r}"
        )
    planted = str(folder.parent / PLANTED_FOLDER / Path(pattern).name)
    if not all(Path(p).exists() for p in expand_shards(planted)):
        raise SpecError(f"control=laion_mismatched: {planted} is missing (prepare the world)")
    return spec.override({"data.laion_shards": planted})
