"""The verdicts a component can get, most severe first: a row shows its worst component's, reports order by it.

Its own module, importing nothing, so that loading a case (`expect`) and rendering a report (`report.html`)
share it without importing JAX, as `compare` does."""

SEVERITY = ("error", "overflow", "underflow", "cancellation", "mismatch", "ill-conditioning", "uncertain", "domain", "ok")
