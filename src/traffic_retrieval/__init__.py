"""Text-to-image retrieval for traffic scenes (a reproduction of the A3R challenge solution)."""

__version__ = "0.1.0"
