"""The grpo_own sweep: many GRPO runs of one warm-started policy, trained at once.

A configuration is five GRPO hyperparameters (SPACE). A population of runs, configurations
times seeds, that share a group size is one `jax.vmap` inside one `jax.jit`: the learning
rate, KL coefficient, temperature and clip range are arrays over the population; the group
size fixes shapes, so each group size is its own population. Every step spends the same number
of rollouts (Settings.rollouts_per_step = prompts x group size), so a larger group means fewer
prompts. A run's outcomes are its held-out accuracy after a fixed number of GRPO steps, greedy
and pass@1 at temperature 1.

A run depends only on its configuration, its seed and the warm start, not on which other runs
share its population (up to floating-point reassociation), so any slice of the table can be
rerun alone.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.stats
from flax import nnx

from autollm_jax.grpo_own import arithmetic
from autollm_jax.grpo_own import policies
from autollm_jax.training import grpo_loss

# name -> (scale, low, high) of the continuous hyperparameters, in sampling order.
SPACE = {
    "learning_rate": ("log", 1e-5, 3e-3),
    "kl_coef": ("log", 1e-3, 1.0),
    "temperature": ("linear", 0.5, 1.5),
    "clip_eps": ("linear", 0.05, 0.4),
}
GROUP_SIZES = (2, 4, 8, 16)
PARAM_NAMES = (*SPACE, "group_size")
METRICS = ("heldout_accuracy", "heldout_pass1")
SAMPLES_PER_PROBLEM = 4


@dataclasses.dataclass(frozen=True)
class Settings:
  """Everything besides the hyperparameters that fixes the outcomes.

  Attributes:
    num_configs, config_seed: how many configurations (`configurations`), and their seed.
    seeds: the seeds every configuration is run with.
    data_seed: seed of the train and held-out problems.
    num_train, num_test: how many of each.
    sft_seed, sft_target, sft_max_steps: the warm start (`policies.warm_start`).
    rollouts_per_step: B, sampled answers per GRPO step (prompts x group size).
    minibatches: optimizer steps per GRPO step, each on B / minibatches rollouts; from the
      second on the policy has moved, so the ratio (and its clip range) matters.
    rl_steps: GRPO steps per run.
    grad_clip_norm: global gradient-norm clip of the Adam updates.
  """
  num_configs: int = 52
  config_seed: int = 0
  seeds: tuple[int, ...] = (0, 1, 2)
  data_seed: int = 0
  num_train: int = 50_000
  num_test: int = 512
  sft_seed: int = 0
  sft_target: float = 0.4
  sft_max_steps: int = 4000
  rollouts_per_step: int = 64
  minibatches: int = 2
  rl_steps: int = 30
  grad_clip_norm: float = 1.0


def configurations(num: int, seed: int) -> dict[str, np.ndarray]:
  """`num` configurations: a Latin hypercube over SPACE (in each parameter's scale, values
  rounded to 3 significant digits) and the group sizes in equal shares, shuffled.

  Returns:
    {name: float64[num]} for every name in PARAM_NAMES.
  """
  rng = np.random.default_rng(seed)
  unit = scipy.stats.qmc.LatinHypercube(d=len(SPACE), seed=rng).random(num)
  out = {}
  for (name, (scale, lo, hi)), u in zip(SPACE.items(), unit.T):
    value = (lo * (hi / lo) ** u) if scale == "log" else lo + (hi - lo) * u
    out[name] = np.array([float(f"{v:.3g}") for v in value])
  out["group_size"] = rng.permutation(np.resize(np.array(GROUP_SIZES, np.float64), num))
  return out


def _run(graphdef: nnx.GraphDef, start: nnx.State, train: jax.Array, test: jax.Array,
         group_size: int, settings: Settings, hp: dict[str, jax.Array], seed: jax.Array
         ) -> tuple[jax.Array, jax.Array]:
  """One GRPO run from `start` (the reference policy too).

  Args:
    hp: [] arrays learning_rate, kl_coef, temperature, clip_eps.
    seed: [] int32 seed of prompts and samples.
  Returns:
    ([2] held-out accuracy at the end, greedy and pass@1 at temperature 1 (SAMPLES_PER_PROBLEM
    answers a problem), [rl_steps] mean reward of each step's rollouts).
  """
  b, g = settings.rollouts_per_step, group_size
  tx = optax.chain(optax.clip_by_global_norm(settings.grad_clip_norm),
                   optax.adam(hp["learning_rate"]))
  mask = policies.answer_mask(b // settings.minibatches)

  def step(carry, index):
    params, opt_state = carry
    k_prompt, k_sample = jax.random.split(jax.random.fold_in(jax.random.key(seed), index))
    problems = jnp.repeat(train[jax.random.randint(k_prompt, (b // g,), 0, train.shape[0])], g,
                          axis=0)
    prompts = problems[:, :arithmetic.PROMPT_LEN]
    answers, answer_logp = policies.sample_answers(graphdef, params, prompts, k_sample,
                                                   hp["temperature"])
    reward = arithmetic.rewards(answers, problems[:, arithmetic.PROMPT_LEN:])
    advantages = grpo_loss.group_advantages(reward.reshape(b // g, g)).reshape(b)
    sequences = jnp.concatenate([prompts, answers], axis=1)
    old_logp = jnp.pad(answer_logp, ((0, 0), (arithmetic.PROMPT_LEN, 0)))
    ref_logp = policies.answer_log_probs(graphdef, start, sequences)
    split = lambda x: x.reshape(settings.minibatches, -1, *x.shape[1:])

    def update(carry, minibatch):
      params, opt_state = carry
      seq, old, ref, adv = minibatch

      def loss(p):
        logp = policies.answer_log_probs(graphdef, p, seq)
        return grpo_loss.grpo_loss(logp, old, ref, adv, mask, hp["clip_eps"],
                                   hp["kl_coef"])[0]

      updates, opt_state = tx.update(jax.grad(loss)(params), opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None

    carry, _ = jax.lax.scan(update, (params, opt_state),
                            tuple(map(split, (sequences, old_logp, ref_logp, advantages))))
    return carry, reward.mean()

  (params, _), mean_rewards = jax.lax.scan(step, (start, tx.init(start)),
                                           jnp.arange(settings.rl_steps))
  sampled = policies.accuracy(graphdef, params, test, 1.0, SAMPLES_PER_PROBLEM,
                              jax.random.key(seed))
  return jnp.stack([policies.accuracy(graphdef, params, test), sampled]), mean_rewards


def train_population(graphdef: nnx.GraphDef, start: nnx.State, train: np.ndarray,
                     test: np.ndarray, group_size: int, settings: Settings,
                     hp: dict[str, np.ndarray], seeds: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
  """GRPO runs of one group size, vmapped in one jit.

  Args:
    graphdef, start: the warm-started policy.
    train, test: int32[n, SEQ_LEN] problems (`arithmetic.problems`).
    group_size: G, dividing rollouts_per_step / minibatches.
    hp: {name: float[M]} learning_rate, kl_coef, temperature, clip_eps of each run.
    seeds: int[M] each run's seed.
  Returns:
    (float64[M, 2] held-out accuracy, greedy and pass@1, float64[M, rl_steps] mean reward per
    step).
  """
  if (settings.rollouts_per_step // settings.minibatches) % group_size:
    raise ValueError(f"group_size={group_size} must divide rollouts_per_step / minibatches = "
                     f"{settings.rollouts_per_step // settings.minibatches}")
  run = lambda h, s: _run(graphdef, start, jnp.asarray(train), jnp.asarray(test), group_size,
                          settings, h, s)
  hp = {k: jnp.asarray(hp[k], jnp.float32) for k in SPACE}
  accuracy, rewards = jax.jit(jax.vmap(run))(hp, jnp.asarray(seeds, jnp.int32))
  return np.asarray(accuracy, np.float64), np.asarray(rewards, np.float64)


def run_fidelity(policy: str, settings: Settings, configs: dict[str, np.ndarray] | None = None
                 ) -> tuple[list[dict], dict]:
  """Warm-starts one policy size, then runs every configuration with every seed.

  Args:
    policy: a key of policies.POLICIES.
    settings: the sweep's settings.
    configs: {name: float[C]} for PARAM_NAMES; default `configurations(settings.num_configs,
      settings.config_seed)`.
  Returns:
    (rows: one dict per configuration and seed with the hyperparameters, "seed",
     "policy_params", the METRICS, "sft_accuracy" and "final_reward" (mean reward of the last
     quarter of steps); info: the warm start's steps and accuracy, and wall times).
  """
  if configs is None:
    configs = configurations(settings.num_configs, settings.config_seed)
  train, test = arithmetic.problems(settings.data_seed, settings.num_train, settings.num_test)
  t0 = time.perf_counter()
  graphdef, start, sft = policies.warm_start(
      policies.POLICIES[policy], train, test, seed=settings.sft_seed,
      target_accuracy=settings.sft_target, max_steps=settings.sft_max_steps)
  sft_pass1 = float(jax.jit(policies.accuracy, static_argnums=(0, 3, 4))(
      graphdef, start, jnp.asarray(test), 1.0, SAMPLES_PER_PROBLEM, jax.random.key(0)))
  t1 = time.perf_counter()
  num, seeds = len(configs["group_size"]), np.asarray(settings.seeds)
  seed_of = np.tile(seeds, num)
  config_of = np.repeat(np.arange(num), len(seeds))
  accuracy = np.zeros((len(seed_of), len(METRICS)))
  final_reward = np.zeros(len(seed_of))
  for g in sorted(set(configs["group_size"].astype(int))):
    members = np.flatnonzero(configs["group_size"][config_of] == g)
    hp = {k: configs[k][config_of[members]] for k in SPACE}
    accuracy[members], rewards = train_population(graphdef, start, train, test, g, settings,
                                                  hp, seed_of[members])
    final_reward[members] = rewards[:, -max(1, settings.rl_steps // 4):].mean(axis=1)
  rows = [{**{k: float(configs[k][c]) for k in PARAM_NAMES}, "seed": int(s),
           "policy_params": sft["n_params"], **dict(zip(METRICS, map(float, acc))),
           "sft_accuracy": sft["accuracy"], "final_reward": float(r)}
          for c, s, acc, r in zip(config_of, seed_of, accuracy, final_reward)]
  info = {"policy": policy, "n_params": sft["n_params"], "sft_steps": sft["steps"],
          "sft_accuracy": sft["accuracy"], "sft_pass1": sft_pass1, "sft_wall_s": round(t1 - t0, 1),
          "grpo_wall_s": round(time.perf_counter() - t1, 1)}
  return rows, info
