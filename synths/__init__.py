"""Differentiable synthesizers (installed as ``scraplab.synths``)."""
