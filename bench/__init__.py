"""relaybus benchmarks: ``python -m bench`` (``make bench``) runs them all against baselines in one run."""
