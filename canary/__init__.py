"""canary: progressive delivery judged by synthetic transactions."""

__version__ = "0.1.0"
