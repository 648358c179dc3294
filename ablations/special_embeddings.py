"""Do the ``<image>`` and ``<|endofchunk|>`` embeddings need to learn? (paper, open question)

``trainable`` (the reference) learns only those two rows, in a small table beside the frozen
matrix, on the input and the output side; ``frozen`` keeps the rows the LM's resize gave them.
"""

from workbench.axes import Axis
from workbench.spec import RunSpec

AXIS = Axis("special_embeddings", __doc__.splitlines()[0], baseline="trainable")


@AXIS.variant("trainable")
def trainable(spec: RunSpec) -> RunSpec:
    return spec.override({"model.special_embeddings": "trainable"})


@AXIS.variant("frozen")
def frozen(spec: RunSpec) -> RunSpec:
    return spec.override({"model.special_embeddings": "frozen"})
