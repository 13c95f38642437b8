"""oracle: measures the float32 accuracy of log-probs, losses and KL terms in TF, PyTorch and JAX.

`oracle.load(path_or_dict)` and `oracle.run(case, ...)` are the Python API (`oracle.api`), imported on first
use: pytest imports this package in every run (the plugin), and that must stay cheap."""

__version__ = "0.1.0"
__all__ = ["load", "run"]


def __getattr__(name: str):
    if name in __all__:
        from oracle import api

        return getattr(api, name)
    raise AttributeError(f"module 'oracle' has no attribute {name!r}")
