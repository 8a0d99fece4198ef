"""Differentiable synthesizers (installed as ``scraplab.synths``); see synths/README.md to add one."""
from .base import Param, Synth
from .chirplet import ChirpletSynth
from .granular import GranularSynth
from .tr808 import TR808Synth

__all__ = ["Param", "Synth", "GranularSynth", "ChirpletSynth", "TR808Synth"]
