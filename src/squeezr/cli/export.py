"""``squeezr export EXP``: a trained or pruned network as a file other tools load.

Formats: ``torchscript`` (``torch.jit.load`` runs it without squeezr), ``onnx`` (input
``images`` of shape N x 3 x 32 x 32 with a dynamic batch, output ``logits``),
``state-dict`` (``torch.save`` of the plain ``state_dict``, for ``ResNet.from_spec`` with the
experiment's recorded shape; ``squeezr.models.load_model`` reads the experiment's own
``model.pt`` directly) and, for Hugging Face decoder models, ``hf`` (the default for them:
a ``save_pretrained`` folder with the new layer count that ``AutoModelForCausalLM`` loads). Inputs are images normalised as in training (the dataset's mean and
std, squeezr.augment.normalize). The file is written atomically; an existing one is replaced.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from squeezr.cli.options import add_repo_option, add_strict_option, repo_arg
from squeezr.dbx import jsonx
from squeezr.dbx.clikit import plain_text
from squeezr.dbx.errors import UserError

FORMATS = {"torchscript": ".pt", "onnx": ".onnx", "state-dict": ".pt", "hf": ""}


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
        choices=sorted(FORMATS),
        help="default: hf for Hugging Face decoder models, torchscript for the others",
    )
    p.add_argument(
        "--output",
        "-o",
        help="file to write (default: <name>-<id>.pt or .onnx in the current folder, "
        "'/' in the name as '-')",
    )
    add_repo_option(p, creates=False)
    add_strict_option(p)
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(func=run)


def default_output(exp: Any, fmt: str) -> Path:
    """``<name>-<id>[-state-dict].<ext>``: a file name that says which experiment it is."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", exp.name.replace("/", "-")).strip("-.")
    kind = {"state-dict": "-state-dict", "hf": "-hf"}.get(fmt, "")
    return Path(f"{stem}-{exp.id[:8]}{kind}{FORMATS[fmt]}")


def run(args: argparse.Namespace) -> int:
    from squeezr import dbx
    from squeezr.models import (
        MODEL_ATTACHMENT,
        count_params,
        export_onnx,
        export_torchscript,
        load_model,
    )
    from squeezr.torchfiles import save_torch_file

    exp = dbx.open(args.experiment, repo=repo_arg(args))
    if MODEL_ATTACHMENT not in exp.attachments:
        raise UserError(
            f"{exp.name} ({exp.id}) has no trained network ({MODEL_ATTACHMENT}) yet: it is "
            "not finished; resume it first, or export a finished experiment"
        )
    model = load_model(exp.attachment_path(MODEL_ATTACHMENT))
    decoder = model.SPEC_FORMAT.startswith("squeezr.hf/")
    args.format = args.format or ("hf" if decoder else "torchscript")
    output = Path(args.output) if args.output else default_output(exp, args.format)
    if output.is_dir() and args.format != "hf":  # an hf export is itself a folder
        output = output / default_output(exp, args.format)
    if args.format == "hf":
        if not decoder:
            raise UserError("--format hf is for Hugging Face decoder models; this is not one")
        from squeezr.networks.hf import save_pretrained

        save_pretrained(model, output)
    elif args.format == "torchscript":
        export_torchscript(model, output)
    elif args.format == "onnx":
        export_onnx(model, output)
    else:
        save_torch_file({k: v.detach().cpu() for k, v in model.state_dict().items()}, output)
    info = {
        "id": exp.id,
        "name": exp.name,
        "format": args.format,
        "path": str(output.resolve()),
        "config": list(model.config),
        "params": count_params(model),
    }
    if args.json:
        print(jsonx.encode(info))
    else:
        shape = "-".join(map(str, model.config))
        print(
            f"{exp.name} ({exp.id}): blocks per group {shape}, {info['params']:,} params, "
            f"written as {args.format} to {output}"
        )
    return 0
