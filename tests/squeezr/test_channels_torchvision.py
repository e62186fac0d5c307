"""``--then channels`` on torchvision-layout ResNets (BasicBlock and Bottleneck).

The spec records the narrowed layers (squeezr.widths.RecordsWidths, shared with the CIFAR
ResNet): the parameters really go, a narrowed network saves, loads to the same outputs,
rebuilds from its spec and exports, and the pruning loop runs the stage on it.
"""

import json

import onnx
import pytest
import torch
from test_channels import macs_by_hooks, splits  # noqa: F401 (splits: a fixture)
from test_prune_loop import cfg
from test_torchvision_resnet import scrambled

from squeezr.blocknet import (
    count_macs,
    count_params,
    export_onnx,
    export_torchscript,
    load_model,
    save_model,
)
from squeezr.dbx.errors import UserError
from squeezr.networks.torchvision import TorchvisionResNet
from squeezr.prune import prune
from squeezr.prune.channels import channel_groups, prune_channels, removed_count
from squeezr.prune.targets import Target
from squeezr.widths import changed_widths, layer_widths

BASIC = {"block": "basic", "layers": [1, 1, 1, 1], "num_classes": 4}
BOTTLENECK = {
    "block": "bottleneck",
    "layers": [1, 2, 1, 1],
    "width_per_group": 16,
    "num_classes": 4,
}
EXAMPLE = torch.zeros(1, 3, 32, 32)


def basic_params(widths, stem, classes=4):
    """Parameters of a one-block-per-stage BasicBlock ResNet, by hand: stem width ``stem``,
    stage ``s`` with inner width ``widths[s][0]`` and output width ``widths[s][1]``."""
    total = 3 * stem * 49 + 2 * stem
    cin = stem
    for stage, (inner, out) in enumerate(widths):
        total += cin * inner * 9 + 2 * inner + inner * out * 9 + 2 * out
        if stage > 0:
            total += cin * out + 2 * out  # the downsampling shortcut
        cin = out
    return total + cin * classes + classes


def narrowed(arch, ratio=0.5, removed=()):
    net = scrambled(arch)
    for b in removed:
        net.remove_block(b)
    start = layer_widths(net)
    groups = channel_groups(net, EXAMPLE)
    keep = {k: w - removed_count(w, ratio) for k, w in groups.items()}
    widths = prune_channels(net, EXAMPLE, keep, "l2", generator=torch.Generator().manual_seed(0))
    net.record_widths(changed_widths(start, net))
    return net.eval(), widths


def test_basic_blocks_lose_the_ratio_in_every_group_and_the_parameters_really_go():
    net, widths = narrowed(BASIC)
    # the stem and layer1 share the residual stream (64 -> 32); every other stage's stream
    # and every block's inner width halve too
    assert sorted(set(widths.values())) == [32, 64, 128, 256]
    full = ((64, 64), (128, 128), (256, 256), (512, 512))
    assert count_params(scrambled(BASIC)) == basic_params(full, 64)
    assert count_params(net) == basic_params(((32, 32), (64, 64), (128, 128), (256, 256)), 32)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    assert count_macs(net, (3, 32, 32)) == macs_by_hooks(net)


@pytest.mark.parametrize("arch", [BASIC, BOTTLENECK], ids=["basic", "bottleneck"])
def test_a_narrowed_network_saves_loads_rebuilds_and_exports(arch, tmp_path):
    # block 1 (BASIC: layer2.0) / block 3 (BOTTLENECK: layer3.0) downsample: removing them
    # leaves a shortcut unit, narrowed with its stage
    removed = (1,) if arch is BASIC else (2, 3)
    net, _ = narrowed(arch, removed=removed)
    blocks_only = scrambled(arch)
    for b in removed:
        blocks_only.remove_block(b)
    assert count_params(net) < count_params(blocks_only)
    assert all(k.startswith(("conv1", "bn1", "layer", "fc")) for k in net.state_dict())
    spec = net.spec()
    assert json.loads(json.dumps(spec)) == spec and spec["widths"]
    x = torch.randn(3, 3, 32, 32)
    loaded = load_model(save_model(net, tmp_path / "net.pt")).eval()
    torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)
    assert loaded.spec() == spec
    fresh = TorchvisionResNet.from_spec(spec, seed=1)  # the narrowed shape from scratch
    assert [p.shape for p in fresh.parameters()] == [p.shape for p in net.parameters()]
    scripted = torch.jit.load(str(export_torchscript(net, tmp_path / "net.ts")))
    torch.testing.assert_close(scripted(x), net(x), rtol=1e-5, atol=1e-5)
    onnx.checker.check_model(onnx.load(export_onnx(net, tmp_path / "net.onnx", (3, 32, 32))))


def test_an_unpruned_spec_is_unchanged_and_a_foreign_widths_record_is_refused():
    assert "widths" not in scrambled(BASIC).spec()  # files written before stay as they were
    spec = narrowed(BASIC)[0].spec()
    spec["widths"]["layer9.0.conv1"] = [8, 8, 1]
    with pytest.raises(UserError, match="does not have"):
        TorchvisionResNet.from_spec(spec)
    spec = narrowed(BASIC)[0].spec()
    spec["widths"] = [["conv1", [8, 3, 1]]]
    with pytest.raises(UserError, match="damaged"):
        TorchvisionResNet.from_spec(spec)


def test_the_loop_runs_the_channel_stage_on_a_torchvision_resnet(splits):  # noqa: F811
    settings = cfg(target=Target("removed", 1), schedule="once", then="channels:0.5,steps=2")
    result = prune(scrambled(BASIC).train(), splits, settings, progress=False)
    first, last = result.channel_steps
    assert result.steps[-1]["params"] > first["params"] > last["params"]
    assert last["params"] == count_params(result.model)
    assert result.model.spec()["widths"] == result.model.narrowed_widths
