"""The model's scale: the shapes world's tiny backbones (a 4-layer LM) or its small ones (6 layers,
a wider CLIP), on the same data, so a study can ask whether an answer changes with scale.

``small`` swaps the vision encoder and the LM (with its tokenizer) for the small shapes
backbones of the same workbench home; build them first (``wb backbones build --size small``).
Only cross-attention intervals that divide both layer counts (1 and 2) cross with it.
"""

from pathlib import Path

from workbench.axes import Axis
from workbench.spec import RunSpec, SpecError

AXIS = Axis("scale", __doc__.splitlines()[0], baseline="tiny")


@AXIS.variant("tiny")
def tiny(spec: RunSpec) -> RunSpec:
    return spec


@AXIS.variant("small")
def small(spec: RunSpec) -> RunSpec:
    from workbench.backbones.shapes import shapes_setup

    root = Path(spec.model.lm).parent  # <home>/backbones/shapes-tiny-<recipe>/lm
    if not root.name.startswith("shapes-") or root.parent.name != "backbones":
        raise SpecError(f"scale=small needs a spec on the shapes backbones, got lm={spec.model.lm}")
    backbones = shapes_setup(root.parent.parent, "small").backbones
    if not (backbones.root / "quality.json").exists():
        build = f"wb backbones build --size small --home {root.parent.parent}"
        raise SpecError(f"scale=small: no small backbones in {backbones.root} ({build})")
    return spec.override({"model.vision": str(backbones.vision_config),
                          "model.vision_pretrained": str(backbones.vision_checkpoint),
                          "model.lm": str(backbones.lm)})  # fmt: skip
