"""A gated cross-attention block before every n-th decoder layer (paper: 1, 2 or 4).

Any n dividing the LM's layer count is accepted (``--ablate xattn_every=3`` on a 24-layer LM);
fewer blocks mean fewer trainable parameters and faster steps.
"""

from workbench.axes import Axis
from workbench.model.factory import lm_layer_count
from workbench.spec import RunSpec, SpecError


def every(n: int):
    def apply(spec: RunSpec) -> RunSpec:
        layers = lm_layer_count(spec.model.lm)
        if layers is not None and layers % n:
            valid = [d for d in range(1, layers + 1) if layers % d == 0]
            raise SpecError(
                f"xattn_every={n} does not divide the LM's {layers} layers; valid: {valid}"
            )
        return spec.override({"model.xattn_every": n})

    return apply


def parse(value: str):
    if not value.isdigit() or int(value) < 1:
        raise SpecError(f"xattn_every: expected a positive integer, got {value!r}")
    return every(int(value))


AXIS = Axis("xattn_every", __doc__.splitlines()[0], baseline="1", parse=parse)
for n in (1, 2, 4):
    AXIS.variant(str(n))(every(n))
