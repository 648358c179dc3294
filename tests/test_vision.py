"""The vision encoder: open_clip models by name, with a tag or a local checkpoint."""

from __future__ import annotations

import open_clip
import pytest
import torch

from workbench.model.vision import load_vision


def test_patch_tokens_without_autograd_in_eval_mode():
    encoder, processor = load_vision("wb-tiny-vit")
    images = torch.randn(5, 3, 32, 32, requires_grad=True)
    tokens = encoder(images)
    assert tokens.shape == (5, 16, 64)  # 32 px / 8 px patches = 16 tokens, no class token
    assert not tokens.requires_grad
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.training and not encoder.visual.training
    assert processor.transforms[0].size == 32


def test_local_checkpoint_loads_through_open_clip(tmp_path):
    torch.manual_seed(3)
    clip = open_clip.create_model("wb-tiny-vit", pretrained=None)
    path = tmp_path / "tiny_clip.pt"
    torch.save({"state_dict": clip.state_dict()}, path)
    encoder, _ = load_vision("wb-tiny-vit", str(path))
    for name, value in clip.visual.state_dict().items():
        torch.testing.assert_close(encoder.visual.state_dict()[name], value, rtol=0, atol=0)


def test_unknown_model_and_missing_checkpoint_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="unknown open_clip model 'ViT-Q-99'"):
        load_vision("ViT-Q-99")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_vision("wb-tiny-vit", str(tmp_path / "absent.pt"))
