"""The shared trainer, driven by the codec task: bit-for-bit resume, refusing to clobber or
mix runs, checkpoint on SIGTERM, DDP under torchrun, the LR schedule, and `jamstream export`.

All runs use a small codec, 2-crop batches of 5 frames and a handful of steps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import music_like, run_cli, small_codec_config

from model.codec.network import FRAME_SAMPLES, load_codec
from model.errors import JamstreamError
from model.io.checkpoint import load_tensors, read_metadata
from model.train.codec_task import CodecTask, CodecTrainConfig
from model.train.trainer import Task, TrainConfig, Trainer
from model.train.validation import Validation

ROOT = Path(__file__).resolve().parents[1]


def task(corpus: Path, model_config=None) -> CodecTask:
    return CodecTask(
        model_config or small_codec_config(), CodecTrainConfig(corpus=str(corpus), batch_size=2, crop_frames=5)
    )


def train(corpus: Path, out: Path, steps: int, resume: bool = False, model_config=None, **kw) -> dict:
    cfg = TrainConfig(out=str(out), steps=steps, warmup_steps=2, checkpoint_every=100, threads=1, resume=resume, **kw)
    return Trainer(task(corpus, model_config), cfg).fit()


@pytest.fixture(scope="module")
def two_step_checkpoint(tiny_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "codec.safetensors"
    result = train(tiny_corpus, out, steps=2)
    assert (result["step"], result["stopped_early"], result["checkpoint"]) == (2, False, str(out))
    return out


def test_resumed_training_is_bit_for_bit_the_uninterrupted_run(tiny_corpus, tmp_path):
    straight, resumed = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    train(tiny_corpus, straight, steps=4)
    train(tiny_corpus, resumed, steps=2)
    assert read_metadata(resumed, "codec")[1]["step"] == 2
    result = train(tiny_corpus, resumed, steps=4, resume=True)
    assert result["step"] == 4
    a, b = load_tensors(straight), load_tensors(resumed)
    assert sorted(a) == sorted(b)
    assert any(k.startswith("optim.") for k in a) and any(k.startswith("model.") for k in a)
    differ = [k for k in a if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k])]
    assert not differ, differ[:5]
    assert read_metadata(straight, "codec")[1]["step"] == read_metadata(resumed, "codec")[1]["step"] == 4


def test_an_existing_out_without_resume_is_refused_and_left_alone(two_step_checkpoint, tiny_corpus):
    before = two_step_checkpoint.read_bytes()
    with pytest.raises(JamstreamError, match="exists; pass --resume"):
        train(tiny_corpus, two_step_checkpoint, steps=3)
    assert two_step_checkpoint.read_bytes() == before


def test_resume_without_a_checkpoint_is_refused(tiny_corpus, tmp_path):
    with pytest.raises(JamstreamError, match="no checkpoint at"):
        train(tiny_corpus, tmp_path / "none.safetensors", steps=3, resume=True)
    assert not (tmp_path / "none.safetensors").exists()


def test_resume_with_another_model_config_is_refused(two_step_checkpoint, tiny_corpus):
    other = replace(small_codec_config(), width_fast=24)
    with pytest.raises(JamstreamError, match="another model config"):
        train(tiny_corpus, two_step_checkpoint, steps=3, resume=True, model_config=other)


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "exists; pass --resume"),
        (["--resume", "--out", "@missing"], "no checkpoint at"),
        (["--steps", "0"], "--steps: must be >= 1"),
        (["--checkpoint-every", "0"], "--checkpoint-every: must be >= 1"),
        (["--lr", "fast"], "not a number"),
        (["--eval-every", "-1"], "--eval-every: must be >= 0"),
        (["--logfreq-weight", "-1"], "must be >= 0"),
    ],
)
def test_train_cli_bad_input_exits_2_with_one_stderr_line(
    two_step_checkpoint, tiny_corpus, tmp_path, capsys, extra, message
):
    extra = [str(tmp_path / "missing.safetensors") if a == "@missing" else a for a in extra]
    args = ["train", "codec", "--corpus", str(tiny_corpus), "--out", str(two_step_checkpoint), "--steps", "3", *extra]
    code, out, err = run_cli(args, capsys)
    assert code == 2, err
    assert err.startswith("jamstream: error:") and err.count("\n") == 1 and message in err, err


def test_eval_every_logs_val_pitch_figures_and_leaves_the_run_bit_for_bit(tiny_corpus, tmp_path):
    """The val pass (encode/decode of fixed val crops) runs between steps: it must not touch
    the state that resume reproduces, and its figures land in the log and the metrics."""
    log = tmp_path / "run.val.jsonl"
    plain, scored = tmp_path / "plain.safetensors", tmp_path / "scored.safetensors"
    train(tiny_corpus, plain, steps=3)
    t = task(tiny_corpus)
    t.cfg.eval_every, t.cfg.val_log = 1, str(log)
    result = Trainer(t, TrainConfig(out=str(scored), steps=3, warmup_steps=2, checkpoint_every=100, threads=1)).fit()
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(-1.0 <= r["val_chroma"] <= 1.0 and r["val_dac_mel"] > 0 for r in rows)
    assert "val_chroma" in result["metrics"]
    a, b = load_tensors(plain), load_tensors(scored)
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("model.")), "validation changed the trained weights"


def test_learning_rate_warms_up_linearly_then_decays_to_the_floor():
    trainer = Trainer(None, TrainConfig(out="unused", steps=100, lr=1e-3, warmup_steps=10, min_lr_ratio=0.1))
    lrs = [trainer.lr_at(s) for s in range(101)]
    warm = lrs[:10]
    assert warm[0] == pytest.approx(1e-4) and warm[-1] == pytest.approx(1e-3)
    assert all(b - a == pytest.approx(1e-4) for a, b in zip(warm, warm[1:]))
    decay = lrs[10:]
    assert decay[0] == pytest.approx(1e-3)
    assert all(b < a for a, b in zip(decay, decay[1:]))
    assert decay[-1] == pytest.approx(1e-4)
    assert trainer.lr_at(500) == pytest.approx(1e-4)  # past the end: stays at the floor
    assert max(lrs) == pytest.approx(1e-3)


# ------------------------------------------------------------------ processes
SCRIPT = """\
import sys
sys.path.insert(0, {root!r})
sys.path.insert(0, {tests!r})
from conftest import small_codec_config
from model.train.codec_task import CodecTask, CodecTrainConfig
from model.train.trainer import TrainConfig, Trainer


def say(line):  # one write per line: two ranks share the pipe
    sys.stdout.write(line + "\\n")
    sys.stdout.flush()


class Announcing(CodecTask):
    def batch(self, step, rank, world, generator, device):
        say(f"STEP {{step}} RANK {{rank}} WORLD {{world}}")
        return super().batch(step, rank, world, generator, device)


task = Announcing(small_codec_config(), CodecTrainConfig(corpus={corpus!r}, batch_size=2, crop_frames=5))
cfg = TrainConfig(out={out!r}, steps={steps}, warmup_steps=2, checkpoint_every={every}, threads=1)
result = Trainer(task, cfg).fit()
say(f"RESULT {{result['step']}} {{result['stopped_early']}}")
"""


def write_script(tmp_path: Path, corpus: Path, out: Path, steps: int, every: int) -> Path:
    script = tmp_path / "train_small.py"
    script.write_text(
        SCRIPT.format(
            root=str(ROOT), tests=str(ROOT / "tests"), corpus=str(corpus), out=str(out), steps=steps, every=every
        )
    )
    return script


def test_sigterm_writes_a_checkpoint_and_exits_cleanly(tiny_corpus, tmp_path):
    out = tmp_path / "codec.safetensors"
    steps = 1000
    script = write_script(tmp_path, tiny_corpus, out, steps=steps, every=10_000)
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            if line.startswith("STEP 1 "):  # step 0 done, step 1 under way
                break
            assert time.monotonic() < deadline, "training never reached step 1"
        else:
            pytest.fail(f"trainer exited before step 1: {proc.wait()} {proc.stderr.read()}")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert out.is_file()
    step = read_metadata(out, "codec")[1]["step"]
    assert 1 <= step < steps
    assert f"RESULT {step} True" in stdout
    assert not list(tmp_path.glob(".*.partial"))  # the atomic write left no temp file behind
    # The checkpoint it wrote is a real one: it resumes.
    resumed = train(tiny_corpus, out, steps=step + 1, resume=True)
    assert resumed["step"] == step + 1


@pytest.mark.network  # torchrun's rendezvous and gloo open TCP sockets (on lo)
def test_ddp_under_torchrun_with_two_cpu_processes_trains_and_checkpoints(tiny_corpus, tmp_path):
    out = tmp_path / "ddp.safetensors"
    script = write_script(tmp_path, tiny_corpus, out, steps=2, every=100)
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    proc = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "--standalone", str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "STEP 1 RANK 0 WORLD 2" in proc.stdout and "STEP 1 RANK 1 WORLD 2" in proc.stdout
    assert proc.stdout.count("RESULT 2 False") == 2
    _, extra = read_metadata(out, "codec")
    assert extra["step"] == 2 and extra["world_size"] == 2
    tensors = load_tensors(out)
    assert any(k.startswith("optim.") for k in tensors)
    assert not any(k.startswith("model.module.") for k in tensors)  # the unwrapped model was saved
    assert load_codec(out).config == small_codec_config()


# ------------------------------------------------------------------ export
def test_export_writes_half_precision_inference_weights_that_decode_like_the_checkpoint(
    two_step_checkpoint, tmp_path, capsys
):
    weights = tmp_path / "codec.safetensors"
    code, out, err = run_cli(
        ["export", "codec", str(two_step_checkpoint), "--out", str(weights), "--recipe", "2 steps", "--json"], capsys
    )
    assert code == 0, err
    # Two steps are enough for every level's codebook to be k-means-initialised.
    assert all(bool(v) for k, v in load_tensors(two_step_checkpoint).items() if k.endswith("initted"))
    tensors = load_tensors(weights)
    assert tensors and all(k.startswith("model.") for k in tensors)
    assert not any(k.endswith("embed_avg") for k in tensors)
    assert all(t.dtype == torch.float16 for t in tensors.values() if t.is_floating_point())
    _, info = read_metadata(weights, "codec")
    assert info["step"] == 2 and info["recipe"] == "2 steps" and info["dtype"] == "float16"
    assert weights.stat().st_size < 0.5 * two_step_checkpoint.stat().st_size

    full, shipped = load_codec(two_step_checkpoint), load_codec(weights)
    assert shipped.config == full.config
    audio = music_like(1, 6 * FRAME_SAMPLES, seed=11)
    tokens = full.encode(audio, levels=8)
    reference, decoded = full.decode(tokens), shipped.decode(tokens)
    assert float((reference - decoded).abs().max()) <= 0.02 * float(reference.abs().max())

    # The EMA sums left out of the file are rebuilt, close to the ones training had.
    original = load_tensors(two_step_checkpoint, "model")
    rebuilt = shipped.state_dict()
    for key in (k for k in original if k.endswith("embed_avg")):
        assert torch.allclose(rebuilt[key], original[key], rtol=1e-2, atol=1e-3), key


def test_export_of_a_bad_checkpoint_exits_2_with_one_stderr_line(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    code, _, err = run_cli(["export", "codec", str(bad), "--out", str(tmp_path / "w.safetensors")], capsys)
    assert code == 2 and err.startswith("jamstream: error:") and err.count("\n") == 1, err
    assert not (tmp_path / "w.safetensors").exists()


def test_train_lm_reads_every_corpus_given_and_names_a_bad_one(tiny_corpus, tmp_path, capsys):
    """`--corpus A B` trains on both corpora's train splits; a bad second one fails before model work."""
    out = tmp_path / "lm.safetensors"
    missing = tmp_path / "no-corpus"
    code, _, err = run_cli(
        ["train", "lm", "--corpus", str(tiny_corpus), str(missing), "--out", str(out), "--steps", "1"], capsys
    )
    assert code == 2 and str(missing) in err and err.count("\n") == 1, err
    assert not out.exists()
    code, _, err = run_cli(
        [
            "train",
            "lm",
            "--corpus",
            str(tiny_corpus),
            str(tiny_corpus),
            "--out",
            str(out),
            "--steps",
            "1",
            "--frames-per-batch",
            "64",
            "--threads",
            "1",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    assert read_metadata(out, "lm")[1]["step"] == 1


# ------------------------------------------------------------------ validation stage
class ScriptedTask(Task):
    """A one-weight model whose validation figure at step k is `figures[k]`."""

    kind = "toy"

    def __init__(self, figures: dict[int, float], spec: Validation):
        self.figures, self.spec, self.bests = figures, spec, []

    def model_config(self) -> dict:
        return {"width": 1}

    def build_model(self) -> torch.nn.Module:
        return torch.nn.Linear(1, 1)

    def batch(self, step, rank, world, generator, device):
        return torch.randn(4, 1, generator=generator)

    def loss(self, model, batch, step):
        loss = (model(batch) - 2 * batch).pow(2).mean()
        return loss, {"loss": loss.item()}

    def validation(self) -> Validation:
        return self.spec

    def validate(self, model, step):
        return {"score": self.figures[step], "weight": float(model.weight.detach())}

    def on_best(self, state, record):
        self.bests.append(record["step"])


def test_validation_keeps_the_best_state_and_stops_when_patience_runs_out(tmp_path):
    figures = {1: 3.0, 2: 2.0, 3: 2.5, 4: 2.1, 5: 9.0, 6: 1.0}
    task = ScriptedTask(figures, Validation(every=1, metric="score", patience=2))
    trainer = Trainer(task, TrainConfig(out=str(tmp_path / "toy.safetensors"), steps=6, warmup_steps=1, threads=1))
    result = trainer.fit()
    assert result["step"] == 4 and result["stopped_early"] and result["out_of_patience"]
    assert [r["step"] for r in result["validations"]] == [1, 2, 3, 4] and task.bests == [1, 2]
    assert result["best"]["step"] == 2 and result["metrics"]["score"] == 2.1
    best = result["validations"][1]["weight"]
    assert float(trainer.best_state["weight"]) == pytest.approx(best)
    # the checkpoint holds the history and the best state: a resume knows patience ran out
    again = Trainer(
        task, TrainConfig(out=str(tmp_path / "toy.safetensors"), steps=6, warmup_steps=1, threads=1, resume=True)
    )
    resumed = again.fit()
    assert resumed["step"] == 4 and resumed["out_of_patience"] and resumed["best"]["step"] == 2
    assert torch.equal(again.best_state["weight"], trainer.best_state["weight"])


def test_validation_higher_is_better_min_delta_and_at_end(tmp_path):
    figures = {2: 0.5, 4: 0.505, 5: 0.7}
    task = ScriptedTask(
        figures, Validation(every=2, at_end=True, metric="score", higher_is_better=True, min_delta=0.01)
    )
    result = Trainer(task, TrainConfig(out=str(tmp_path / "t.safetensors"), steps=5, warmup_steps=1, threads=1)).fit()
    assert [(r["step"], r["improved"]) for r in result["validations"]] == [(2, True), (4, False), (5, True)]
    assert result["best"]["step"] == 5 and not result["stopped_early"] and not result["out_of_patience"]
