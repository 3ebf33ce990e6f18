"""`jamstream bench style`: embed latency on this machine (benchmarks, not timed tests)."""

from __future__ import annotations

import argparse

from .common import Formatter, Parser, emit


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

    from model.audio import SAMPLE_RATE
    from model.errors import JamstreamError
    from model.style import load_style

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
                "prompt_ms": round(_median_ms(lambda: model.embed_text(["dusty lofi hip hop with mellow piano"]), args.runs), 2),
            }
    finally:
        torch.set_num_threads(before)
    lines = [f"style model loaded in {load_ms:.0f} ms (first call, text encoder included); median of {args.runs} runs:"]
    for n, r in results["threads"].items():
        lines.append(f"  {n} thread(s): 10 s of 48 kHz stereo {r['audio_10s_ms']:.1f} ms, one prompt {r['prompt_ms']:.1f} ms")
    emit(results, args.json, "\n".join(lines))
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
    b = sub.add_parser("bench", help="measure a model's latency on this machine", description="Latency benchmarks.", formatter_class=Formatter)
    bsub = b.add_subparsers(dest="model", metavar="{style}", parser_class=Parser)
    bsub.required = True
    s = bsub.add_parser(
        "style",
        help="embed latency: 10 s of audio and one text prompt",
        description="Median wall time of embedding 10 s of 48 kHz stereo audio and of one text prompt, after a "
        "warm-up, at each thread count. The style model and text encoder load once (cached), as in a live session.",
        epilog="example: jamstream bench style --threads 1,2 --json",
        formatter_class=Formatter,
    )
    s.add_argument("--checkpoint", default=None, help="style weights (default: the shipped ones)")
    s.add_argument("--runs", type=int, default=20, help="timed runs per measurement")
    s.add_argument("--threads", type=_threads, default=[1, 2], help="torch thread counts to measure")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_bench_style)
