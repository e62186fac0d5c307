"""The CIFAR ResNet: shapes, stable indices, structural removal, counting, save/load, export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from squeezr.dbx.errors import UserError
from squeezr.models import (
    TRANSITION,
    BasicBlock,
    ResNet,
    ShortcutUnit,
    block_macs,
    block_params,
    count_macs,
    count_params,
    export_onnx,
    export_torchscript,
    load_model,
    preset_key,
    resnet,
    save_model,
)


def _images(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _settle_bn(model: ResNet) -> None:
    """Give BN running statistics non-trivial values so eval-mode checks exercise them."""
    model.train()
    with torch.no_grad():
        model(_images(8, seed=7))
    model.eval()


def test_resnet110_parameter_count_is_the_published_one():
    assert count_params(resnet("resnet110", num_classes=10)) == 1_730_714


@pytest.mark.parametrize(
    ("name", "blocks"),
    [("resnet20", 9), ("resnet32", 15), ("resnet44", 21), ("resnet56", 27), ("resnet110", 54)],
)
def test_presets_have_6n_plus_2_layers(name, blocks):
    model = resnet(name)
    assert model.block_ids() == list(range(blocks))
    assert model.config == (blocks // 3,) * 3


def test_resnet20_macs_are_counted_analytically():
    conv = 32 * 32 * 16 * 16 * 9  # one 3x3 conv of group 1; every plain conv costs the same
    stem = 32 * 32 * 16 * 3 * 9
    group1 = 6 * conv
    shortcut = 16 * 16 * 32 * 16  # 1x1, stride 2: same cost in group 3 (half size, twice width)
    later_group = conv // 2 + conv + shortcut + 4 * conv  # stride-2 conv1, conv2, 2 more blocks
    assert count_macs(resnet("resnet20")) == stem + group1 + 2 * later_group + 64 * 10


def test_forward_shape_and_group_bookkeeping(tiny_model):
    assert tiny_model(_images(3)).shape == (3, 10)
    assert [tiny_model.group_of(i) for i in range(6)] == [0, 0, 1, 1, 2, 2]
    assert [tiny_model.is_downsampling(i) for i in range(6)] == [
        False,
        False,
        True,
        False,
        True,
        False,
    ]
    assert tiny_model.group_of(np.int64(3)) == 1  # numpy / torch integers are fine too


def test_forward_equals_head_of_units_applied_to_stem(tiny_model):
    tiny_model.remove_block(2)
    tiny_model.eval()
    x = _images()
    y = tiny_model.stem(x)
    for _, unit in tiny_model.units():
        y = unit(y)
    assert torch.equal(tiny_model.head(y), tiny_model(x))


@pytest.mark.parametrize("index", [0, 1, 2, 3, 4, 5])
def test_removal_equals_bypassing_the_residual_branch(tiny_model, index):
    _settle_bn(tiny_model)
    x = _images()
    tiny_model.block(index).residual_scale = 0.0
    bypassed = tiny_model(x)
    tiny_model.block(index).residual_scale = None
    params_before = count_params(tiny_model)
    removable = block_params(tiny_model)[index]
    keys_before = set(tiny_model.state_dict())

    tiny_model.remove_block(index)

    assert torch.equal(tiny_model(x), bypassed)
    assert count_params(tiny_model) == params_before - removable
    gone = keys_before - set(tiny_model.state_dict())
    assert gone and all(k.startswith(f"blocks.{index}.") for k in gone)
    assert index not in tiny_model.block_ids()
    assert tiny_model.removed == [index]


def test_removed_downsampling_block_leaves_its_shortcut(tiny_model):
    shortcut = tiny_model.block(4).shortcut
    tiny_model.remove_block(4)
    units = dict(tiny_model.units())
    assert isinstance(units[4], ShortcutUnit) and units[4].shortcut is shortcut
    assert [i for i, _ in tiny_model.units()] == [0, 1, 2, 3, 4, 5]
    assert tiny_model.block_ids() == [0, 1, 2, 3, 5]
    assert tiny_model.config == (2, 2, 1)
    with pytest.raises(UserError, match="block 4 has been removed"):
        tiny_model.block(4)
    with pytest.raises(UserError, match="removed"):
        tiny_model.remove_block(4)


def test_block_params_are_the_residual_branch(tiny_model):
    params = block_params(tiny_model)
    assert params[0] == 2 * (16 * 16 * 9) + 4 * 16
    assert params[2] == 16 * 32 * 9 + 32 * 32 * 9 + 4 * 32  # shortcut stays, not counted
    assert sorted(params) == tiny_model.block_ids()


def test_block_macs_match_the_total_drop(tiny_model):
    before = count_macs(tiny_model)
    saved = block_macs(tiny_model)
    assert saved[0] == 2 * 32 * 32 * 16 * 16 * 9
    assert saved[2] == 16 * 16 * 32 * (16 + 32) * 9  # stride-2 conv1 then conv2 at 16x16
    tiny_model.remove_block(2)
    assert count_macs(tiny_model) == before - saved[2]
    assert count_macs(tiny_model, (3, 64, 64)) == 4 * (count_macs(tiny_model) - 64 * 10) + 640


def test_any_configuration_including_empty_groups():
    x = _images(2)
    for config in [(0, 0, 0), (1, 0, 2), (0, 3, 0), (3, 1, 0)]:
        model = ResNet(config, num_classes=7)
        assert model(x).shape == (2, 7)
        assert model.config == config
    model = ResNet((1, 0, 2))
    assert [i for i, _ in model.units()] == [0, TRANSITION, 1, 2]
    assert model.block_ids() == [0, 1, 2]


def test_fresh_config_matches_a_pruned_network_only_when_the_group_is_empty(tiny_model):
    for i in (2, 3):  # empty group 2: its downsampling shortcut survives as the transition
        tiny_model.remove_block(i)
    fresh = ResNet(tiny_model.config)
    assert count_params(fresh) == count_params(tiny_model)
    assert count_macs(fresh) == count_macs(tiny_model)
    # A removed downsampling block in a group that keeps blocks: shortcut unit + plain blocks,
    # which ResNet(config) does not build (its first block of the group downsamples).
    r20 = resnet("resnet20")
    r20.remove_block(3)
    assert count_params(r20) == 258_522
    assert count_params(ResNet(r20.config)) == 253_914 == count_params(ResNet((3, 2, 3)))


def test_from_spec_builds_a_fresh_seeded_network_of_exactly_the_pruned_shape(tiny_model):
    _settle_bn(tiny_model)
    with torch.no_grad():
        for p in tiny_model.parameters():
            p.add_(1.0)  # stands in for training
    tiny_model.remove_block(2)
    tiny_model.remove_block(5)
    spec = tiny_model.spec()
    rng = torch.get_rng_state()
    fresh = ResNet.from_spec(spec, seed=3)
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is left alone
    same, other = ResNet.from_spec(spec, seed=3), ResNet.from_spec(spec, seed=4)
    trained, new = tiny_model.state_dict(), fresh.state_dict()
    assert {k: v.shape for k, v in new.items()} == {k: v.shape for k, v in trained.items()}
    assert count_params(fresh) == count_params(tiny_model)
    assert count_macs(fresh) == count_macs(tiny_model)
    assert fresh.removed == [2, 5] and fresh.block_ids() == tiny_model.block_ids()
    assert all(torch.equal(new[k], same.state_dict()[k]) for k in new)
    weights = [k for k in new if k.endswith("conv1.weight")]
    assert all(not torch.equal(new[k], other.state_dict()[k]) for k in weights)
    assert all(
        not torch.equal(new[k], trained[k])
        for k in new
        if new[k].is_floating_point() and "running" not in k
    )
    bn = fresh.block(0).bn1
    assert torch.equal(bn.running_mean, torch.zeros(16)) and bn.num_batches_tracked == 0
    # Remaining blocks start from the unpruned network's initialisation with that seed.
    torch.manual_seed(3)
    unpruned = ResNet((2, 2, 2)).state_dict()
    assert all(torch.equal(new[k], unpruned[k]) for k in new)


def test_residual_scale_multiplies_the_residual_branch(tiny_model):
    tiny_model.eval()
    block = tiny_model.block(1)
    y = torch.rand(2, 16, 32, 32)
    block.residual_scale = 0.25
    expected = torch.relu(0.25 * block.residual(y) + y)
    assert torch.allclose(block(y), expected)
    mask = torch.ones((), requires_grad=True)
    block.residual_scale = mask
    tiny_model(_images(2)).sum().backward()
    assert mask.grad is not None and mask.grad.abs() > 0
    assert "residual_scale" not in json.dumps(list(tiny_model.state_dict()))
    block.residual_scale = torch.nn.Parameter(torch.ones(()))
    assert count_params(tiny_model) == count_params(ResNet((2, 2, 2)))
    with pytest.raises(UserError, match="0-dim"):
        block.residual_scale = torch.ones(3)
    with pytest.raises(UserError, match="residual_scale"):
        block.residual_scale = "half"


def test_spec_round_trip_rebuilds_the_pruned_shape(tiny_model):
    tiny_model.remove_block(4)
    tiny_model.remove_block(0)
    spec = json.loads(json.dumps(tiny_model.spec()))
    assert spec["removed"] == [4, 0] and spec["remaining_config"] == [1, 2, 1]
    rebuilt = ResNet.from_spec(spec)
    assert rebuilt.state_dict().keys() == tiny_model.state_dict().keys()
    with pytest.raises(UserError, match="spec"):
        ResNet.from_spec({"config": [1, 1, 1]})
    with pytest.raises(UserError, match="lacks the field 'removed'"):
        ResNet.from_spec({k: v for k, v in spec.items() if k != "removed"})


def test_save_and_load_a_pruned_model(tiny_model, tmp_path):
    _settle_bn(tiny_model)
    tiny_model.remove_block(2)
    tiny_model.remove_block(5)
    path = save_model(tiny_model, tmp_path / "m.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp file left behind
    loaded = load_model(path)
    assert loaded.block_ids() == tiny_model.block_ids() and loaded.removed == [2, 5]
    loaded.eval()
    x = _images()
    assert torch.equal(loaded(x), tiny_model(x))


def test_load_failures_are_user_errors(tmp_path, tiny_model):
    with pytest.raises(UserError, match="not found"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="cannot read model file"):
        load_model(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a squeezr model file"):
        load_model(tmp_path / "other.pt")
    state = tiny_model.state_dict()
    spec = ResNet((1, 1, 1)).spec()
    torch.save({"spec": spec, "state_dict": state}, tmp_path / "mismatch.pt")
    with pytest.raises(UserError, match="do not fit its spec"):
        load_model(tmp_path / "mismatch.pt")
    with pytest.raises(UserError, match="does not exist"):
        save_model(tiny_model, tmp_path / "no" / "such" / "m.pt")


def test_bad_constructor_input_is_a_user_error():
    with pytest.raises(UserError, match="three non-negative"):
        ResNet((1, 2))
    with pytest.raises(UserError, match="three non-negative"):
        ResNet((1, -1, 2))
    with pytest.raises(UserError, match="unknown ResNet preset"):
        resnet("resnet18")
    assert preset_key(" ResNet-110") == preset_key("resnet_110") == "resnet110"
    assert resnet("ResNet-20").config == (3, 3, 3)
    with pytest.raises(UserError, match="num_classes"):
        ResNet((1, 1, 1), num_classes=0)
    with pytest.raises(UserError, match="out of range"):
        ResNet((1, 1, 1)).block(3)
    with pytest.raises(UserError, match="integer"):
        ResNet((1, 1, 1)).group_of("1")
    with pytest.raises(UserError, match="input_shape"):
        count_macs(ResNet((1, 1, 1)), (32, 32))


def test_torchscript_export_matches(tiny_model, tmp_path):
    _settle_bn(tiny_model)
    tiny_model.remove_block(2)
    tiny_model.block(1).residual_scale = 0.5
    tiny_model.train()
    path = export_torchscript(tiny_model, tmp_path / "m.ts")
    assert tiny_model.training  # exporting does not change the caller's model
    scripted = torch.jit.load(str(path))
    tiny_model.eval()
    x = _images()
    assert torch.allclose(scripted(x), tiny_model(x), atol=1e-6)


def test_onnx_export_is_valid_and_matches(tiny_model, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator  # onnx's own numpy runtime

    tiny_model.remove_block(4)
    path = export_onnx(tiny_model, tmp_path / "m.onnx")
    onnx.checker.check_model(onnx.load(str(path)))
    x = _images(3)  # batch 3 although exported with batch 1: the batch axis is dynamic
    (logits,) = ReferenceEvaluator(str(path)).run(None, {"images": x.numpy()})
    tiny_model.eval()
    assert np.allclose(logits, tiny_model(x).detach().numpy(), atol=1e-4)


def test_torch_compile_full_graph(tiny_model):
    tiny_model.eval()
    tiny_model.block(0).residual_scale = torch.ones(())
    compiled = torch.compile(tiny_model, backend="eager", fullgraph=True)
    x = _images(2)
    assert torch.equal(compiled(x), tiny_model(x))


def test_he_init_and_blocks_are_basic_blocks(tiny_model):
    block = tiny_model.block(0)
    assert isinstance(block, BasicBlock)
    fan_out = 16 * 9
    assert abs(block.conv1.weight.std().item() - (2 / fan_out) ** 0.5) < 0.02
    assert torch.equal(block.bn2.weight, torch.ones(16))
