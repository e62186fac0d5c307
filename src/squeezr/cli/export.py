"""``squeezr export EXP``: a trained or pruned network as a file other tools load.

Formats: ``torchscript`` (``torch.jit.load`` runs it without squeezr), ``onnx`` (input
``images`` of one sample's shape — 3 x 32 x 32 for the CIFAR ResNets, 3 x 224 x 224 for
torchvision ones — with a dynamic batch, output ``logits``), ``state-dict`` (``torch.save``
of the plain ``state_dict``: a pruned torchvision ResNet's keys are torchvision's, minus the
removed blocks'; ``squeezr.blocknet.from_spec`` of the experiment's recorded shape loads it),
``module`` (the pruned ``nn.Module`` object, ``torch.load(path, weights_only=False)`` with
squeezr installed), for Hugging Face decoder models ``hf`` (their default: a
``save_pretrained`` folder with the new layer count, which ``AutoModelForCausalLM`` loads
without squeezr) and ``all`` (each of them, ONNX and hf where the family exports). Inputs are
images normalised as in training (the dataset's mean and std), or token ids. Files are
written atomically; an existing one is replaced.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from squeezr.cli.options import add_repo_option, add_strict_option, repo_arg
from squeezr.dbx import jsonx
from squeezr.dbx.clikit import plain_text
from squeezr.dbx.errors import UserError

FORMATS = {"torchscript": ".pt", "onnx": ".onnx", "state-dict": ".pt", "module": ".pt", "hf": ""}
OPTIONAL = ("onnx", "hf")
"""Formats ``--format all`` skips (with a warning) for families that cannot be written so."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a trained or pruned network as TorchScript, ONNX or a state dict",
        description=plain_text(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("experiment", metavar="EXP", help="training or pruning experiment (name, id)")
    p.add_argument(
        "--format",
        choices=[*sorted(FORMATS), "all"],
        help="default: hf for Hugging Face decoder models, torchscript for the others",
    )
    p.add_argument(
        "--output",
        "-o",
        help="file to write (default: <name>-<id>.pt or .onnx in the current folder, "
        "'/' in the name as '-'); with --format all, a folder",
    )
    add_repo_option(p, creates=False)
    add_strict_option(p)
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(func=run)


def default_output(exp: Any, fmt: str) -> Path:
    """``<name>-<id>[-state-dict].<ext>``: a file name that says which experiment it is."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", exp.name.replace("/", "-")).strip("-.")
    kind = f"-{fmt}" if fmt in ("state-dict", "module", "hf") else ""
    return Path(f"{stem}-{exp.id[:8]}{kind}{FORMATS[fmt]}")


def write(model: Any, fmt: str, output: Path) -> None:
    """Write ``model`` as ``fmt`` to ``output`` (atomically); a family that cannot be
    exported in that format is a one-line UserError."""
    import torch

    from squeezr.blocknet import export_onnx, export_torchscript
    from squeezr.torchfiles import save_torch_file, write_atomically

    try:
        if fmt == "torchscript":
            export_torchscript(model, output)
        elif fmt == "onnx":
            export_onnx(model, output)
        elif fmt == "hf":
            from squeezr.networks.hf import DecoderNet, save_pretrained

            if not isinstance(model, DecoderNet):
                raise UserError("only Hugging Face decoder models export as hf folders")
            save_pretrained(model, output)
        elif fmt == "module":
            write_atomically(output, lambda tmp: torch.save(model.cpu().eval(), tmp))
        else:
            save_torch_file({k: v.detach().cpu() for k, v in model.state_dict().items()}, output)
    except UserError:
        raise
    except Exception as exc:  # exporters fail in many ways; the message is what matters
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{type(model).__name__} cannot be exported as {fmt}: {first}") from None


def run(args: argparse.Namespace) -> int:
    from squeezr import dbx
    from squeezr.blocknet import count_params, load_model
    from squeezr.models import MODEL_ATTACHMENT

    exp = dbx.open(args.experiment, repo=repo_arg(args))
    if MODEL_ATTACHMENT not in exp.attachments:
        raise UserError(
            f"{exp.name} ({exp.id}) has no trained network ({MODEL_ATTACHMENT}) yet: it is "
            "not finished; resume it first, or export a finished experiment"
        )
    model = load_model(exp.attachment_path(MODEL_ATTACHMENT))
    if args.format is None:
        args.format = "hf" if model.SPEC_FORMAT.startswith("squeezr.hf/") else "torchscript"
    formats = sorted(FORMATS) if args.format == "all" else [args.format]
    written, skipped = {}, {}
    for fmt in formats:
        output = Path(args.output) if args.output else default_output(exp, fmt)
        if args.format == "all" or (output.is_dir() and fmt != "hf"):  # hf: itself a folder
            folder = Path(args.output) if args.output else Path()
            output = folder / default_output(exp, fmt)
        try:
            write(model, fmt, output)
        except UserError as exc:
            if args.format != "all" or fmt not in OPTIONAL:
                raise
            skipped[fmt] = str(exc)  # "ONNX (and hf) where the family supports it"
            continue
        written[fmt] = str(output.resolve())
    info = {
        "id": exp.id,
        "name": exp.name,
        "format": args.format,
        "path": written.get(args.format),
        "written": written,
        "skipped": skipped,
        "config": list(model.config),
        "params": count_params(model),
    }
    if args.json:
        print(jsonx.encode(info))
    else:
        shape = "-".join(map(str, model.config))
        for fmt, path in written.items():
            print(
                f"{exp.name} ({exp.id}): blocks per group {shape}, {info['params']:,} params, "
                f"written as {fmt} to {path if args.format == 'all' else output}"
            )
        for reason in skipped.values():
            print(f"squeezr: warning: {reason}", file=sys.stderr)
    return 0
