"""A gated cross-attention block before every n-th decoder layer (paper: 1, 2 or 4).

Any n dividing the LM's layer count is accepted (``--ablate xattn_every=3`` on a 24-layer LM);
fewer blocks mean fewer trainable parameters and faster steps. The rule is the spec's own
(``model.xattn_every``), so ``--set``, ``--ablate`` and Python agree.
"""

from workbench.axes import Axis
from workbench.spec import RunSpec, SpecError


def every(n: int):
    def apply(spec: RunSpec) -> RunSpec:
        return spec.override({"model.xattn_every": n})

    return apply


def parse(value: str):
    if not value.isdigit() or int(value) < 1:
        raise SpecError(f"xattn_every: expected a positive integer, got {value!r}")
    return every(int(value))


AXIS = Axis("xattn_every", __doc__.splitlines()[0], baseline="1", parse=parse)
for n in (1, 2, 4):
    AXIS.variant(str(n))(every(n))
