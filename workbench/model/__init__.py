"""The OpenFlamingo model: vision encoder, Perceiver resampler, gated cross-attention, LM."""

from workbench.model.factory import create_model_and_transforms
from workbench.model.flamingo import Flamingo, FlamingoConfig, FlamingoOutput

__all__ = ["Flamingo", "FlamingoConfig", "FlamingoOutput", "create_model_and_transforms"]
