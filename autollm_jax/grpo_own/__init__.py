"""grpo_own: the gym task made by this project's own GRPO runs (see launch/grpo_sweep.py)."""
