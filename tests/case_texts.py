"""Case texts that more than one test file writes."""

# -log(sigmoid(z)) at z = -100 in JAX: the hand-written formula overflows exp(100) (value and grad.z), the
# library log_sigmoid is exact
LOG_SIGMOID_JAX = """\
# naive log-sigmoid, JAX only
id: log-sigmoid-jax
title: -log(sigmoid(z)) at z = -100   # exp(100) overflows
kind: loss
inputs:
  z: -100.0
formula: -log(1 / (1 + exp(-z)))
reference: log1p(exp(-z))
impl:
  jax:
    log_sigmoid: -jax.nn.log_sigmoid(z)   # the stable one
frameworks: [jax]
"""
