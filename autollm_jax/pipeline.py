"""The whole training pipeline: `train_and_evaluate(config, workdir)`.

Stages (each resumes where a previous run stopped; `config.stages` chooses which run):
  simulate   curation, the teacher playing the train experiments in the text protocol, a
             SentencePiece tokenizer trained on that text (models trained from scratch) or the
             pretrained model's own with the protocol markers (config.model.checkpoint="gguf"),
             the tokenized trajectories                    -> <workdir>/simulation/
  sft        policy distillation on the trajectories        -> <workdir>/sft/checkpoints
             and how closely the policy then reproduces the teacher's turns, on the train
             trajectories and on the test experiments (`report_imitation`)
  rl         multi-turn GRPO from the distilled policy (KL to it)
                                                            -> <workdir>/rl/checkpoints
  rl_only    the ablation: GRPO from a fresh policy (KL to that fresh policy)
                                                            -> <workdir>/rl_only/checkpoints
  evaluate   the policies (agents sft, rl_only, sft_rl) and the baselines on the test split
                                                            -> <workdir>/eval/report.*
A pretrained backbone (config.model.checkpoint="gguf": the GGUF weights of config.model.name)
is where SFT and RL alone start; a model trained from scratch starts from a random init.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import TYPE_CHECKING, Sequence

from absl import logging
import jax
import ml_collections
import numpy as np
from flax import nnx

from autollm_jax import agents as agents_lib
from autollm_jax import checkpoint as checkpoint_lib
from autollm_jax import env as env_lib
from autollm_jax import evaluation
from autollm_jax import experiments as experiments_lib
from autollm_jax import grammar
from autollm_jax import memory
from autollm_jax import protocol_tokenizer
from autollm_jax import report as report_lib
from autollm_jax import rollout as rollout_lib
from autollm_jax import sharding as sharding_lib
from autollm_jax import sp_tokenizer
from autollm_jax import trajectories
from autollm_jax.agents import policy as policy_lib
from autollm_jax.agents import teacher as teacher_lib
from autollm_jax.gym import tasks
from autollm_jax.gym.table import TaskTable
from autollm_jax.model import config as model_config_lib
from autollm_jax.model import transformer
from autollm_jax.tokenizer import Tokenizer, tokenizer_from_blob
from autollm_jax.training import batching
from autollm_jax.training import grpo
from autollm_jax.training import imitation
from autollm_jax.training import metrics as metrics_lib
from autollm_jax.training import sft

if TYPE_CHECKING:
  from autollm_jax.model import weights

STAGES = ("simulate", "sft", "rl", "rl_only", "evaluate")
POLICY_STAGES = {"sft": "sft", "rl": "sft_rl", "rl_only": "rl_only"}
# The ablation's questions, as paired differences in the report: does RL improve on the
# distilled policy, and how far is each policy from the teacher it imitates.
COMPARISONS = (("sft_rl", "sft"), ("sft", "teacher"), ("sft_rl", "teacher"),
               ("rl_only", "sft_rl"))


def parse_stages(text: str) -> tuple[str, ...]:
  """The stages named in a comma-separated string, checked against STAGES."""
  stages = tuple(s.strip() for s in text.split(",") if s.strip())
  unknown = [s for s in stages if s not in STAGES]
  if unknown:
    raise ValueError(f"config.stages={text!r}: unknown stage(s) {unknown}; stages are "
                     f"{', '.join(STAGES)}")
  return stages


def check_config(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The stages to run, once the fields that only late stages read are checked too: a
  mistyped override must stop the run before anything trains, not after.

  Raises:
    ValueError: naming the field and the fix.
  """
  stages = parse_stages(config.stages)
  if config.simulation.teacher_sees not in ("prompt", "all"):
    raise ValueError(f"config.simulation.teacher_sees: {config.simulation.teacher_sees!r}; "
                     f"write 'prompt' (the cheap runs the prompt shows) or 'all'")
  budget_fields = [("simulation.budgets", config.simulation.budgets)]
  if {"rl", "rl_only"} & set(stages):
    budget_fields.append(("rl.budgets", config.rl.budgets))
  for field, budgets in budget_fields:
    try:
      experiments_lib.check_budgets(budgets)
    except ValueError as e:
      raise ValueError(f"config.{field}: {e}; write a tuple such as (5,), the test "
                       f"budget") from None
  if "evaluate" in stages:
    baselines = [n for n in agents_lib.names() if not agents_lib.takes_checkpoint(n)]
    for name in config.eval.agents:
      if name in baselines:
        continue
      if "," in name:  # ml_collections reads --config.eval.agents=a,b as the one name "a,b"
        listed = ", ".join(repr(n.strip()) for n in name.split(","))
        fix = f'write the tuple: --config.eval.agents="({listed},)"'
      else:
        fix = (f"use some of {', '.join(baselines)} (the trained policies are evaluated as "
               f"{', '.join(POLICY_STAGES.values())} by their stages)")
      raise ValueError(f"config.eval.agents: {name!r} is not an agent here; {fix}")
  return stages


def check_batches_fit_mesh(config: ml_collections.ConfigDict, stages: Sequence[str],
                           fsdp: int) -> None:
  """Raises ValueError, naming the fields, where a training stage's micro-batch of sequences
  cannot be split evenly over the mesh's `fsdp` devices (checked before anything runs)."""
  sizes = []
  if "sft" in stages:
    sizes.append(("sft.batch_size / sft.grad_accum_steps", config.sft.batch_size,
                  config.sft.grad_accum_steps))
  if {"rl", "rl_only"} & set(stages):
    sizes.append(("rl.experiments_per_batch * rl.group_size / rl.minibatches / "
                  "rl.grad_accum_steps", config.rl.experiments_per_batch * config.rl.group_size,
                  config.rl.minibatches * config.rl.grad_accum_steps))
  for fields, rows, parts in sizes:
    if rows % parts or (rows // parts) % fsdp:
      raise ValueError(f"config.{fields} = {rows} / {parts} sequences per micro-batch, split "
                       f"over the mesh's {fsdp} fsdp devices: make it a whole multiple of "
                       f"{fsdp} (or set --config.mesh.fsdp)")


@dataclasses.dataclass
class Setup:
  """What every stage needs: tables, experiments, and the protocol settings."""

  tables: dict[str, TaskTable]
  train: list[experiments_lib.Experiment]
  test: list[experiments_lib.Experiment]
  settings: policy_lib.PolicySettings


def setup(config: ml_collections.ConfigDict) -> Setup:
  """Loads the tasks and curates the experiments (the train set subsampled if asked)."""
  data_dir = config.data.gym_data_dir or None
  tables = {name: tasks.load_task(name, data_dir) for name in config.data.tasks}
  curated = experiments_lib.curate(list(tables.values()), seed=config.data.curation_seed,
                                   candidate_subsets=config.data.candidate_subsets,
                                   row_subsets=config.data.row_subsets)
  settings = policy_lib.PolicySettings(
      max_prompt_rows=config.data.max_prompt_rows,
      max_context_fidelities=config.data.max_context_fidelities,
      turn_tokens=config.policy.turn_tokens, think_tokens=config.policy.think_tokens,
      temperature=config.eval.temperature, tasks=tuple(config.data.tasks))
  shown = [policy_lib.prompt_experiment(e, tables[e.task], settings) for e in curated]
  train = [e for e in shown if e.split == "train"]
  limit = config.data.max_train_experiments
  if 0 < limit < len(train):
    keep = np.sort(np.random.default_rng(config.data.curation_seed).choice(
        len(train), limit, replace=False))
    train = [train[i] for i in keep]
  test = [e for e in curated if e.split == "test"]
  return Setup(tables, train, test, settings)


def simulate(config: ml_collections.ConfigDict, workdir: pathlib.Path, s: Setup,
             tokenizer: Tokenizer | None = None) -> tuple[Tokenizer, list, list]:
  """The teacher's trajectories and their tokenizer (built once, then read back).

  Args:
    tokenizer: a pretrained model's tokenizer with the protocol markers; None trains a
      SentencePiece model on the trajectories' text.
  """
  directory = workdir / "simulation"
  tokenizer_path = directory / "tokenizer.blob"
  if not (directory / "manifest.json").is_file():
    logging.info("simulating the teacher on %d train experiments x %d seeds x budgets %s",
                 len(s.train), len(config.simulation.seeds), config.simulation.budgets)
    episodes = trajectories.simulate(teacher_lib.Teacher(config.simulation.reasoning),
                                     s.train, s.tables,
                                     config.simulation.seeds, config.simulation.budgets,
                                     config.data.max_prompt_rows,
                                     config.simulation.teacher_sees == "prompt")
    if tokenizer is None:
      tokenizer = sp_tokenizer.train_sentencepiece([e.text for e in episodes],
                                                   config.tokenizer.vocab_size)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer_path.write_bytes(tokenizer.to_blob())
    trajectories.save(directory, episodes, tokenizer.to_blob(), tokenizer,
                      {"seed": config.seed, "agent": "teacher",
                       "seeds": list(config.simulation.seeds),
                       "budgets": list(config.simulation.budgets),
                       "reasoning": config.simulation.reasoning,
                       "teacher_sees": config.simulation.teacher_sees,
                       "max_prompt_rows": config.data.max_prompt_rows})
  saved = tokenizer_path.read_bytes()
  if tokenizer is None:
    tokenizer = tokenizer_from_blob(saved)
  elif tokenizer.to_blob() != saved:
    raise ValueError(f"{directory} was tokenized for another model than {config.model.name!r} "
                     f"(its {tokenizer_path.name} differs); use a fresh --workdir")
  sequences, masks, manifest = trajectories.load(directory)
  logging.info("trajectories: %d episodes, %d tokens (%d agent tokens), teacher regret %.3f",
               manifest["episodes"], manifest["tokens"], manifest["agent_tokens"],
               manifest["mean_final_regret"])
  return tokenizer, sequences, masks


def _model_overrides(config: ml_collections.ConfigDict) -> dict:
  return dict(dtype=config.model.dtype, param_dtype=config.model.param_dtype,
              remat=config.model.remat, scan_layers=config.model.scan_layers,
              max_seq_len=config.model.max_seq_len, attention=config.model.attention)


def policy_model_config(config: ml_collections.ConfigDict, vocab_size: int):
  """The config of a policy trained from scratch on a `vocab_size` tokenizer."""
  return model_config_lib.get_config(config.model.name, vocab_size=vocab_size,
                                     **_model_overrides(config))


def pretrained_backbone(config: ml_collections.ConfigDict) -> weights.Pretrained | None:
  """The pretrained model to fine-tune (`weights.Pretrained`, params in
  config.model.param_dtype, its tokenizer with the protocol markers), or None when the policy
  is trained from scratch.

  config.model.checkpoint says which: "" from scratch; "gguf" the GGUF weights bundled for
  config.model.name; otherwise a Hugging Face checkpoint directory (config.json,
  tokenizer.json, *.safetensors) of config.model.name's family, Qwen3 or Llama, whose shapes
  its config.json gives (`safetensors_import.load_pretrained_dir`).
  """
  checkpoint = config.model.checkpoint
  if not checkpoint:
    return None
  # Imported here: they need the model-import extra (gguf, tokenizers, safetensors).
  # pylint: disable=import-outside-toplevel
  from autollm_jax.model import gguf_import
  from autollm_jax.model import safetensors_import
  # pylint: enable=import-outside-toplevel
  if checkpoint == "gguf":
    pretrained = gguf_import.load_pretrained(config.model.name, **_model_overrides(config))
  elif pathlib.Path(checkpoint).is_dir():
    template = model_config_lib.get_config(config.model.name, **_model_overrides(config))
    pretrained = safetensors_import.load_pretrained_dir(checkpoint, template)
  else:
    bundled = ", ".join(sorted(gguf_import.PRETRAINED_GGUF))
    raise ValueError(f"config.model.checkpoint={checkpoint!r} is no directory: the pipeline "
                     "trains from scratch (''), fine-tunes the GGUF weights of "
                     f"config.model.name ('gguf', for {bundled}), or fine-tunes a Hugging "
                     "Face checkpoint directory of its family (config.json, tokenizer.json, "
                     "*.safetensors)")
  return dataclasses.replace(pretrained, tokenizer=protocol_tokenizer.for_pretrained(
      config.model.name, pretrained.tokenizer))


def report_imitation(config: ml_collections.ConfigDict, workdir: pathlib.Path, s: Setup,
                     tokenizer: Tokenizer, graphdef: nnx.GraphDef, params: nnx.State,
                     sequences: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                     batch_size: int) -> dict[str, float]:
  """How closely the distilled policy reproduces the teacher (`imitation.match_stats` under
  teacher forcing), on its training trajectories and on the teacher's episodes of the test
  experiments (at the evaluation budget), which it never saw; logged and appended to
  `<workdir>/metrics.jsonl` as stage "sft_imitation". `batch_size` sequences go through the
  model at once (SFT's micro-batch fits in memory). `config.sft.imitation_train_episodes`
  (0: all) caps the training episodes scored, evenly spaced among them: one forward pass each
  is a third of an SFT epoch's compute. Where the metrics file already has the record of this
  step (a resumed run whose SFT had finished), it is returned as it is.

  Returns:
    {"train_token_match", "train_turn_match", "train_first_turn_match", the same with
    "test_", and "train_episodes", "test_episodes": how many episodes each set scored}.
  """
  for record in metrics_lib.read_metrics(workdir, "sft_imitation"):
    if record["step"] == config.sft.total_steps:
      return {k: v for k, v in record.items() if k.startswith(("train_", "test_"))}
  limit = config.sft.imitation_train_episodes
  if 0 < limit < len(sequences):
    keep = np.linspace(0, len(sequences) - 1, limit).round().astype(int)
    sequences, masks = [sequences[i] for i in keep], [masks[i] for i in keep]
  shown = [policy_lib.prompt_experiment(e, s.tables[e.task], s.settings) for e in s.test]
  episodes = trajectories.simulate(teacher_lib.Teacher(config.simulation.reasoning), shown,
                                   s.tables, config.simulation.seeds[:1], (config.eval.budget,),
                                   config.data.max_prompt_rows,
                                   config.simulation.teacher_sees == "prompt")
  token_tables = grammar.TokenTables.build(tokenizer)
  test_sequences, test_masks = zip(*(trajectories.tokenize(e, token_tables) for e in episodes))
  # One pass over both sets: each padded length compiles once.
  predicted = imitation.predicted_tokens(graphdef, params, [*sequences, *test_sequences],
                                         tokenizer.pad_id, batch_size)
  scores = {}
  for split, split_predicted, split_sequences, split_masks in (
      ("train", predicted[:len(sequences)], sequences, masks),
      ("test", predicted[len(sequences):], test_sequences, test_masks)):
    stats = imitation.match_stats(split_predicted, split_sequences, split_masks)
    scores.update({f"{split}_{k}": v for k, v in stats.items()})
    scores[f"{split}_episodes"] = len(split_sequences)
  metrics_lib.MetricsWriter(workdir, "sft_imitation").write(config.sft.total_steps, scores)
  return scores


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict:
  """Runs the configured stages; returns the evaluation report (or {} without evaluate)."""
  stages = check_config(config)
  mesh = sharding_lib.make_mesh(config.mesh.fsdp, config.mesh.tensor)
  check_batches_fit_mesh(config, stages, mesh.shape[sharding_lib.FSDP])
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "config.json").write_text(config.to_json_best_effort(indent=1))
  s = setup(config)
  logging.info("experiments: %d train, %d test", len(s.train), len(s.test))
  pretrained = pretrained_backbone(config)
  tokenizer, sequences, masks = simulate(config, workdir, s,
                                         None if pretrained is None else pretrained.tokenizer)
  blob = tokenizer.to_blob()
  # Every turn must have room for the longest action: checked before anything trains.
  rollout_lib.check_turn_tokens(
      rollout_lib.RolloutConfig(s.settings.turn_tokens, think_tokens=s.settings.think_tokens),
      env_lib.build_env_params(s.tables, s.train + s.test, tokenizer))
  if pretrained is None:
    model_config, init_params = policy_model_config(config, tokenizer.vocab_size), None
  else:
    model_config, init_params = pretrained.config, pretrained.params
  # SFT's longest batch: its micro-batch of sequences padded to the longest bucket.
  longest = batching.bucket_lengths(max(len(x) for x in sequences))[-1]
  micro_batch = config.sft.batch_size // config.sft.grad_accum_steps
  logging.info("%s", memory.estimate(model_config, micro_batch, longest,
                                     transformer.fused_attention(model_config)).summary())
  graphdef, _ = transformer.abstract_model(model_config)

  policies: dict[str, nnx.State] = {}
  if "sft" in stages:
    policies["sft"] = sft.train(config.sft, workdir / "sft", sequences, masks, model_config,
                                blob, tokenizer.pad_id, mesh, init_params, seed=config.seed)
    s.settings.save(workdir / "sft" / "checkpoints")
    report_imitation(config, workdir / "sft", s, tokenizer, graphdef, policies["sft"],
                     sequences, masks, micro_batch)
  rl_stages = [st for st in ("rl", "rl_only") if st in stages]
  if rl_stages:
    rl_train = experiments_lib.at_budgets(s.train, config.rl.budgets)
    env_params = env_lib.build_env_params(s.tables, rl_train, tokenizer,
                                          regret_kind=config.rl.regret_kind)
    logging.info("environment tables: %.2f MiB (the action grammar: %d states, %.2f MiB)",
                 memory.tree_bytes(env_params) / 2**20, env_params.grammar.fsm.num_states,
                 memory.tree_bytes(env_params.grammar) / 2**20)
    trainer = grpo.GrpoTrainer(
        config.rl, model_config, graphdef, env_params,
        policy_lib.prompt_tokens(s.tables, rl_train, tokenizer, s.settings), tokenizer.pad_id,
        rollout_lib.stop_token(tokenizer), mesh)
  for stage in rl_stages:
    if stage == "rl":
      if "sft" not in policies:
        raise ValueError("the rl stage starts from the distilled policy: add 'sft' to stages")
      start = policies["sft"]
    elif init_params is not None:
      start = init_params
    else:
      _, start = nnx.split(transformer.create_model(model_config, config.seed + 1))
    policies[stage] = grpo.train(trainer, workdir / stage, start, start, blob,
                                 seed=config.seed, stage=stage)
    s.settings.save(workdir / stage / "checkpoints")

  if "evaluate" not in stages:
    return {}
  agents = {}
  for name in config.eval.agents:
    agent = agents_lib.make(name)
    agent.fit(s.train, s.tables)
    agents[name] = agent
  for stage, params in policies.items():
    agents[POLICY_STAGES[stage]] = policy_lib.PolicyAgent(graphdef, params, model_config,
                                                          tokenizer, s.settings)
  result = evaluation.evaluate(agents, s.test, s.tables, range(config.eval.seeds),
                               config.eval.budget)
  report_lib.add_comparisons(result, COMPARISONS)
  paths = report_lib.write(result, workdir / "eval")
  logging.info("report: %s", ", ".join(str(p) for p in paths.values()))
  print(report_lib.markdown(result))
  return result
