"""Batched augmentation: crops are real windows of the padded image, flips are mirror images."""

import torch
import torch.nn.functional as F

from squeezr.augment import normalize, pad_crop_flip


def _images(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


def test_every_output_is_a_crop_or_mirrored_crop_of_the_padded_input():
    x = _images()
    out = pad_crop_flip(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = F.pad(x, (4, 4, 4, 4))
    offsets_seen, flips = set(), 0
    for i in range(len(x)):
        matches = [
            (oy, ox, flip)
            for oy in range(9)
            for ox in range(9)
            for flip in (False, True)
            if torch.equal(
                padded[i, :, oy : oy + 32, ox : ox + 32].flip(2)
                if flip
                else padded[i, :, oy : oy + 32, ox : ox + 32],
                out[i],
            )
        ]
        assert len(matches) == 1, f"image {i} is not a unique crop"
        offsets_seen.add(matches[0][:2])
        flips += matches[0][2]
    assert len(offsets_seen) > 20  # offsets vary per image
    assert 10 < flips < 54  # about half are flipped


def test_same_generator_state_gives_same_augmentation():
    x = _images(16)
    a = pad_crop_flip(x, torch.Generator().manual_seed(5))
    b = pad_crop_flip(x, torch.Generator().manual_seed(5))
    c = pad_crop_flip(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_normalize_uses_the_0_1_scale_per_channel():
    x = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    x[:, 1] = 0
    out = normalize(x, mean=[0.5, 0.5, 1.0], std=[0.5, 0.25, 1.0])
    assert torch.allclose(out[:, 0], torch.tensor(1.0))
    assert torch.allclose(out[:, 1], torch.tensor(-2.0))
    assert torch.allclose(out[:, 2], torch.tensor(0.0))
    assert out.dtype == torch.float32
