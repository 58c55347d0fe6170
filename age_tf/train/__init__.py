"""Training: backbones and model, strategies, callbacks, the training loop, export."""
