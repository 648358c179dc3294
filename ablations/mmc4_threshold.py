"""The per-image CLIP-similarity threshold of MMC4 documents (paper: 0.24; 0.28, 0.32 stricter).

Images whose assigned sentence scores below the threshold are dropped (the sentence stays);
documents left without images are dropped. Any value in [0.1, 0.4] is accepted, and searches
sample that range continuously.
"""

from workbench.axes import Axis
from workbench.spec import RunSpec, SpecError


def threshold(value: float):
    def apply(spec: RunSpec) -> RunSpec:
        return spec.override({"data.mmc4_filter.threshold": value})

    return apply


def parse(value: str):
    try:
        number = float(value)
    except ValueError:
        raise SpecError(f"mmc4_threshold: expected a number, got {value!r}") from None
    if not 0.1 <= number <= 0.4:
        raise SpecError(f"mmc4_threshold: {number} is outside [0.1, 0.4]")
    return threshold(number)


AXIS = Axis("mmc4_threshold", __doc__.splitlines()[0], "0.24", parse=parse, span=(0.1, 0.4))
for value in (0.24, 0.28, 0.32):
    AXIS.variant(str(value))(threshold(value))
