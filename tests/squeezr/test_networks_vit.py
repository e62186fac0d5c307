"""The timm-layout ViT adapter: timm's parameter names and counts, structural block removal,
timm model objects accepted by structure, weights files, spec round trips."""

from __future__ import annotations

import copy

import pytest
import torch
from blocknet_contract import Data, check_adapter, check_fast_oracle
from torch import nn

from squeezr import saliency
from squeezr.blocknet import adapt, build, count_params, from_spec, load_model, save_model
from squeezr.dbx.errors import UserError
from squeezr.networks.vit import VisionTransformer, ViTConfig, from_timm, vit
from squeezr.tasks import ImageClassification

SMALL = {
    "img_size": 32,
    "patch_size": 8,
    "num_classes": 5,
    "embed_dim": 32,
    "depth": 4,
    "num_heads": 4,
}


@pytest.fixture
def small_vit() -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(ViTConfig(**SMALL)).eval()


def images(n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(
    ("name", "params"),
    [
        # timm's published counts for these models
        ("vit_tiny_patch16_224", 5_717_416),
        ("vit_small_patch16_224", 22_050_664),
        ("vit_base_patch16_224", 86_567_656),
    ],
)
def test_presets_have_timms_parameter_counts(name, params):
    with torch.device("meta"):
        assert count_params(vit(name)) == params


def test_state_dict_keys_are_timms(small_vit):
    keys = set(small_vit.state_dict())
    for key in [
        "patch_embed.proj.weight",
        "cls_token",
        "pos_embed",
        "blocks.0.norm1.weight",
        "blocks.0.attn.qkv.weight",
        "blocks.0.attn.proj.bias",
        "blocks.3.norm2.bias",
        "blocks.3.mlp.fc1.weight",
        "blocks.3.mlp.fc2.weight",
        "norm.weight",
        "head.weight",
    ]:
        assert key in keys


@pytest.mark.parametrize("pool", ["token", "avg"])
@pytest.mark.parametrize("index", [0, 2, 3])
def test_removing_a_block_equals_bypassing_it(pool, index):
    torch.manual_seed(0)
    model = VisionTransformer(ViTConfig(**SMALL, global_pool=pool)).eval()
    x = images()
    with torch.no_grad():
        h = model.embed(x)
        for i, unit in model.units():
            h = model.bypass(i, h) if i == index else unit(h)
        expected = model.readout(h)
        before, block = count_params(model), model.block_params()[index]
        model.remove_block(index)
        torch.testing.assert_close(model(x), expected)
    assert count_params(model) == before - block
    assert model.block_ids() == [i for i in range(4) if i != index]
    assert not any(k.startswith(f"blocks.{index}.") for k in model.state_dict())
    assert "blocks.3.norm1.weight" in model.state_dict() or index == 3  # nothing renumbered


def test_residual_scale_zero_is_removal_and_one_is_nothing(small_vit):
    x = images()
    with torch.no_grad():
        plain = small_vit(x)
        small_vit.set_residual_scale(1, 1.0)
        torch.testing.assert_close(small_vit(x), plain)
        small_vit.set_residual_scale(1, 0.0)
        zeroed = small_vit(x)
        small_vit.set_residual_scale(1, None)
        small_vit.remove_block(1)
        torch.testing.assert_close(small_vit(x), zeroed)


def test_macs_count_the_removed_blocks_work(small_vit):
    total, per_block = small_vit.count_macs(), small_vit.block_macs()
    tokens, dim = 17, 32
    assert (
        per_block[0]
        == tokens * (dim * 3 * dim + dim * dim + 2 * dim * 4 * dim) + 2 * tokens**2 * dim
    )
    small_vit.remove_block(0)
    assert small_vit.count_macs() == total - per_block[0]
    with pytest.raises(UserError, match="inputs of shape"):
        small_vit.count_macs((3, 64, 64))


def test_spec_round_trip_and_save_load(tmp_path, small_vit):
    small_vit.remove_block(2)
    rebuilt = from_spec(small_vit.spec())
    assert isinstance(rebuilt, VisionTransformer)
    assert rebuilt.block_ids() == [0, 1, 3]
    loaded = load_model(save_model(small_vit, tmp_path / "vit.pt"))
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), small_vit(x))


def timm_like(model: VisionTransformer) -> nn.Module:
    """A stand-in for a timm ``VisionTransformer`` object: timm's attributes and key names,
    blocks in an ``nn.Sequential`` (timm is not installed here: it needs torchvision)."""
    standin = nn.Module()
    standin.patch_embed = copy.deepcopy(model.patch_embed)
    standin.cls_token = copy.deepcopy(model.cls_token)
    standin.pos_embed = copy.deepcopy(model.pos_embed)
    standin.blocks = nn.Sequential(*[copy.deepcopy(b) for _, b in model.units()])
    standin.norm = copy.deepcopy(model.norm)
    standin.fc_norm = nn.Identity()
    standin.head = copy.deepcopy(model.head)
    standin.global_pool = "token"
    return standin


def test_a_timm_model_object_is_accepted_by_structure(small_vit):
    standin = timm_like(small_vit)
    converted = adapt(standin)
    assert isinstance(converted, VisionTransformer)
    assert converted.vit_config == small_vit.vit_config
    with torch.no_grad():
        torch.testing.assert_close(converted.eval()(images()), small_vit(images()))


def test_a_timm_model_with_other_parts_is_refused(small_vit):
    standin = timm_like(small_vit)
    standin.blocks[0].ls1 = nn.Linear(2, 2)  # stands for timm's layer scale
    with pytest.raises(UserError, match="does not compute"):
        from_timm(standin)


def test_build_loads_timm_weights_and_swaps_a_head_of_another_size(tmp_path, small_vit):
    path = tmp_path / "weights.pth"
    torch.save(small_vit.state_dict(), path)
    options = {k: v for k, v in SMALL.items() if k != "num_classes"}
    same = build("vit:tiny", weights=path, **options)  # the weights' head: 5 classes
    assert same.head.out_features == 5
    torch.testing.assert_close(
        same.state_dict()["blocks.1.mlp.fc1.weight"], small_vit.blocks["1"].mlp.fc1.weight
    )
    options["num_classes"] = 7
    other = build("vit:tiny", weights=path, **options)
    assert other.head.out_features == 7
    torch.testing.assert_close(other.pos_embed, small_vit.pos_embed)
    options["embed_dim"] = 64
    with pytest.raises(UserError, match="does not fit"):
        build("vit:tiny", weights=path, **options)


def test_bad_configs_and_indices_are_user_errors(small_vit):
    with pytest.raises(UserError, match="multiple of patch_size"):
        ViTConfig(img_size=30, patch_size=8)
    with pytest.raises(UserError, match="unknown ViT preset"):
        vit("vit_huge_patch99")
    with pytest.raises(UserError, match="out of range"):
        small_vit.remove_block(4)
    small_vit.remove_block(0)
    with pytest.raises(UserError, match="has been removed"):
        small_vit.block(0)


def image_data(n: int = 12) -> Data:
    generator = torch.Generator().manual_seed(2)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    return Data(x=x, y=torch.randint(0, 5, (n,), generator=generator))


def image_context(**kwargs) -> saliency.SaliencyContext:
    return saliency.SaliencyContext(task=ImageClassification((0.5,) * 3, (0.25,) * 3), **kwargs)


def test_adapter_contract(small_vit):
    check_adapter(small_vit, images())


def test_fast_oracle_equals_brute_force(small_vit):
    check_fast_oracle(small_vit, image_data(), image_context(batch_size=5, stack_images=12))


@pytest.mark.parametrize("method", sorted(saliency.METHODS))
def test_every_saliency_method_scores_every_block(small_vit, method):
    small_vit.remove_block(2)
    scores = saliency.compute(method, small_vit, image_data(), image_context(batch_size=5))
    assert set(scores) == {0, 1, 3}
    assert all(torch.isfinite(torch.tensor(s)) for s in scores.values())


def test_a_source_name_carries_config_overrides():
    net = build("vit:vit_tiny_patch4_32,depth=2,embed_dim=48,num_heads=3,qkv_bias=false")
    assert net.vit_config.depth == 2 and net.vit_config.embed_dim == 48
    assert net.vit_config.qkv_bias is False and net.block_ids() == [0, 1]
    with pytest.raises(UserError, match="unknown ViT option 'layers'"):
        build("vit:tiny,layers=3")
    with pytest.raises(UserError, match="not a valid int"):
        build("vit:tiny,depth=three")
