"""How each step divides its samples between LAION pairs and MMC4 documents (paper: 2:1).

``a:b`` keeps the base spec's samples per step and splits them a:b between the sources (the
``paired`` mixture, each source's loss multiplier unchanged); ``laion_only`` and ``mmc4_only``
spend them all on one source.
"""

from workbench.axes import Axis
from workbench.spec import RunSpec, SpecError


def _samples(spec: RunSpec) -> int:
    options = spec.data.mixture.options
    if spec.data.mixture.name == "paired":
        return options.laion_batch_size + options.mmc4_batch_size
    return options.batch_size


def ratio(laion: int, mmc4: int):
    def apply(spec: RunSpec) -> RunSpec:
        total = _samples(spec)
        laion_size = round(total * laion / (laion + mmc4))
        if not 0 < laion_size < total:
            raise SpecError(f"mixture {laion}:{mmc4} leaves a source empty at {total} samples")
        return spec.override(
            {
                "data.mixture": "paired",
                "data.mixture.laion_batch_size": laion_size,
                "data.mixture.mmc4_batch_size": total - laion_size,
            }
        )

    return apply


def single(source: str):
    def apply(spec: RunSpec) -> RunSpec:
        total = _samples(spec)
        return spec.override({"data.mixture": f"{source}_only", "data.mixture.batch_size": total})

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
