"""LLMConfig-Gym: data access, task tables and the tasks built from the sources."""
