"""scraplab: SCRAPL (single-path JTFS) losses, path-wise optimisers and a DDSP sound-matching application."""

__version__ = "0.1.0"
