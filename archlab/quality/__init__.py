"""Quality: data, text encoders, proxy models and training, metrics, the evolving search."""
