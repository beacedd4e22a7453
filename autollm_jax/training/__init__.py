"""Training: optimizer, batching, metrics, policy distillation (SFT) and multi-turn GRPO."""
