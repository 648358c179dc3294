"""OpenFlamingo-4B as in the paper: the released shape and recipe on real LAION/MMC4 shards.

Give the shards: `wb run openflamingo_4b --set data.laion_shards=/data/laion/{000000..010000}.tar
--set data.mmc4_shards=/data/mmc4/{000000..020000}.tar --nproc-per-node 8`. The backbones download
from the hub on a connected machine (or pass local directories with --set model.lm=...).
"""

from __future__ import annotations

from workbench.experiments import openflamingo_spec
from workbench.spec import RunSpec


def spec() -> RunSpec:
    return openflamingo_spec("openflamingo-4b", "openflamingo_4b", **{"train.strategy": "fsdp"})
