"""Fine-tuning: LoRA adapters on a held-out style, strength, save/load, bad input.

One small base LM is trained briefly on the tiny corpus (which, like every default build,
never contains the held-out afrobeat style); a few afrobeat clips rendered with the
corpus tools are the "musician's recordings".
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli, small_codec

from model.adapters import lora, quantize, store
from model.lm.network import DepthformerLM, LMConfig, load_lm

# style_features as in the shipped config: the LoRA task must take a base that carries them
SMALL_LM = LMConfig(
    levels=4, codebook_size=64, width=64, heads=2, temporal_layers=2, depth_layers=1, mlp_ratio=2, style_features=16
)


def _sha(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def ft(tmp_path_factory, tiny_corpus):
    """Small codec + shipped style model + a briefly trained small base LM, and afrobeat clips."""
    from model.codec.network import save_codec
    from model.corpus.build import build_corpus
    from model.train.lm_task import LMTask, LMTrainConfig
    from model.train.token_data import load_token_clips
    from model.train.trainer import TrainConfig, Trainer
    from model.weights import default_weight_path

    root = tmp_path_factory.mktemp("finetune")
    codec_path = root / "codec.safetensors"
    save_codec(small_codec(), codec_path)
    style_path = default_weight_path("style")
    clips = load_token_clips(tiny_corpus, codec_path, style_path, SMALL_LM.levels)
    base = root / "base.safetensors"
    from model.codec.network import codec_fingerprint, load_codec
    from model.style.network import load_style

    task = LMTask(
        SMALL_LM,
        LMTrainConfig(frames_per_batch=256, max_frames=100),
        clips,
        load_style(style_path).quantizer.codebooks,
        codec_fingerprint=codec_fingerprint(load_codec(codec_path)),
    )
    Trainer(task, TrainConfig(out=str(base), steps=60, lr=3e-3, warmup_steps=5, checkpoint_every=60, threads=1)).fit()
    afro = build_corpus(root / "afro", minutes=1.6, seed=3, jobs=1, genres=("afrobeat",))
    recordings = root / "recordings"
    shutil.copytree(afro.out_dir / "audio", recordings)
    return {"root": root, "codec": codec_path, "style": style_path, "base": base, "recordings": recordings}


def _finetune_args(ft, name: str, *extra: str) -> list[str]:
    return [
        "finetune",
        str(ft["recordings"]),
        "--name",
        name,
        "--adapters-dir",
        str(ft["root"] / "adapters"),
        "--base",
        str(ft["base"]),
        "--codec",
        str(ft["codec"]),
        "--style",
        str(ft["style"]),
        "--frames-per-batch",
        "256",
        "--lr",
        "5e-3",
        "--threads",
        "1",
        "--json",
        *extra,
    ]


@pytest.fixture(scope="module")
def trained(ft):
    """`jamstream finetune` on the afrobeat clips; the base file's digest before and after."""
    before = _sha(ft["base"])
    code = run_cli(_finetune_args(ft, "afro", "--epochs", "4", "--patience", "4"))[0]
    assert code == 0
    folder = ft["root"] / "adapters" / "afro"
    return {
        "folder": folder,
        "report": json.loads((folder / "report.json").read_text()),
        "base_sha": (before, _sha(ft["base"])),
    }


def _batch(seed: int = 0, frames: int = 30):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, SMALL_LM.codebook_size, (2, frames, SMALL_LM.levels), generator=g)
    timing = torch.stack(
        [torch.full((2, frames), 112.0), torch.rand(2, frames, generator=g), torch.rand(2, frames, generator=g)], -1
    )
    style = torch.randint(0, SMALL_LM.style_codebook, (2, SMALL_LM.style_tokens), generator=g)
    return tokens, timing, style


# ------------------------------------------------------------------ held-out style
def test_heldout_style_is_not_in_default_builds_but_renders_on_request():
    from model.corpus.build import plan_clips
    from model.corpus.styles import HELD_OUT_STYLES, STYLES, generate

    assert "afrobeat" in HELD_OUT_STYLES and "afrobeat" not in STYLES
    assert "afrobeat" not in {s.genre for s in plan_clips(0, 180)}
    assert {s.genre for s in plan_clips(0, 2, ("afrobeat",))} == {"afrobeat"}
    piece = generate("afrobeat", 5, 20)
    assert piece.genre == "afrobeat" and 10 <= piece.seconds <= 30 and piece.notes


def test_unknown_style_for_corpus_build_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(
        ["corpus", "build", "--out", str(tmp_path / "c"), "--minutes", "1", "--styles", "polka"], capsys
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "polka" in err


# ------------------------------------------------------------------ training
def test_finetune_lowers_heldout_validation_nll_and_writes_the_adapter_folder(trained):
    r, folder = trained["report"], trained["folder"]
    assert r["val_nll_after"] < r["val_nll_before"], r["val_nll_by_epoch"]
    for name in ("adapter.safetensors", "adapter.json", "style.safetensors", "report.json", "checkpoint.safetensors"):
        assert (folder / name).is_file(), name
    assert r["recordings"] >= 4 and r["validation_split"] == "recordings"
    assert 0 < r["trainable_parameters"] and 0 < r["trainable_share"] < 0.2
    assert r["peak_rss_megabytes"] > 0 and r["seconds_per_epoch"] > 0 and r["epochs_run"] >= 1
    # the base weights file is read, never written
    assert trained["base_sha"][0] == trained["base_sha"][1]


def test_training_changes_only_the_adapter(ft, trained):
    """After LoRA training steps the base tensors are bit-identical; the LoRA ones moved."""
    from model.train.finetune import split_clips
    from model.train.lora_task import LoRATask, LoRATrainConfig
    from model.train.recordings import Recording
    from model.train.trainer import TrainConfig, Trainer

    g = torch.Generator().manual_seed(1)
    recs = [
        Recording(
            Path(f"r{i}.wav"),
            8.0,
            torch.randint(0, 64, (200, 4), generator=g).short(),
            torch.tensor([[120.0, 0.0, 0.0]]).repeat(200, 1),
            torch.zeros(512),
            120.0,
        )
        for i in range(4)
    ]
    clips, _ = split_clips(recs, torch.zeros(12, dtype=torch.long))
    task = LoRATask(
        ft["base"],
        "x",
        SMALL_LM,
        store.AdapterConfig(rank=4, alpha=8),
        LoRATrainConfig(frames_per_batch=128, steps_per_epoch=3),
        clips,
        "t",
    )
    base = {k: v.clone() for k, v in load_lm(ft["base"]).state_dict().items()}
    built = []
    original_build = task.build_model
    task.build_model = lambda: built.append(original_build()) or built[-1]
    Trainer(
        task,
        TrainConfig(
            out=str(ft["root"] / "only-adapter.safetensors"),
            steps=3,
            lr=1e-2,
            warmup_steps=1,
            checkpoint_every=3,
            threads=1,
        ),
    ).fit()
    lm = built[0].lm
    after = {k.replace(".base_layer", ""): v for k, v in lm.state_dict().items() if "lora_" not in k}
    assert set(after) == set(base)
    assert all(torch.equal(after[k], base[k]) for k in base)
    assert any(float(v.detach().abs().sum()) > 0 for k, v in lora.adapter_state(lm, "t").items() if "lora_B" in k)


def test_resume_continues_and_an_existing_name_needs_resume(ft, trained, capsys):
    code, _, err = run_cli(_finetune_args(ft, "afro", "--epochs", "4"), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--resume" in err
    code, out, _ = run_cli(_finetune_args(ft, "afro", "--epochs", "5", "--patience", "4", "--resume"), capsys)
    assert code == 0
    report = json.loads(out)
    assert report["epochs_run"] == trained["report"]["epochs_run"] + 1 or report["early_stopped"]
    assert report["val_nll_before"] == trained["report"]["val_nll_before"]


# ------------------------------------------------------------------ runtime API
@pytest.mark.parametrize("fuse", [True, False])
def test_strength_zero_is_the_base_exactly_and_remove_restores_it(ft, trained, fuse):
    lm = load_lm(ft["base"])
    tokens, timing, style = _batch()
    with torch.no_grad():
        base = lm(tokens, timing, style)
        ad = lora.apply_adapter(lm, trained["folder"], strength=1.0, fuse=fuse)
        full = lm(tokens, timing, style)
        lora.set_strength(lm, ad.name, 0.0)
        zero = lm(tokens, timing, style)
        lora.set_strength(lm, ad.name, 0.5)
        half = lm(tokens, timing, style)
        lora.remove_adapter(lm)
        removed = lm(tokens, timing, style)
    assert not torch.equal(full, base)
    assert torch.equal(zero, base) and torch.equal(removed, base)
    assert 0 < float((half - base).abs().max()) < float((full - base).abs().max())
    assert type(lm.temporal[0].attn.qkv) is torch.nn.Linear and lora.strengths(lm) == {}


def test_fused_adapter_equals_peft_forward(ft, trained):
    """Folding B A into the weights computes what peft's LoRA layers compute."""
    fused, layered = load_lm(ft["base"]), load_lm(ft["base"])
    lora.apply_adapter(fused, trained["folder"], 0.7)
    lora.apply_adapter(layered, trained["folder"], 0.7, fuse=False)
    assert type(fused.temporal[0].mlp.up) is torch.nn.Linear and type(layered.temporal[0].mlp.up) is not torch.nn.Linear
    tokens, timing, style = _batch(3)
    with torch.no_grad():
        assert torch.allclose(fused(tokens, timing, style), layered(tokens, timing, style), atol=1e-4)
    assert all(
        torch.equal(a, b)
        for a, b in zip(lora.adapter_state(fused, "afro").values(), lora.adapter_state(layered, "afro").values())
    )


def test_two_adapters_blend_and_each_has_its_own_strength(ft, trained, tmp_path):
    lm = load_lm(ft["base"])
    ad = store.load_adapter(trained["folder"])
    twin = tmp_path / "twin"
    store.save_adapter(
        twin, "twin", ad.config, ad.lm_config, {k: -v if "lora_B" in k else v for k, v in ad.tensors.items()}
    )
    tokens, timing, style = _batch(1)
    with torch.no_grad():
        base = lm(tokens, timing, style)
        lora.apply_adapter(lm, ad, 1.0)
        lora.apply_adapter(lm, twin, 1.0)  # B negated: the two updates cancel
        both = lm(tokens, timing, style)
        lora.set_strength(lm, "twin", 0.0)
        one = lm(tokens, timing, style)
    assert lora.strengths(lm) == {"afro": 1.0, "twin": 0.0}
    assert torch.allclose(both, base, atol=1e-4) and not torch.allclose(one, base, atol=1e-3)


def test_adapter_save_load_round_trip(ft, trained, tmp_path):
    ad = store.load_adapter(trained["folder"])
    assert ad.name == "afro" and ad.config.rank == 8 and ad.lm_config["width"] == SMALL_LM.width
    lm = load_lm(ft["base"])
    lora.apply_adapter(lm, ad, 1.0)
    state = lora.adapter_state(lm, "afro")
    assert set(state) == set(ad.tensors) and all(torch.equal(state[k], ad.tensors[k]) for k in state)
    store.save_adapter(tmp_path / "copy", "afro", ad.config, ad.lm_config, state)
    again = store.load_adapter(tmp_path / "copy")
    assert all(torch.equal(again.tensors[k], ad.tensors[k]) for k in ad.tensors)
    # the captured style: unit length, and what "adapter:NAME" resolves to
    style = store.adapter_style("afro", ft["root"] / "adapters")
    assert abs(float(style.norm()) - 1) < 1e-5 and torch.equal(style, ad.style)
    named = store.adapter_style_name("adapter:afro")  # how generate's and a preset's style string resolve
    assert torch.equal(store.adapter_style(named, ft["root"] / "adapters"), style)


def test_adapter_errors_are_one_line(ft, trained, tmp_path):
    from model.errors import JamstreamError

    with pytest.raises(JamstreamError, match="no adapter 'nobody'"):
        store.load_adapter("nobody", ft["root"] / "adapters")
    other = DepthformerLM(
        LMConfig(levels=4, codebook_size=64, width=32, heads=2, temporal_layers=1, depth_layers=1, mlp_ratio=2)
    )
    with pytest.raises(JamstreamError, match="width"):
        lora.apply_adapter(other, trained["folder"])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "adapter.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(JamstreamError, match="corrupt"):
        store.load_adapter(bad)


def test_quantized_bases_train_through_lora(ft):
    """int8 (own, weight-only) everywhere; nf4 where bitsandbytes is installed."""
    modes = ["int8"]
    try:
        import bitsandbytes  # noqa: F401

        modes.append("nf4")
    except ImportError:
        pass
    tokens, timing, style = _batch(2)
    ref = load_lm(ft["base"])
    with torch.no_grad():
        want = ref(tokens, timing, style, return_loss=True)
    for mode in modes:
        lm = load_lm(ft["base"])
        size = quantize.quantize_base(lm, mode)
        lora.inject(lm, "q", store.AdapterConfig(rank=4, alpha=8))
        loss = lm(tokens, timing, style, return_loss=True)
        loss.backward()
        trainable = [p for p in lm.parameters() if p.requires_grad]
        assert trainable and all(p.grad is not None for p in trainable)
        assert size > 0 and abs(float(loss) - float(want)) < 0.05 * float(want), mode


# ------------------------------------------------------------------ CLI
def test_generate_with_adapter_and_its_captured_style(ft, trained, tmp_path, capsys):
    out = tmp_path / "gen.wav"
    code, stdout, err = run_cli(
        [
            "generate",
            "--adapter",
            "afro",
            "--adapters-dir",
            str(ft["root"] / "adapters"),
            "--adapter-strength",
            "0.8",
            "--lm",
            str(ft["base"]),
            "--codec",
            str(ft["codec"]),
            "--style",
            str(ft["style"]),
            "--seconds",
            "1",
            "--bpm",
            "110",
            "-o",
            str(out),
            "--json",
            "--threads",
            "1",
        ],
        capsys,
    )
    assert code == 0, err
    report = json.loads(stdout)
    assert report["adapter"] == "afro" and report["style"] == [["adapter:afro", 1.0]] and out.is_file()


def test_empty_or_unusable_directory_is_one_line_exit_2(ft, tmp_path, capsys):
    from model.io.audio import write_audio

    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(
        [
            "finetune",
            str(empty),
            "--name",
            "e1",
            "--adapters-dir",
            str(tmp_path / "a"),
            "--base",
            str(ft["base"]),
            "--codec",
            str(ft["codec"]),
            "--style",
            str(ft["style"]),
        ],
        capsys,
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no audio files" in err
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "broken.wav").write_bytes(b"RIFF nonsense" * 10)
    (junk / "notes.txt").write_text("take 3 was the good one")
    write_audio(junk / "silence.wav", np.zeros((2, 48_000 * 3), dtype=np.float32))
    write_audio(junk / "blip.flac", 0.3 * np.ones((1, 4_800), dtype=np.float32))
    code, _, err = run_cli(
        [
            "finetune",
            str(junk),
            "--name",
            "e2",
            "--adapters-dir",
            str(tmp_path / "a"),
            "--base",
            str(ft["base"]),
            "--codec",
            str(ft["codec"]),
            "--style",
            str(ft["style"]),
        ],
        capsys,
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no usable audio" in err
    code, _, err = run_cli(["finetune", str(tmp_path / "missing"), "--name", "e3"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("free", [16 * 1024, 400 * 1024])  # full at the token cache / at a checkpoint
def test_a_finetune_stopped_by_a_full_disk_is_one_line_and_finishes_when_there_is_room(ft, tmp_path, free):
    """The adapter folder on a disk with little left: one line, exit 2, nothing half-written
    (files appear whole or not at all); with room again the same command (with --resume if a
    checkpoint got written) finishes the job."""
    import shlex

    from support.disk import in_small_disk

    args = _finetune_args(ft, "full", "--epochs", "2", "--patience", "2")
    args[args.index("--adapters-dir") + 1] = "$DISK/adapters"
    command = " ".join(a if a.startswith("$DISK") else shlex.quote(a) for a in args)
    script = (
        f"head -c {3 * 2**20 - free} /dev/zero > $DISK/filler 2>/dev/null; "
        f'$JAM {command} >/dev/null 2>$DISK/../err1; echo "first=$?"; '
        'echo "left: $(ls -A $DISK/adapters/full 2>/dev/null | tr "\\n" " ")"; '
        "rm $DISK/filler; R=; [ -f $DISK/adapters/full/checkpoint.safetensors ] && R=--resume; "
        f'$JAM {command} $R >/dev/null 2>$DISK/../err2; echo "second=$?"; '
        'echo "done: $(ls -A $DISK/adapters/full | tr "\\n" " ")"'
    )
    done = in_small_disk(script, tmp_path)
    lines = done.stdout.strip().splitlines()
    second_err = (tmp_path / "err1").read_text()[-3000:] + (tmp_path / "err2").read_text()[-1000:]
    assert "first=2" in lines and "second=0" in lines, (done.stdout, done.stderr, second_err)
    errors = [e for e in (tmp_path / "err1").read_text().splitlines() if e.startswith("jamstream: error:")]
    assert len(errors) == 1 and "no space left" in errors[0], (tmp_path / "err1").read_text()[-2000:]
    left = next(line for line in lines if line.startswith("left:")).split()[1:]
    assert not any(".partial" in f for f in left), left  # what is there is whole (an earlier best epoch)
    finished = next(line for line in lines if line.startswith("done:")).split()[1:]
    assert "adapter.safetensors" in finished and "report.json" in finished, finished
