"""autollm-jax: an LLM agent that configures expensive LLM experiments from cheap ones."""

import setuptools

# jax 0.10.x is the newest release on Python 3.11; on Python 3.12 pip resolves jax 0.11/0.12,
# which need flax >= 0.12.10 (flax <= 0.12.8 breaks on jax >= 0.11.1).
INSTALL_REQUIRES = [
    "jax>=0.10.0,<0.13",
    "flax>=0.12.8,<0.13",
    "flax>=0.12.10; python_version>='3.12'",
    "optax>=0.2.4",
    "orbax-checkpoint>=0.11",
    "chex>=0.1.88",
    "numpy>=1.26",
    "tensorstore>=0.1.70",
    "sentencepiece>=0.2.0",
    "jaxtyping>=0.2.36",
    "absl-py>=2.1",
    "ml_collections>=1.0",
    "scipy>=1.11",
    "matplotlib>=3.8",
]

# Extra names as pip >= 23.3 normalizes them (PEP 685): an older pip, such as the one a Python
# 3.11 venv starts with, matches a requested extra against the metadata's normalized name only
# when both are spelled alike, and would skip "model_import" without an error.
EXTRAS_REQUIRE = {
    "tests": ["pytest>=8"],
    "baselines": ["optuna>=3.6"],
    "model-import": ["gguf>=0.10", "tokenizers>=0.19", "safetensors>=0.4"],
}
EXTRAS_REQUIRE["all"] = sorted({r for reqs in EXTRAS_REQUIRE.values() for r in reqs})

setuptools.setup(
    name="autollm-jax",
    version="0.1.0",
    description="LLMConfig-Gym and a GRPO-trained configuration agent in JAX/Flax.",
    packages=setuptools.find_packages(include=["autollm_jax", "autollm_jax.*"]),
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
