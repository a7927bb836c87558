"""finetune-trainer: fine-tuning on Ray Train and Ray Tune. Knows nothing of Kubernetes."""

__version__ = "0.1.0"
