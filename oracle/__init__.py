"""oracle: measures the float32 accuracy of log-probs, losses and KL terms in TF, PyTorch and JAX."""

__version__ = "0.1.0"
