"""jaxloss benchmarks: ``python -m bench``."""
