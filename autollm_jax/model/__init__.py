"""The policy model: configs, the Flax NNX decoder, KV cache, and pretrained importers."""
