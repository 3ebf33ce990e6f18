"""`jamstream eval codec|style|...`: quality and speed figures for each model."""

from __future__ import annotations

import argparse
from pathlib import Path

from bridge.cli.common import (
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    Formatter,
    Parser,
    emit,
    positive_int,
    weights_file,
)


def _levels(text: str) -> list[int]:
    try:
        levels = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--levels wants comma-separated integers, got {text!r}") from None
    if not levels:
        raise argparse.ArgumentTypeError("--levels is empty")
    return levels


def expand_inputs(items: list[str], split: str = "test") -> list[Path]:
    """Audio files as given; a corpus directory or manifest.jsonl stands for its test split."""
    from model.corpus.manifest import read_manifest

    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir() and (p / "manifest.jsonl").is_file():
            paths += [r.path for r in read_manifest(p, split)]
        elif p.name == "manifest.jsonl" and p.is_file():
            paths += [r.path for r in read_manifest(p.parent, split)]
        else:
            paths.append(p)
    return paths


def cmd_eval_codec(args: argparse.Namespace) -> int:
    import torch

    from model.codec.network import load_codec
    from model.errors import JamstreamError
    from model.eval.codec import evaluate_codec, format_table

    if args.threads:
        torch.set_num_threads(args.threads)
    codec = load_codec(args.checkpoint)
    bad = [lv for lv in args.levels if not 1 <= lv <= codec.levels]
    if bad:
        raise JamstreamError(f"--levels {bad} outside 1..{codec.levels}")
    paths = expand_inputs(args.inputs, args.split)
    if not paths:
        raise JamstreamError("nothing to evaluate: the inputs name no audio files")
    result = evaluate_codec(codec, paths, args.levels)
    if not result.files:
        reasons = "; ".join(s["reason"] for s in result.skipped[:3])
        raise JamstreamError(f"no readable audio among the inputs ({reasons})")
    out = {"files": result.files, "skipped": result.skipped, "mean": result.mean}
    emit(out, args.json, format_table(result))
    return 0


def cmd_eval_style(args: argparse.Namespace) -> int:
    import torch

    from model.errors import JamstreamError
    from model.eval.style import cosine_matrix, evaluate_corpus, format_cosines
    from model.style.network import load_style

    if args.threads:
        torch.set_num_threads(args.threads)
    if bool(args.audio) != bool(args.prompts):
        raise JamstreamError("--audio and --prompts go together: give both, or neither")
    if not args.corpus and not args.audio:
        raise JamstreamError("nothing to evaluate: give --corpus DIR, or --audio FILES --prompts TEXTS")
    for p in args.prompts or []:
        if not p.strip():
            raise JamstreamError("empty prompt in --prompts: give a few words, e.g. 'funk music'")
    model = load_style(args.checkpoint)
    out: dict = {}
    text: list[str] = []
    if args.corpus:
        r = evaluate_corpus(model, args.corpus, args.split)
        out.update(
            r_at_1=r.r_at_1,
            r_at_5=r.r_at_5,
            mrr=r.mrr,
            genre_accuracy=r.genre_accuracy,
            clips=r.clips,
            genres=len(r.genres),
        )
        text.append(
            f"{args.split} split, {r.clips} clips, {len(r.genres)} genres\n"
            f"text->audio  R@1 {r.r_at_1:.3f}  R@5 {r.r_at_5:.3f}  MRR {r.mrr:.3f}\n"
            f"zero-shot genre accuracy {r.genre_accuracy:.3f}"
        )
    if args.audio:
        c = cosine_matrix(model, args.audio, args.prompts)
        out.update(files=c.files, prompts=c.prompts, cosine=c.cosine, skipped=c.skipped)
        text.append(format_cosines(c))
    emit(out, args.json, "\n\n".join(text))
    return 0


def cmd_eval_lm(args: argparse.Namespace) -> int:
    from model.eval.lm import evaluate_lm
    from model.lm.network import load_lm
    from model.train.token_data import load_token_clips

    model = load_lm(args.checkpoint)
    clips = load_token_clips(args.corpus, args.codec, args.style, model.config.levels)
    result = evaluate_lm(model, clips, args.split)
    text = (
        f"{result['split']} split, {result['clips']} clips: NLL {result['nll']:.3f} nats/token "
        f"(perplexity {result['perplexity']:.1f}) vs unigram {result['unigram_nll']:.3f} "
        f"({result['unigram_perplexity']:.1f})"
    )
    emit(result, args.json, text)
    return 0


def corpus_genres(corpus: str | None) -> dict[str, float]:
    """Genre tag -> median tempo of its clips; the shipped corpus recipe's tags without a corpus."""
    import statistics

    from model.corpus.manifest import read_manifest
    from model.errors import JamstreamError

    if corpus is None:
        return dict(DEFAULT_GENRES)
    rows = read_manifest(corpus)
    if not rows:
        raise JamstreamError(f"{corpus}: the manifest has no clips")
    by_genre: dict[str, list[float]] = {}
    for r in rows:
        by_genre.setdefault(r.genre, []).append(r.bpm)
    return {g: float(statistics.median(v)) for g, v in sorted(by_genre.items())}


PITCH_CORPUS_CLIPS = 2  # corpus clips per genre that pitch_content_corpus listens to
SPLIT_ORDER = ("test", "val", "train")

# The genres of the corpus the shipped models trained on (model/weights/RECIPES.md), at
# their median tempo there: the style check's default when no corpus is given.
DEFAULT_GENRES = {
    "ambient": 68.0,
    "blues shuffle": 113.0,
    "bossa nova": 123.0,
    "celtic folk": 120.0,
    "chorale": 78.5,
    "drum and bass": 168.0,
    "funk": 106.0,
    "house": 122.0,
    "jazz waltz": 144.5,
    "lofi hip hop": 80.0,
    "madrigal": 75.4,
    "reggae": 81.0,
    "renaissance polyphony": 67.9,
    "rock": 124.5,
    "string quartet": 104.6,
    "swing jazz": 126.0,
    "synthwave": 103.0,
    "techno": 134.0,
}


def cmd_eval_generation(args: argparse.Namespace) -> int:
    import torch

    from bridge.jam.offline import render_clip
    from model.codec.network import load_codec
    from model.errors import JamstreamError
    from model.eval.generation import DRUM_PROMPTS, TEMPO_BPMS, evaluate_generation
    from model.generator import Generator
    from model.lm.network import load_lm
    from model.lm.sampling import SamplingConfig
    from model.progress import progress
    from model.style.network import load_style

    checks = tuple(c.strip() for c in args.checks.split(",") if c.strip())
    unknown = sorted(set(checks) - {"tempo", "style", "pitch", "seams"})
    if unknown or not checks:
        raise JamstreamError(f"--checks takes tempo,style,pitch,seams (got {args.checks!r})")
    if args.threads:
        torch.set_num_threads(args.threads)
    genres = corpus_genres(args.corpus)
    reference = pitch_reference = None
    if args.corpus:
        from model.corpus.manifest import read_manifest

        test_rows = read_manifest(args.corpus, "test")
        drum_genres = {p.replace(" music", "") for p in DRUM_PROMPTS}
        if "tempo" in checks:
            reference = [(r.path, r.beats) for r in test_rows if r.genre in drum_genres]
        if "pitch" in checks:  # every genre's audio, held-out clips first (a reference, not a score)
            pitch_reference = {}
            for r in sorted(read_manifest(args.corpus), key=lambda r: SPLIT_ORDER.index(r.split)):
                kept = pitch_reference.setdefault(r.genre, [])
                if len(kept) < PITCH_CORPUS_CLIPS:
                    kept.append(r.path)
    style_model = load_style(args.style)
    generator = Generator(load_lm(args.checkpoint), load_codec(args.codec))
    seeds = tuple(range(args.seeds))
    tempo_clips = (
        len(TEMPO_BPMS) * len(DRUM_PROMPTS) if "tempo" in checks else len(TEMPO_BPMS) if "seams" in checks else 0
    )
    total = len(seeds) * (tempo_clips + (len(genres) if {"style", "pitch"} & set(checks) else 0))
    bar = progress(total=total, desc="eval generation", unit="clip")
    sampling = SamplingConfig(guidance=args.guidance)

    def render(prompt: str, bpm: float, seconds: float, seed: int, bars_per_chunk: int):
        return render_clip(
            generator, style_model, [(prompt, 1.0)], bpm, (4, 4), seconds, seed, sampling, bars_per_chunk
        )

    report = evaluate_generation(
        render,
        style_model,
        genres,
        seconds=args.seconds,
        seeds=seeds,
        checks=checks,
        on_clip=lambda: bar.update(1),
        reference=reference,
        pitch_reference=pitch_reference,
    )
    bar.close()
    out = report.summary()
    lines = []
    if "tempo_ok_share" in out:
        lines.append(
            f"tempo within 4% (or an octave): {out['tempo_ok_share']:.0%} of {len(report.tempo)} runs; "
            f"median beat-to-grid distance {out['grid_ms_median']:.1f} ms"
        )
        if out.get("beat_f1") is not None:
            lines.append(f"beat F-measure (madmom, +-70 ms, vs the requested grid): {out['beat_f1']:.3f}")
        if out.get("beat_f1_floor") is not None:
            lines.append(
                f"  madmom on {out['beat_f1_floor_clips']} corpus test clips against their exact beats: "
                f"{out['beat_f1_floor']:.3f}: its floor"
            )
        if out.get("reference_grid_ms_median") is not None:
            lines.append(
                f"  the same tracker on {out['reference_clips']} corpus test clips against their exact beats: "
                f"{out['reference_grid_ms_median']:.1f} ms (signed {out['reference_signed_ms_median']:+.1f} ms): its "
                "floor"
            )
    if "style_own_genre_share" in out:
        lines.append(f"style: nearest its own genre in {out['style_own_genre_share']:.0%} of {len(report.style)} runs")
    if "pitch_content" in out:
        corpus_part = (
            f" (corpus clips of the same genres: {out['pitch_content_corpus']:.3f}, "
            f"ratio {out['pitch_content'] / out['pitch_content_corpus']:.0%})"
            if out.get("pitch_content_corpus")
            else ""
        )
        lines.append(f"pitch content of the genre clips: {out['pitch_content']:.3f}{corpus_part}")
    for why in out.get("missing", []):
        lines.append(f"left out: {why}")
    if "seam_flux_percentile" in out:
        lines.append(
            f"seams: flux at chunk joins / at bar lines that are not joins = {out['seam_to_bar_line_ratio']:.2f}; "
            f"join flux sits at the {out['seam_flux_percentile']:.0f}th percentile of flux elsewhere"
        )
    emit(out, args.json, "\n".join(lines))
    return 0


def cmd_eval_presets(args: argparse.Namespace) -> int:
    import torch

    from bridge.jam.preset_eval import evaluate_preset
    from bridge.jam.presets import find_preset, shipped_preset_names
    from bridge.jam.stack import load_stack
    from model.progress import progress

    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.presets.split(",") if n.strip()] if args.presets else shipped_preset_names()
    presets = [find_preset(n) for n in names]  # every name checked before any audio
    rows = []
    for preset in progress(presets, desc="eval presets", unit="preset"):
        stack = load_stack(preset, lm=args.checkpoint, codec=args.codec, style=args.style)
        rows.append(
            evaluate_preset(
                stack.generator, stack.style_model, preset, seed=args.seed, slot_styles=stack.slot_styles
            ).__dict__
        )
    share = sum(r["nearer_b"] for r in rows) / max(1, sum(r["bars_after_sweep"] for r in rows))
    for r in rows:  # how far the sweep moved the music: a bar already nearer B on slot A proves nothing
        r["shift"] = r["mean_margin"] - r["before_margin"]
    out = {
        "presets": rows,
        "share_nearer_b": share,
        "presets_at_80": sum(r["share_nearer_b"] >= 0.8 for r in rows),
        "presets_moved_toward_b": sum(r["shift"] > 0 for r in rows),
    }
    lines = [f"{'preset':<34} bars>B  margin after  margin before   shift  rtf"]
    for r in rows:
        lines.append(
            f"{r['preset']:<34} {r['nearer_b']:>2}/{r['bars_after_sweep']:<3} {r['mean_margin']:>+12.3f} "
            f"{r['before_margin']:>+14.3f}"
            f" {r['shift']:>+7.3f} {r['rtf']:>5.2f}"
        )
    lines.append(
        f"bars after the sweep nearer B than A: {share:.0%}; presets at >= 80%: {out['presets_at_80']}/{len(rows)}; "
        f"presets whose margin moved toward B: {out['presets_moved_toward_b']}/{len(rows)}"
    )
    emit(out, args.json, "\n".join(lines))
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(
        "eval",
        help="measure a model's quality and speed",
        description="Quality and speed figures for jamstream's models.",
        formatter_class=Formatter,
    )
    esub = ev.add_subparsers(dest="model", metavar="{codec,style,lm}", parser_class=Parser)
    esub.required = True
    _add_codec(esub)
    _add_style(esub)
    _add_lm(esub)
    _add_generation(esub)
    _add_presets(esub)


def _add_codec(esub: argparse._SubParsersAction) -> None:
    c = esub.add_parser(
        "codec",
        help="SI-SNR, mel distance, bitrate and real-time factors, beside MP3 at 32 kbps",
        description="Encode and decode each input at several level counts and compare with the input, and "
        "with an MP3 re-encode at 32 kbps as a reference peer. Any wav/flac/mp3/ogg/aiff at any rate or "
        "channel count is converted to 48 kHz stereo; unreadable files are reported and skipped.",
        epilog="examples:\n  jamstream eval codec corpus                  # the corpus's test split\n"
        "  jamstream eval codec --levels 8,16 take1.wav take2.flac --json",
        formatter_class=Formatter,
    )
    c.add_argument("inputs", nargs="+", metavar="AUDIO_OR_MANIFEST", help="audio files, corpus dirs or manifest.jsonl")
    c.add_argument("--checkpoint", type=weights_file, default=None, help="codec weights (default: the shipped ones)")
    c.add_argument("--levels", type=_levels, default=[8, 16, 32], help="RVQ level counts to decode with")
    c.add_argument("--split", default="test", choices=["train", "val", "test"], help="split used for corpus inputs")
    c.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    c.add_argument("--json", action="store_true", help="one JSON object: files, skipped, mean (per level count)")
    c.set_defaults(func=cmd_eval_codec)


def _add_style(esub: argparse._SubParsersAction) -> None:
    s = esub.add_parser(
        "style",
        help="text->audio retrieval (R@1, R@5, MRR), zero-shot genre accuracy, or file x prompt cosines",
        description="On the corpus's test split: each caption retrieves among the test clips (R@1, R@5, MRR), and "
        "each clip is labelled by its nearest '<genre> music' prompt over every genre in the corpus. With "
        "--audio and --prompts: the cosine of each file (any format, rate or channels) with each prompt; "
        "unreadable files are reported and skipped.",
        epilog="examples:\n  jamstream eval style --corpus corpus --json\n"
        "  jamstream eval style --audio take1.wav take2.mp3 --prompts 'techno music' 'string quartet'",
        formatter_class=Formatter,
    )
    s.add_argument("--corpus", default=None, help="corpus directory (its --split is evaluated)")
    s.add_argument("--checkpoint", type=weights_file, default=None, help="style weights (default: the shipped ones)")
    s.add_argument("--split", default="test", choices=["train", "val", "test"], help="split to evaluate")
    s.add_argument("--audio", nargs="+", default=None, metavar="FILE", help="audio files to score against --prompts")
    s.add_argument("--prompts", nargs="+", default=None, metavar="TEXT", help="text prompts to score --audio against")
    s.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    s.add_argument(
        "--json",
        action="store_true",
        help="one JSON object: r_at_1, r_at_5, mrr, genre_accuracy (+ cosine, files, skipped)",
    )
    s.set_defaults(func=cmd_eval_style)


def _add_lm(esub: argparse._SubParsersAction) -> None:
    m = esub.add_parser(
        "lm",
        help="held-out token NLL beside a unigram baseline",
        description="Teacher-forced NLL of the LM on a split's codec tokens (10 s segments, style on), beside "
        "the NLL of per-level unigram token frequencies from the train split.",
        epilog="example: jamstream eval lm --corpus corpus --json",
        formatter_class=Formatter,
    )
    m.add_argument("--corpus", required=True, help="corpus directory")
    m.add_argument("--checkpoint", type=weights_file, default=None, help="LM weights (default: shipped)")
    m.add_argument(
        "--codec", type=weights_file, default=None, help="codec weights the tokens come from (default: shipped)"
    )
    m.add_argument("--style", type=weights_file, default=None, help="style-model weights (default: shipped)")
    m.add_argument("--split", default="test", choices=["val", "test"], help="held-out split")
    m.add_argument("--json", action="store_true", help="one JSON object: nll, unigram_nll, ...")
    m.set_defaults(func=cmd_eval_lm)


def _add_generation(esub: argparse._SubParsersAction) -> None:
    g = esub.add_parser(
        "generation",
        help="tempo, beats, style, notes and seams of generated audio",
        description="Generate clips and listen to them with tools that know nothing of our models: librosa's "
        "beat tracker on 30 s clips at 80/100/120/140 bpm with drum-heavy prompts (tempo within 4%% or an octave; "
        "median distance of detected beats to the requested grid) and, with the eval extra "
        "(pip install -e '.[eval]'), madmom's tracker scored by mir_eval's beat F-measure at +-70 ms against "
        "the requested grid (beat_f1; beat_f1_floor: the same on corpus clips with exact beats); the style "
        "model's audio embedding of one clip per corpus genre (nearest genre prompt = its own?); how much "
        "pitched, tonal content those clips hold (pitch_content: 0 for noise and drums) beside corpus clips of "
        "the same genres (pitch_content_corpus); and spectral flux at chunk joins beside flux around bar lines "
        "that are not joins (ratio near 1 = an invisible seam).",
        epilog="example: jamstream eval generation --corpus corpus --json > gen.json   # ~5 min on 2 CPU cores",
        formatter_class=Formatter,
    )
    g.add_argument(
        "--corpus", default=None, help="corpus whose genre tags the style check uses (default: the shipped recipe's 18)"
    )
    g.add_argument(
        "--checks", default="tempo,style,pitch,seams", help="comma-separated subset of tempo,style,pitch,seams"
    )
    g.add_argument("--seeds", type=positive_int, default=1, help="runs per setting (seeds 0..N-1)")
    g.add_argument("--seconds", type=POSITIVE, default=30.0, help="length of each tempo clip")
    g.add_argument(
        "--guidance",
        type=NON_NEGATIVE,
        default=3.0,
        help="classifier-free guidance weight (default = SamplingConfig's)",
    )
    g.add_argument("--checkpoint", type=weights_file, default=None, help="LM weights (default: shipped)")
    g.add_argument("--codec", type=weights_file, default=None, help="codec weights (default: shipped)")
    g.add_argument("--style", type=weights_file, default=None, help="style-model weights (default: shipped)")
    g.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    g.add_argument(
        "--json",
        action="store_true",
        help="one JSON object: tempo_ok_share, grid_ms_median, beat_f1, beat_f1_floor, style_own_genre_share, "
        "pitch_content, pitch_content_corpus, seam_flux_percentile, ...",
    )
    g.set_defaults(func=cmd_eval_generation)


def _add_presets(esub: argparse._SubParsersAction) -> None:
    p = esub.add_parser(
        "presets",
        help="does the style follow the CC? A, a full sweep, then B, for each preset",
        description="Bounce each preset from a conductor file (4 bars on slot A, a 2-bar CC sweep of both slot "
        "knobs, 8 bars on slot B) and embed every bar after the sweep (plus one bar to settle) with the style "
        "model: the share of bars nearer slot B's style than slot A's, and the mean cosine margin.",
        epilog="example: jamstream eval presets --json   # every shipped preset, ~4 min on 2 CPU cores",
        formatter_class=Formatter,
    )
    p.add_argument(
        "--presets", default=None, help="comma-separated preset names or paths (default: every shipped preset)"
    )
    p.add_argument("--seed", type=NON_NEGATIVE_INT, default=0)
    p.add_argument("--checkpoint", type=weights_file, default=None, help="LM weights (default: shipped)")
    p.add_argument("--codec", type=weights_file, default=None, help="codec weights (default: shipped)")
    p.add_argument("--style", type=weights_file, default=None, help="style-model weights (default: shipped)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument(
        "--json",
        action="store_true",
        help=(
            "one JSON object: presets (each with shift = margin after - margin before), share_nearer_b, "
            "presets_at_80, presets_moved_toward_b"
        ),
    )
    p.set_defaults(func=cmd_eval_presets)
