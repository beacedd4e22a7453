"""autollm-jax: LLMConfig-Gym and a configuration agent trained by distillation and GRPO."""
