"""``harness tune``: search the compression chains of one model for the variant that best
meets a device's budget, measuring each tried chain as a cell of the results store.

:mod:`harness.tune.space` is the space of chains (prune ratio, low-rank ratio,
quantization), :mod:`harness.tune.search` decides which chain to measure next and what
the measurements rule out, :mod:`harness.tune.driver` measures them with the suite
walker."""
