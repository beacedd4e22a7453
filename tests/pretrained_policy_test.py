"""The pretrained path: the pipeline's backbone from configs/sft_smollm2_135m.py (SmolLM2's GGUF
loaded once, its tokenizer wrapped with the protocol markers), and the zero-shot LLM agent
playing an episode with those weights on the device."""

import pathlib

from absl.testing import absltest
import jax
import numpy as np

from autollm_jax import config_files
from autollm_jax import evaluation
from autollm_jax import experiments as experiments_lib
from autollm_jax import grammar
from autollm_jax import pipeline
from autollm_jax import protocol
from autollm_jax import protocol_tokenizer
from autollm_jax.agents import llm_zero_shot
from autollm_jax.agents.policy import PolicySettings
from autollm_jax.model import transformer
from autollm_jax.tokenizer import tokenizer_from_blob

CONFIG = pathlib.Path(__file__).parents[1] / "configs" / "sft_smollm2_135m.py"


def smollm2_config():
  config = config_files.load_module(CONFIG).get_config()
  config.model.dtype = "float32"  # bf16 matmuls are slow on CPU
  return config


class PretrainedPolicyTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.pretrained = pipeline.pretrained_backbone(smollm2_config())
    table = evaluation.synthetic_table(num_fidelities=3)
    cls.tables = {table.name: table}
    cls.experiment = [e for e in experiments_lib.curate([table], seed=0)
                      if e.split == "test"][0]

  def test_backbone_has_the_protocol_tokenizer(self):
    config, tok = self.pretrained.config, self.pretrained.tokenizer
    self.assertIsInstance(tok, protocol_tokenizer.ProtocolTokenizer)
    self.assertEqual((config.name, config.vocab_size, tok.vocab_size, config.max_seq_len),
                     ("smollm2_135m", 49_152, 49_152, 4096))
    self.assertEqual({x.dtype for x in jax.tree_util.tree_leaves(self.pretrained.params)},
                     {np.dtype("float32")})
    tables = grammar.TokenTables.build(tok)
    self.assertEqual([tables.marker_ids[m] for m in protocol.MARKERS],
                     [8, 9, 10, 12, 11, 13, 15, 14, 16])
    self.assertEqual([tok.base.id_to_piece(i) for i in tables.char_ids], list(grammar.CHARS))
    text = (protocol.render_prompt(self.tables["synthetic"], self.experiment, 2) +
            protocol.render_turn("lower lr", ["lr", "bs"], [3.45e-4, 64.0]) +
            protocol.render_feedback("loss", 2.5, 2.5, 4))
    self.assertEqual(tok.decode(tables.encode(text)), text)
    self.assertEqual(tokenizer_from_blob(tok.to_blob()).encode(text), tok.encode(text))

  def test_zero_shot_agent_plays_on_the_device(self):
    p = self.pretrained
    graphdef, _ = transformer.abstract_model(p.config)
    settings = PolicySettings(max_prompt_rows=2, max_context_fidelities=1, turn_tokens=48,
                              think_tokens=2, batch_size=1)
    agent = llm_zero_shot.ZeroShotLLM(graphdef, p.params, p.config, p.tokenizer, settings)
    prompt = agent.prompt_tokens(self.tables, [self.experiment])[0]
    im_start = p.tokenizer.piece_to_id("<|im_start|>")
    self.assertEqual(prompt[:2], [im_start, p.tokenizer.encode("system")[0]])
    self.assertIn(llm_zero_shot.INSTRUCTION, p.tokenizer.decode(prompt))
    played = agent.play([self.experiment], self.tables, [0], budget=1)
    history = played[(self.experiment.name, 0)]
    self.assertLen(history, 1)
    self.assertBetween(int(history[0]), 0, len(self.experiment.candidate_rows) - 1)

  def test_simulation_of_another_tokenizer_is_refused(self):
    workdir = pathlib.Path(self.create_tempdir().full_path)
    (workdir / "simulation").mkdir()
    (workdir / "simulation" / "manifest.json").write_text("{}")
    (workdir / "simulation" / "tokenizer.blob").write_bytes(b"another tokenizer")
    with self.assertRaisesRegex(ValueError, "tokenized for another model than 'smollm2_135m'"):
      pipeline.simulate(smollm2_config(), workdir, None, self.pretrained.tokenizer)

  def test_a_checkpoint_that_is_no_directory_is_refused(self):
    config = smollm2_config()
    config.model.checkpoint = "/path/to/safetensors"
    with self.assertRaisesRegex(ValueError, "config.model.checkpoint='/path/to/safetensors'"):
      pipeline.pretrained_backbone(config)


if __name__ == "__main__":
  absltest.main()
