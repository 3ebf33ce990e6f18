"""`jamstream generate`: a clip from a prompt or a mix of prompts, at a tempo."""

from __future__ import annotations

import argparse

from bridge.cli.common import (
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    PROBABILITY,
    Formatter,
    add_speculative_args,
    emit,
    output_file,
    positive_int,
    speculative_from,
    weights_file,
)

EPILOG = """\
examples:
  jamstream generate "laid-back swing jazz trio" --bpm 96 --seconds 20 -o jazz.wav
  jamstream generate --mix "dub techno:0.7,jazz piano:0.3" --bpm 120 --meter 4/4 -o mix.wav --json
  jamstream generate --adapter ohhalim --bpm 110 -o me.wav        # your fine-tune, in its captured style
  jamstream generate --mix "adapter:ohhalim:0.6,funk:0.4" --adapter ohhalim --adapter-strength 0.7 -o x.wav
"""


def parse_mix(text: str) -> list[tuple[str, float]]:
    """'dub techno:0.7,jazz piano:0.3' -> [('dub techno', 0.7), ('jazz piano', 0.3)]."""
    from model.errors import JamstreamError

    pairs = []
    for item in text.split(","):
        if ":" not in item:
            raise JamstreamError(
                f'--mix entry {item.strip()!r} is not PROMPT:WEIGHT (e.g. "dub techno:0.7,jazz piano:0.3")'
            )
        prompt, weight = item.rsplit(":", 1)
        try:
            w = float(weight)
        except ValueError:
            raise JamstreamError(f"--mix weight {weight.strip()!r} of {prompt.strip()!r} is not a number") from None
        if not prompt.strip():
            raise JamstreamError(f"--mix entry {item.strip()!r} has an empty prompt")
        pairs.append((prompt.strip(), w))
    return pairs


def cmd_generate(args: argparse.Namespace) -> int:
    import torch

    from bridge.jam.offline import render_clip
    from bridge.jam.time.clock import parse_meter
    from model.adapters import lora, store
    from model.codec.network import load_codec
    from model.errors import JamstreamError
    from model.generator import MAX_BPM, Generator
    from model.io.audio import check_writable, write_audio
    from model.lm.network import load_lm
    from model.lm.sampling import SamplingConfig
    from model.style.network import load_style

    if args.prompt is not None and args.mix is not None:
        raise JamstreamError('give a PROMPT or --mix "a:0.7,b:0.3" (one of them)')
    if args.prompt is None and args.mix is None and not args.adapter:
        raise JamstreamError('give a PROMPT, --mix "a:0.7,b:0.3" or --adapter NAME (its captured style)')
    if not 0 < args.bpm <= MAX_BPM:
        raise JamstreamError(f"--bpm must be in (0, {MAX_BPM:g}] (got {args.bpm:g})")
    if not 0 < args.seconds <= 3600:
        raise JamstreamError(f"--seconds must be in (0, 3600] (got {args.seconds:g})")
    meter = parse_meter(args.meter)  # the presets' rule: one meter grammar in jamstream
    check_writable(args.output)
    if args.mix is not None:
        pairs = parse_mix(args.mix)
    else:  # no prompt with --adapter: the adapter's own captured style
        pairs = [(args.prompt if args.prompt is not None else f"{store.STYLE_PREFIX}{args.adapter}", 1.0)]
    if any(not p.strip() for p, _ in pairs):
        raise JamstreamError('the prompt is empty: describe a style, e.g. "bossa nova guitar"')
    if any(w < 0 for _, w in pairs) or not any(w > 0 for _, w in pairs):
        raise JamstreamError("--mix weights must be >= 0 and not all zero")
    sampling = SamplingConfig(args.temperature, args.top_k, args.top_p, args.guidance).validate()
    if args.threads:
        torch.set_num_threads(args.threads)
    style_model = load_style(args.style)
    lm = load_lm(args.lm)
    if args.adapter:
        lora.apply_adapter(lm, args.adapter, strength=args.adapter_strength, adapters_dir=args.adapters_dir)
    else:
        from model.lm import half

        if half.wanted():
            half.half_linears(lm)  # fp16 weights read half the bytes (model/lm/half.py)
    speculation = None
    if speculative_from(args):
        from model.lm.speculative import load_speculation

        speculation = load_speculation(args.draft)
    generator = Generator(lm, load_codec(args.codec), speculation=speculation)
    clip = render_clip(
        generator,
        style_model,
        pairs,
        args.bpm,
        meter,
        args.seconds,
        args.seed,
        sampling,
        adapters_dir=args.adapters_dir,
    )
    audio, total, wall = clip.audio, clip.frames, clip.wall_seconds
    write_audio(args.output, audio.numpy())
    seconds = audio.shape[1] / 48_000
    report = {
        "output": str(args.output),
        "seconds": round(seconds, 3),
        "rtf": seconds / wall,
        "tokens_per_s": total * generator.levels / wall,
        "frames": total,
        "bpm": args.bpm,
        "meter": args.meter,
        "style": [[p, w] for p, w in pairs],
        "seed": args.seed,
        "guidance": sampling.guidance,
        "adapter": args.adapter,
        "adapter_strength": args.adapter_strength if args.adapter else None,
    }
    emit(
        report,
        args.json,
        f"wrote {args.output}: {seconds:.1f} s in {wall:.1f} s (real-time factor {report['rtf']:.2f}, "
        f"{report['tokens_per_s']:.0f} tokens/s)",
    )
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser(
        "generate",
        help="generate a clip from a text prompt or a mix of prompts, at a tempo",
        description="Generate music offline through the same engine the live bridge plays: chunks of one bar, "
        "the LM conditioned on the style and on every frame's tempo, beat and bar phase.",
        epilog=EPILOG,
        formatter_class=Formatter,
    )
    g.add_argument("prompt", nargs="?", default=None, help='a style prompt, e.g. "bossa nova guitar", or adapter:NAME')
    g.add_argument("--mix", default=None, help='weighted prompts: "dub techno:0.7,jazz piano:0.3"')
    g.add_argument("--bpm", type=POSITIVE, default=120.0, help="tempo in beats of the meter's denominator")
    g.add_argument("--meter", default="4/4", help="time signature; chunks are one bar")
    g.add_argument("--seconds", type=POSITIVE, default=30.0, help="length of the clip")
    g.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="same seed, same clip")
    g.add_argument("--temperature", type=NON_NEGATIVE, default=1.1)
    g.add_argument("--top-k", type=NON_NEGATIVE_INT, default=40)
    g.add_argument("--top-p", type=PROBABILITY, default=1.0)
    g.add_argument(
        "--guidance",
        type=NON_NEGATIVE,
        default=3.0,
        help="classifier-free guidance weight (0: off; default = SamplingConfig's, see model/lm/sampling.py)",
    )
    g.add_argument("--adapter", default=None, help="a fine-tuned LoRA adapter (name under --adapters-dir, or a folder)")
    g.add_argument(
        "--adapter-strength",
        type=NON_NEGATIVE,
        default=1.0,
        help="LoRA scaling of --adapter (0: the base model exactly)",
    )
    g.add_argument(
        "--adapters-dir", default=None, help="where adapters live (default: $JAMSTREAM_ADAPTERS or ./adapters)"
    )
    g.add_argument("--lm", type=weights_file, default=None, help="LM weights (default: shipped)")
    add_speculative_args(g)
    g.add_argument("--codec", type=weights_file, default=None, help="codec weights (default: shipped)")
    g.add_argument("--style", type=weights_file, default=None, help="style-model weights (default: shipped)")
    g.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    g.add_argument("-o", "--output", type=output_file, required=True, help="output audio file (.wav or .flac)")
    g.add_argument("--json", action="store_true", help="print a JSON report (rtf, tokens_per_s, ...)")
    g.set_defaults(func=cmd_generate)
