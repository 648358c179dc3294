"""How each step divides its samples between LAION pairs and MMC4 documents (paper: 2:1).

``a:b`` keeps the base spec's samples per step and splits them a:b between the sources (the
``paired`` mixture, its loss multipliers at their defaults); ``laion_only`` and ``mmc4_only``
spend them all on one source.
"""

from workbench.axes import Axis
from workbench.data.mixture import mixture_for_ratio, samples_per_step, single_source_mixture
from workbench.spec import RunSpec, SpecError


def ratio(laion: int, mmc4: int):
    def apply(spec: RunSpec) -> RunSpec:
        samples = samples_per_step(spec.data.mixture)
        mixture = mixture_for_ratio({"laion": laion, "mmc4": mmc4}, samples)
        return spec.override({"data.mixture": mixture})

    return apply


def single(source: str):
    def apply(spec: RunSpec) -> RunSpec:
        mixture = single_source_mixture(source, samples_per_step(spec.data.mixture))
        return spec.override({"data.mixture": mixture})

    return apply


def parse(value: str):
    laion, sep, mmc4 = value.partition(":")
    if not (sep and laion.isdigit() and mmc4.isdigit() and int(laion) and int(mmc4)):
        raise SpecError(f"mixture: expected LAION:MMC4 as two positive integers, got {value!r}")
    return ratio(int(laion), int(mmc4))


AXIS = Axis("mixture", __doc__.splitlines()[0], baseline="2:1", parse=parse)
for laion, mmc4 in ((2, 1), (1, 1), (1, 2)):
    AXIS.variant(f"{laion}:{mmc4}")(ratio(laion, mmc4))
AXIS.variant("laion_only")(single("laion"))
AXIS.variant("mmc4_only")(single("mmc4"))
