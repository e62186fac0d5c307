"""torchvision-layout ResNets: torchvision's parameter counts, key names and MACs, the adapter
contract, weights files, foreign (torchvision-like) model objects, export."""

from __future__ import annotations

import copy

import pytest
import torch
from blocknet_contract import Data, check_adapter, check_fast_oracle
from torch import nn

from squeezr import saliency
from squeezr.blocknet import adapt, build, count_params, export_torchscript, load_model, save_model
from squeezr.dbx.errors import UserError
from squeezr.networks.torchvision import TorchvisionResNet

TINY_BOTTLENECK = {
    "block": "bottleneck",
    "layers": [1, 2, 1, 1],
    "width_per_group": 16,
    "num_classes": 5,
}
TINY_BASIC = {"block": "basic", "layers": [2, 1, 1, 2], "num_classes": 5}


def torchvision_resnet50_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of torchvision's resnet50().state_dict(), written out from its published
    architecture (Bottleneck v1.5, layers 3-4-6-3, widths 64-128-256-512, expansion 4),
    independently of squeezr's code."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix, c):
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    cin = 64
    for stage, (count, planes) in enumerate(
        zip([3, 4, 6, 3], [64, 128, 256, 512], strict=True), start=1
    ):
        for j in range(count):
            p = f"layer{stage}.{j}"
            shapes[f"{p}.conv1.weight"] = (planes, cin, 1, 1)
            bn(f"{p}.bn1", planes)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{p}.bn2", planes)
            shapes[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            bn(f"{p}.bn3", planes * 4)
            if j == 0:
                shapes[f"{p}.downsample.0.weight"] = (planes * 4, cin, 1, 1)
                bn(f"{p}.downsample.1", planes * 4)
            cin = planes * 4
    shapes["fc.weight"] = (1000, 2048)
    shapes["fc.bias"] = (1000,)
    return shapes


def scrambled(arch, seed=0) -> TorchvisionResNet:
    torch.manual_seed(seed)
    model = TorchvisionResNet(arch)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.2, 1.5)
            m.bias.data.normal_(0, 0.3)
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def images(n=12, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 5, (n,), generator=g)
    x = (torch.rand(n, 3, size, size, generator=g) * 150 + y[:, None, None, None] * 20).to(
        torch.uint8
    )
    return Data(x=x, y=y)


def test_resnet50_has_torchvisions_parameter_count_key_names_and_macs():
    model = build("torchvision:resnet50")
    assert count_params(model) == 25_557_032
    expected = torchvision_resnet50_shapes()
    assert len(expected) == 320
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    assert list(model.state_dict())[:3] == ["conv1.weight", "bn1.weight", "bn1.bias"]
    assert model.count_macs() == 4_089_184_256  # torchvision's published 4.09 GFLOPS (MACs)
    assert model.block_ids() == list(range(16))
    assert model.config == (3, 4, 6, 3)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("resnet18", 11_689_512),
        ("resnet34", 21_797_672),
        ("resnet101", 44_549_160),
        ("resnet152", 60_192_808),
        ("wide_resnet50_2", 68_883_240),
        ("wide_resnet101_2", 126_886_696),
        ("resnext50_32x4d", 25_028_904),
    ],
)
def test_every_builder_has_torchvisions_parameter_count(name, params):
    assert count_params(build(f"torchvision:{name}")) == params


@pytest.mark.parametrize("arch", [TINY_BOTTLENECK, TINY_BASIC])
def test_adapter_contract(arch):
    check_adapter(scrambled(arch), images(n=3).x.float() / 255)


@pytest.mark.parametrize("arch", [TINY_BOTTLENECK, TINY_BASIC])
def test_fast_oracle_equals_brute_force(arch):
    model = scrambled(arch)
    ctx = saliency.SaliencyContext(mean=[0.4] * 3, std=[0.25] * 3, batch_size=5, stack_images=9)
    check_fast_oracle(model, images(), ctx)


def test_removal_keeps_key_names_and_a_downsampling_shortcut():
    model = TorchvisionResNet(TINY_BOTTLENECK)
    before = model.state_dict()
    assert model.key_of(1) == "layer2.0"
    model.remove_block(1)  # layer2.0: downsampling
    model.remove_block(2)  # layer2.1: plain
    after = model.state_dict()
    assert {k for k in before if k not in after} == {
        k
        for k in before
        if k.startswith("layer2.1.") or (k.startswith("layer2.0.") and ".downsample." not in k)
    }
    assert "layer2.0.downsample.0.weight" in after
    assert model.block_ids() == [0, 3, 4]
    assert [i for i, _ in model.units()] == [0, 1, 3, 4]


def test_a_torchvision_weights_file_loads_as_is(tmp_path):
    torch.manual_seed(3)
    source = TorchvisionResNet({"block": "basic", "layers": [2, 2, 2, 2]})
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(source.state_dict(), path)  # what torchvision publishes: a plain state_dict
    model = build("torchvision:resnet18", weights=path)
    assert model.fc.out_features == 1000
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(model.eval()(x), source.eval()(x))
    # Another number of classes: everything but the classifier is loaded.
    small = build("torchvision:resnet18", weights=path, num_classes=7)
    assert small.fc.out_features == 7
    torch.testing.assert_close(small.conv1.weight, source.conv1.weight)
    with pytest.raises(UserError, match="does not fit resnet34"):
        build("torchvision:resnet34", weights=path)


def test_pruned_network_saves_loads_and_exports(tmp_path):
    model = scrambled(TINY_BOTTLENECK)
    model.remove_block(1)
    loaded = load_model(save_model(model, tmp_path / "m.pt"))
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded.eval()(x), model(x))
    scripted = torch.jit.load(str(export_torchscript(model, tmp_path / "m.ts")))
    torch.testing.assert_close(scripted(x), model(x))


# -- a torchvision model object (torchvision itself is not installed here) --------------------


class TVBottleneck(nn.Module):
    """torchvision.models.resnet.Bottleneck as torchvision writes it (the stand-in)."""

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class TVResNet(nn.Module):
    """torchvision.models.resnet.ResNet's structure: nn.Sequential stages of Bottlenecks."""

    def __init__(self, layers, num_classes=10, dilate_last=False):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for stage, (count, planes) in enumerate(
            zip(layers, [64, 128, 256, 512], strict=True), start=1
        ):
            dilate = dilate_last and stage == 4
            stride = 1 if stage == 1 or dilate else 2
            blocks = []
            for j in range(count):
                down = None
                if j == 0 and (stride != 1 or inplanes != planes * 4):
                    down = nn.Sequential(
                        nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                        nn.BatchNorm2d(planes * 4),
                    )
                blocks.append(
                    TVBottleneck(
                        inplanes, planes, stride if j == 0 else 1, down, 2 if dilate else 1
                    )
                )
                inplanes = planes * 4
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def test_a_torchvision_model_object_is_adapted_with_its_weights():
    torch.manual_seed(4)
    foreign = TVResNet([1, 2, 1, 1]).eval()
    for m in foreign.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
    model = adapt(foreign)
    assert isinstance(model, TorchvisionResNet)
    assert model.arch == {
        "block": "bottleneck",
        "layers": [1, 2, 1, 1],
        "groups": 1,
        "width_per_group": 64,
        "num_classes": 10,
    }
    x = torch.randn(2, 3, 48, 48)
    torch.testing.assert_close(model.eval()(x), foreign(x))
    assert model.state_dict().keys() == foreign.state_dict().keys()
    assert adapt(copy.deepcopy(model)) is not None


class TimmBasicBlock(nn.Module):
    """timm.models.resnet.BasicBlock's attributes (act1/act2, aa, se, drop_block,
    drop_path): its keys are torchvision's, so a plain timm ResNet loads as is."""

    def __init__(self, inplanes, planes, stride=1, downsample=None, act=nn.ReLU, aa=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1 if aa else stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.drop_block = nn.Identity()
        self.act1 = act()
        self.aa = aa(stride) if aa else nn.Identity()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = None
        self.act2 = act()
        self.downsample = downsample
        self.drop_path = nn.Identity()

    def forward(self, x):
        out = self.aa(self.act1(self.drop_block(self.bn1(self.conv1(x)))))
        out = self.drop_path(self.bn2(self.conv2(out)))
        return self.act2(out + (x if self.downsample is None else self.downsample(x)))


class TimmResNet(nn.Module):
    """timm.models.resnet.ResNet's structure (conv1/bn1/act1/maxpool, layer1..4,
    global_pool, fc) with basic blocks; ``act``/``aa`` make the variants whose difference
    no key shows (SiLU, anti-aliased strides)."""

    def __init__(self, layers=(1, 1, 1, 1), num_classes=10, act=nn.ReLU, aa=None):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.act1 = act()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for stage, (count, planes) in enumerate(zip(layers, STAGE, strict=True), start=1):
            stride = 1 if stage == 1 else 2
            blocks = []
            for j in range(count):
                down = None
                if j == 0 and (stride != 1 or inplanes != planes):
                    down = nn.Sequential(
                        nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
                    )
                blocks.append(
                    TimmBasicBlock(inplanes, planes, stride if j == 0 else 1, down, act, aa)
                )
                inplanes = planes
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.global_pool(x))


STAGE = (64, 128, 256, 512)


def test_a_timm_resnet_object_is_adapted_by_its_structure():
    torch.manual_seed(5)
    foreign = TimmResNet((1, 2, 1, 1)).train()
    model = adapt(foreign)
    assert isinstance(model, TorchvisionResNet) and model.training and foreign.training
    assert model.arch["block"] == "basic" and model.arch["layers"] == [1, 2, 1, 1]
    assert model.state_dict().keys() == foreign.state_dict().keys()
    x = torch.randn(2, 3, 48, 48)
    torch.testing.assert_close(model.eval()(x), foreign.eval()(x))


def test_a_timm_variant_computing_something_else_is_refused_in_one_line():
    class Blur(nn.AvgPool2d):
        def __init__(self, stride):
            super().__init__(2 if stride > 1 else 1, stride)

    for variant in (TimmResNet(act=nn.SiLU), TimmResNet(aa=Blur)):
        with pytest.raises(UserError, match=r"computes something else.*squeezr takes torchvision"):
            adapt(variant)
    with_se = TimmResNet()
    with_se.layer1[0].se = nn.Conv2d(64, 64, 1)
    with pytest.raises(UserError, match=r"unexpected keys such as layer1\.0\.se.*no squeeze-exc"):
        adapt(with_se)
    headless = TimmResNet()
    headless.fc = nn.Identity()
    with pytest.raises(UserError, match=r"classifier fc as an nn\.Linear, not Identity"):
        adapt(headless)


def test_what_cannot_be_represented_is_one_line():
    with pytest.raises(UserError, match="dilated stages"):
        adapt(TVResNet([1, 1, 1, 1], dilate_last=True))
    with pytest.raises(UserError, match="unknown torchvision ResNet 'resnet51'"):
        build("torchvision:resnet51")
    with pytest.raises(UserError, match="block index 16 is out of range"):
        build("torchvision:resnet50").remove_block(16)


def test_pruning_loop_runs_on_a_torchvision_resnet_with_phasing(tiny_splits):
    from squeezr.prune import PruneConfig, make_target, prune

    torch.manual_seed(0)
    model = TorchvisionResNet({**TINY_BASIC, "num_classes": 4})
    cfg = PruneConfig(
        target=make_target(blocks=2),
        schedule="every:1",
        epochs=1,
        batch_size=64,
        device="cpu",
        phase=1,
    )
    result = prune(model, tiny_splits, cfg, progress=False)
    assert len(result.summary["order"]) == 2
    assert result.model.block_ids() == [i for i in range(6) if i not in result.summary["order"]]
    assert result.summary["params"] == count_params(result.model)
