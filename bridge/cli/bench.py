"""`jamstream bench [codec|lm|style|render|latency]`: speed and latency here (benchmarks, not timed tests)."""

from __future__ import annotations

import argparse

from bridge.cli.common import POSITIVE, Formatter, Parser, emit, positive_int, weights_file


def _median_ms(fn, runs: int, warmup: int = 3) -> float:
    import statistics
    import time

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def cmd_bench_style(args: argparse.Namespace) -> int:
    import time

    import numpy as np
    import torch

    from model.errors import JamstreamError
    from model.io.audio import SAMPLE_RATE
    from model.style.network import load_style

    if args.runs < 1:
        raise JamstreamError(f"--runs must be >= 1 (got {args.runs})")
    start = time.perf_counter()
    model = load_style(args.checkpoint)
    model.embed_text(["warm up"])
    load_ms = (time.perf_counter() - start) * 1000
    rng = np.random.default_rng(0)
    t = np.arange(int(10 * SAMPLE_RATE)) / SAMPLE_RATE
    audio = (0.2 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    audio = np.stack([audio, audio])  # 10 s of 48 kHz stereo, as the DAW hands it over
    results = {"load_ms": round(load_ms, 1), "runs": args.runs, "threads": {}}
    before = torch.get_num_threads()
    try:
        for n in args.threads:
            torch.set_num_threads(n)
            results["threads"][str(n)] = {
                "audio_10s_ms": round(_median_ms(lambda: model.embed_audio(audio, SAMPLE_RATE), args.runs), 2),
                "prompt_ms": round(
                    _median_ms(lambda: model.embed_text(["dusty lofi hip hop with mellow piano"]), args.runs), 2
                ),
            }
    finally:
        torch.set_num_threads(before)
    lines = [f"style model loaded in {load_ms:.0f} ms (first call, text encoder included); median of {args.runs} runs:"]
    for n, r in results["threads"].items():
        lines.append(
            f"  {n} thread(s): 10 s of 48 kHz stereo {r['audio_10s_ms']:.1f} ms, one prompt {r['prompt_ms']:.1f} ms"
        )
    emit(results, args.json, "\n".join(lines))
    return 0


def _set_threads(n: int | None):
    import torch

    if n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def cmd_bench_codec(args: argparse.Namespace) -> int:
    from model.codec.network import load_codec
    from model.eval.bench import bench_codec

    threads = _set_threads(args.codec_threads)
    r = bench_codec(load_codec(args.codec), seconds=10.0, levels=16)
    r["threads"] = threads
    text = (
        f"codec, batch 1, 48 kHz stereo, 16 levels, {threads} thread(s): encode {r['encode_rtf']:.0f}x real time, "
        f"decode {r['decode_rtf']:.0f}x (10 s), {r['decode_2s_chunk_rtf']:.0f}x per 2 s chunk "
        f"({r['decode_ms_per_frame']:.2f} ms/frame)"
    )
    emit(r, args.json, text)
    return 0


def _load_lm_for_bench(path: str | None, config: str):
    from model.errors import JamstreamError
    from model.lm.network import CONFIGS, DepthformerLM, load_lm

    if path:
        return load_lm(path), path
    try:
        return load_lm(None), "shipped weights"
    except JamstreamError:
        import torch

        torch.manual_seed(0)
        return DepthformerLM(CONFIGS[config]).eval(), f"untrained {config} (speed does not depend on training)"


def cmd_bench_lm(args: argparse.Namespace) -> int:

    from model.codec.network import FRAME_RATE, load_codec
    from model.eval.bench import bench_codec, bench_lm
    from model.lm.network import count_parameters

    threads = _set_threads(args.lm_threads)
    lm, source = _load_lm_for_bench(args.lm, args.config)
    device = "cuda" if args.device == "cuda" else "cpu"
    if device == "cuda":
        lm = lm.to(device)
    half = None
    if device == "cpu":
        import copy

        from model.lm.half import half_linears

        half = half_linears(copy.deepcopy(lm))  # what CPU generation runs (model/lm/half.py)
    rows = bench_lm(lm, frames=args.frames, half=half)
    try:
        codec_ms = bench_codec(load_codec(args.codec), seconds=2.0, levels=lm.config.levels, repeats=3)[
            "decode_ms_per_frame"
        ]
    except Exception:  # no codec weights yet: report the LM alone
        codec_ms = None
    for r in rows:
        r["rtf_with_codec"] = None if codec_ms is None else 1000.0 / FRAME_RATE / (r["frame_ms"] + codec_ms)
    streams = _bench_streams(half or lm, args, device)
    speculative = _bench_speculative(half or lm, args, device)
    out = {
        "lm": source,
        "config": args.config,
        "parameters": count_parameters(lm),
        "threads": threads,
        "codec_decode_ms_per_frame": codec_ms,
        "variants": rows,
        "streams": streams,
        "speculative": speculative,
    }
    lines = [
        f"LM: {source}, {out['parameters'] / 1e6:.1f} M parameters, {threads} thread(s), batch 1; a frame is 40 ms"
    ]
    lines.append("CFG   cache  dtype          ms/frame   tokens/s   RTF (LM)   RTF (+codec)")
    for r in rows:
        rtf_c = "-" if r["rtf_with_codec"] is None else f"{r['rtf_with_codec']:.2f}"
        lines.append(
            f"{'on ' if r['cfg'] else 'off'}   {'on ' if r['kv_cache'] else 'off'}    {r['dtype']:<12}  "
            f"{r['frame_ms']:>8.2f}  {r['tokens_per_s']:>9.0f}  {r['rtf_lm_only']:>9.2f}  {rtf_c:>12}"
        )
    if streams:
        lines.append(
            f"N streams at once (batched passes, guided, with decoding, {args.frames} frames each, "
            f"{args.lm_threads or 1} thread(s) as serve):"
        )
        for r in streams:
            lines.append(
                f"  N={r['streams']}: {r['rtf_per_stream']:.2f}x real time per stream, "
                f"{r['aggregate_rtf']:.2f}x in all ({r['frame_ms']:.1f} ms a frame, "
                f"{r['mean_batch']:.2f} streams a pass)"
            )
    if speculative:
        lines.append(
            f"speculative decoding ({speculative['draft']}), one guided stream, default sampling: plain "
            f"{speculative['plain_frame_ms']:.1f} ms/frame"
        )
        for r in speculative["lookaheads"]:
            lines.append(
                f"  lookahead {r['lookahead']}: {r['frame_ms']:.1f} ms/frame, {r['speedup']:.2f}x, "
                f"{r['tokens_per_target_pass']:.2f} levels per target pass, {100 * r['acceptance']:.0f}% kept; "
                f"predicted from the costs {r['predicted_speedup']:.2f}x"
            )
        costs = speculative["costs"]
        depth = ", ".join(f"{n}: {ms:.2f}" for n, ms in costs["target_depth_pass_ms"].items())
        lines.append(
            f"  costs (ms): target depth pass by positions {{{depth}}}, draft step {costs['draft_step_ms']:.2f}, "
            f"temporal step {costs['temporal_step_ms']:.2f}"
        )
        lines.append(
            "  predicted speed-up at 50/70/90% kept (lookahead 3): "
            + "/".join(f"{x:.2f}x" for x in speculative["predicted_at_acceptance"].values())
        )
    emit(out, args.json, "\n".join(lines))
    return 0


def _bench_speculative(lm, args, device: str) -> dict | None:
    """`speculative`: the shipped draft on the shipped LM; an untrained draft of the right
    shape otherwise (the `large` LM drafts with the tiny LM's depth-stack shape), whose costs
    are real and whose acceptance means nothing (said in `draft`)."""
    import torch

    from model.errors import JamstreamError
    from model.eval.bench import bench_speculative, predicted_speedup
    from model.lm.draft import DRAFT_CONFIGS, DraftDepth, load_draft

    c = lm.config
    draft, name = None, ""
    if args.draft or getattr(lm, "source", None) is not None:
        try:
            draft = load_draft(args.draft)
            name = args.draft or "shipped draft"
        except JamstreamError:
            draft = None
    if draft is None or draft.config.target_width != c.width or draft.config.levels != c.levels:
        config = DRAFT_CONFIGS["tiny-for-large" if c.width == 1024 else "micro"]
        torch.manual_seed(0)
        draft = DraftDepth(config).eval()
        name = f"untrained {'tiny-for-large' if c.width == 1024 else 'micro'} draft: costs real, acceptance not"
    draft = draft.to(device)
    report = bench_speculative(lm, draft, frames=max(5, min(args.frames, 25)))
    for r in report["lookaheads"]:
        r["predicted_speedup"] = predicted_speedup(report["costs"], c.levels, r["lookahead"], r["acceptance"])
    report["predicted_at_acceptance"] = {
        str(a): predicted_speedup(report["costs"], c.levels, 3, a) for a in (0.5, 0.7, 0.9)
    }
    report["draft"] = name
    return report


def _bench_streams(lm, args, device: str) -> list[dict] | None:
    """`streams`: N = 1, 2, 4 streams batched, with the codec (None without codec weights)."""
    from model.codec.network import load_codec
    from model.eval.bench import bench_streams
    from model.generator import Generator

    try:
        codec = load_codec(args.codec)
    except Exception:
        return None
    if device != "cpu":
        return None  # the codec and the batcher's decode run on the CPU; the GPU run reports variants
    import torch

    lm.codec_fingerprint = None  # speed only: an LM of another codec times the same
    before = torch.get_num_threads()
    torch.set_num_threads(args.lm_threads or 1)  # what `jamstream serve` runs with (its --threads)
    try:
        return bench_streams(Generator(lm, codec), frames=args.frames)
    finally:
        torch.set_num_threads(before)


def cmd_bench_render(args: argparse.Namespace) -> int:
    """A bounce of a preset at a steady tempo with a CC sweep, as fast as the CPU allows."""
    import time

    from bridge.jam.conductor import sweep_clock
    from bridge.jam.engine import Engine
    from bridge.jam.presets import DEFAULT_PRESET, find_preset
    from bridge.jam.render import bounce
    from bridge.jam.stack import load_stack
    from model.errors import JamstreamError

    if not 0 < args.minutes <= 60:
        raise JamstreamError(f"--minutes must be in (0, 60] (got {args.minutes:g})")
    threads = _set_threads(args.render_threads)
    preset = find_preset(args.preset or DEFAULT_PRESET)
    num, den = preset.meter
    bars = max(1, round(args.minutes * 60 * args.bpm / 60 / num))
    clock = sweep_clock(preset, args.bpm, bars, bars * num * 4.0 / den / 2, 8 * 4.0 / den)
    stack = load_stack(preset, lm=args.lm)
    engine = Engine(stack.generator, stack.style_model, preset, clock, seed=0, slot_styles=stack.slot_styles)
    start = time.perf_counter()
    result = bounce(engine, clock, clock.length_seconds)
    wall = time.perf_counter() - start
    seconds = result.audio.shape[1] / 48_000
    out = {
        "preset": preset.name,
        "bpm": args.bpm,
        "seconds": round(seconds, 2),
        "wall_seconds": round(wall, 2),
        "rtf": round(seconds / wall, 3),
        "generation_rtf": round(engine.stats.rtf(), 3),
        "chunks": result.blocks,
        "threads": threads,
    }
    emit(
        out,
        args.json,
        f"render: {seconds:.0f} s of '{preset.name}' at {args.bpm:g} bpm in {wall:.1f} s = {out['rtf']:.2f}x real time "
        f"(generation alone {out['generation_rtf']:.2f}x; {result.blocks} chunks, {threads} thread(s))",
    )
    return 0


def cmd_bench_latency(args: argparse.Namespace) -> int:
    """CC-to-audible and tempo-follow latency of `jamstream jam` on a private dummy JACK server."""
    import sys

    from bridge.jam.presets import DEFAULT_PRESET, find_preset
    from bridge.live.latency_bench import TARGETS, LatencyBenchConfig, run_latency_bench

    cfg = LatencyBenchConfig(
        preset=args.preset or DEFAULT_PRESET,
        flips=args.flips,
        flip_seconds=args.flip_seconds,
        tempo_from=args.tempo_from,
        tempo_to=args.tempo_to,
        tempo_seconds=args.tempo_seconds,
        period=args.period,
        lm=args.lm,
        codec=args.codec,
        style=args.style,
        metronome=args.metronome,
        threads=args.latency_threads,
    )
    cfg.check()
    find_preset(cfg.preset)  # an unknown preset is one line before any server starts
    r = run_latency_bench(cfg, say=lambda m: print(m, file=sys.stderr, flush=True))

    def s(x) -> str:
        return "-" if x is None else f"{x:.3f} s"

    rows = [
        ("CC -> audible, median", s(r["cc_to_audible_median_s"]), f"<= {TARGETS['cc_to_audible_median_s']} s"),
        ("CC -> audible, max", s(r["cc_to_audible_max_s"]), f"<= {TARGETS['cc_to_audible_max_s']} s"),
        (
            f"  gain ({r['gain_measured']} measured, {r['gain_unmeasured']} not)",
            f"{s(r['gain_median_s'])} / {s(r['gain_max_s'])}",
            "median / max",
        ),
        (
            f"  style ({r['style_measured']} measured, {r['style_unmeasured']} not)",
            f"{s(r['style_median_s'])} / {s(r['style_max_s'])}",
            "median / max",
        ),
        (
            f"tempo {r['tempo_from']:g} -> {r['tempo_to']:g} bpm followed",
            s(r["tempo_follow_s"]),
            f"<= {TARGETS['tempo_follow_s']} s",
        ),
        ("underruns / xruns", f"{r['underruns']} / {r['xruns']}", ""),
        ("smoothing half-way", s(r["smoothing_half_s"]), "by design"),
    ]
    lines = [f"latency: {r['preset']} ({r['model']}), rtf {r['rtf']}"]
    lines += [f"  {a:<44} {b:>18}   {c}" for a, b, c in rows]
    for note in (r["gain_note"], r["tempo_follow_note"], *r["warnings"]):
        if note:
            lines.append(f"  note: {note}")
    lines.append(f"  logs: {r['log_dir']}")
    emit(r, args.json, "\n".join(lines))
    return 0


def cmd_bench_all(args: argparse.Namespace) -> int:
    """`jamstream bench` alone: every benchmark whose weights exist (LM always)."""
    import contextlib
    import io
    import json

    from model.errors import JamstreamError

    results, texts = {}, []
    for name, fn in (("codec", cmd_bench_codec), ("lm", cmd_bench_lm), ("style", cmd_bench_style)):
        buf = io.StringIO()
        sub = argparse.Namespace(**{**vars(args), "json": True})
        try:
            with contextlib.redirect_stdout(buf):
                fn(sub)
        except JamstreamError as exc:
            results[name] = {"skipped": str(exc)}
            texts.append(f"{name}: skipped ({exc})")
            continue
        results[name] = json.loads(buf.getvalue())
        if not args.json:
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                fn(argparse.Namespace(**{**vars(args), "json": False}))
            texts.append(buf.getvalue().rstrip())
    emit(results, args.json, "\n\n".join(texts))
    return 0


def _threads(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threads wants comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"--threads wants positive integers, got {text!r}")
    return values


def add(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser(
        "bench",
        help="measure speed on this machine: real-time factors, latencies",
        description="Speed benchmarks (no pass/fail: figures for notes and regressions). Without a subcommand, "
        "runs codec, lm and style in turn (each skipped if its weights are missing; the LM is timed untrained "
        "then, since speed does not depend on training).",
        epilog="examples:\n  jamstream bench --json\n  jamstream bench lm --frames 100\n  jamstream bench codec",
        formatter_class=Formatter,
    )
    b.add_argument("--json", action="store_true", help="print JSON")
    b.add_argument(
        "--frames", type=positive_int, default=50, help="frames the LM generates per timing (after a full 10 s context)"
    )
    b.add_argument("--config", default="tiny", help="LM config timed when no LM weights exist")
    b.set_defaults(
        func=cmd_bench_all,
        lm=None,
        codec=None,
        checkpoint=None,
        runs=20,
        threads=[1, 2],
        device="cpu",
        lm_threads=None,
        codec_threads=None,
    )
    bsub = b.add_subparsers(dest="model", metavar="{codec,lm,style,render,latency}", parser_class=Parser)
    bsub.required = False
    _add_bench_codec(bsub)
    _add_bench_lm(bsub)
    _add_bench_style(bsub)
    _add_bench_render(bsub)
    _add_bench_latency(bsub)


def _add_bench_codec(bsub: argparse._SubParsersAction) -> None:
    cb = bsub.add_parser(
        "codec",
        help="encode/decode real-time factors at batch 1, 16 levels",
        formatter_class=Formatter,
        description=(
            "Median real-time factors of encoding and decoding 10 s of 48 kHz stereo at 16 levels, and of "
            "decoding one 2 s chunk."
        ),
    )
    cb.add_argument("--codec", type=weights_file, default=None, help="codec weights (default: shipped)")
    cb.add_argument("--codec-threads", type=positive_int, default=None, help="torch threads (default: all cores)")
    cb.add_argument("--json", action="store_true", help="print JSON")
    cb.set_defaults(func=cmd_bench_codec)


def _add_bench_lm(bsub: argparse._SubParsersAction) -> None:
    lb = bsub.add_parser(
        "lm",
        help="per-frame latency, tokens/s, RTF: CFG on/off, KV cache on/off, fp32/bf16",
        formatter_class=Formatter,
        description="Generate frames after a full 10 s context at batch 1 and report per-frame latency, tokens/s "
        "and real-time factor for CFG on/off, KV cache on/off and fp32/bf16, with and without codec decoding.",
    )
    lb.add_argument(
        "--lm", type=weights_file, default=None, help="LM weights (default: shipped, else an untrained --config)"
    )
    lb.add_argument("--config", default="tiny", help="LM config timed when no weights exist (large: use --device cuda)")
    lb.add_argument("--codec", type=weights_file, default=None, help="codec weights (default: shipped)")
    lb.add_argument("--frames", type=positive_int, default=50, help="frames generated per variant")
    lb.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to run the LM")
    lb.add_argument("--lm-threads", type=positive_int, default=None, help="torch threads (default: all cores)")
    lb.add_argument(
        "--draft", type=weights_file, default=None, help="draft weights for the speculative figures (default: shipped)"
    )
    lb.add_argument("--json", action="store_true", help="print JSON")
    lb.set_defaults(func=cmd_bench_lm)


def _add_bench_style(bsub: argparse._SubParsersAction) -> None:
    s = bsub.add_parser(
        "style",
        help="embed latency: 10 s of audio and one text prompt",
        description="Median wall time of embedding 10 s of 48 kHz stereo audio and of one text prompt, after a "
        "warm-up, at each thread count. The style model and text encoder load once (cached), as in a live session.",
        epilog="example: jamstream bench style --threads 1,2 --json",
        formatter_class=Formatter,
    )
    s.add_argument("--checkpoint", type=weights_file, default=None, help="style weights (default: the shipped ones)")
    s.add_argument("--runs", type=positive_int, default=20, help="timed runs per measurement")
    s.add_argument("--threads", type=_threads, default=[1, 2], help="torch thread counts to measure")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_bench_style)


def _add_bench_render(bsub: argparse._SubParsersAction) -> None:
    rb = bsub.add_parser(
        "render",
        help="offline bounce speed: a preset at a steady tempo with a CC sweep",
        formatter_class=Formatter,
        description="Bounce a preset (default: the default preset) for --minutes at --bpm with a slot crossfade "
        "half-way, through the whole engine (style mixing, LM, codec, effects, limiter), and report the real-time "
        "factor.",
    )
    rb.add_argument("--preset", default=None, help="preset name or path (default: the default preset)")
    rb.add_argument("--minutes", type=POSITIVE, default=2.0, help="length of the bounce")
    rb.add_argument("--bpm", type=POSITIVE, default=120.0, help="tempo")
    rb.add_argument("--lm", type=weights_file, default=None, help="LM weights (default: shipped)")
    rb.add_argument("--render-threads", type=positive_int, default=None, help="torch threads (default: all cores)")
    rb.add_argument("--json", action="store_true", help="print JSON")
    rb.set_defaults(func=cmd_bench_render)


def _add_bench_latency(bsub: argparse._SubParsersAction) -> None:
    lb = bsub.add_parser(
        "latency",
        help="CC-to-audible and tempo-follow latency of `jam` on a private dummy JACK server",
        formatter_class=Formatter,
        description=(
            "Start a private dummy JACK server, run `jamstream jam --preset P` on it and play a scripted DAW: "
            "timebase master, MIDI out, a recorder on jam's outputs. Then, one phase after another:\n"
            "  gain:  the preset's gain CC flips between its top and 24 dB lower every --flip-seconds; latency = "
            "CC to the output level half-way (in dB) between its old and new plateaus\n"
            "  style: two slots' CCs step crosswise (A up/B down, then back); latency = CC to the first piece heard "
            "whose logged mix is past half-way to the new one\n"
            "  tempo: the DAW's tempo changes on a bar line (--tempo-from -> --tempo-to); follow = change to the "
            "first audio on the new beat grid (the clicks with --metronome, else the bpm the worker logs per piece)"
            "\n\nEach flip lands at a random point of a bar. Every time is a difference of JACK frame counts. "
            "A flip whose effect did not settle before the next one is counted as unmeasured, not guessed: give "
            "--flip-seconds a few times the latency you expect. Targets (reported, not enforced): median <= 0.3 s, "
            "max <= 0.5 s, tempo <= 0.5 s."
        ),
        epilog="examples:\n  jamstream bench latency --preset jazz-trio-bossa --json\n"
        "  jamstream bench latency --metronome --flips 2\n"
        "  jamstream bench latency --preset techno-dub --tempo-from 100 --tempo-to 132",
    )
    lb.add_argument("--preset", default=None, help="preset name or path (default: the default preset)")
    lb.add_argument("--flips", type=positive_int, default=6, help="CC changes per kind (gain, style)")
    lb.add_argument("--flip-seconds", type=POSITIVE, default=3.0, help="seconds between CC changes")
    lb.add_argument("--tempo-from", type=POSITIVE, default=None, help="DAW tempo first (default: the preset's)")
    lb.add_argument("--tempo-to", type=POSITIVE, default=None, help="tempo after the change (default: from x 1.32)")
    lb.add_argument("--tempo-seconds", type=POSITIVE, default=8.0, help="seconds recorded after the tempo change")
    lb.add_argument("--metronome", action="store_true", help="jam plays clicks on its beats instead of the model")
    lb.add_argument("--lm", type=weights_file, default=None, help="LM weights (default: shipped)")
    lb.add_argument("--codec", type=weights_file, default=None, help="codec weights (default: shipped)")
    lb.add_argument("--style", type=weights_file, default=None, help="style-model weights (default: shipped)")
    lb.add_argument("--period", type=positive_int, default=256, help="JACK period (frames) of the private server")
    lb.add_argument(
        "--threads", dest="latency_threads", type=positive_int, default=1, help="torch threads in jam's generator"
    )
    lb.add_argument("--json", action="store_true", help="print JSON")
    lb.set_defaults(func=cmd_bench_latency)
