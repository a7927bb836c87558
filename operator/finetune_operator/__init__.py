"""finetune-operator: the Kubernetes side (API, operator, CLI) of the project."""

__version__ = "0.1.0"
