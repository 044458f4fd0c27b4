"""The judge benchmark: synthetic recordings with a known truth and reference judges."""
