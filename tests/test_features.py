"""The frozen-feature cache: keys on the image as encoded (a flip is another entry), an encoder
fingerprint, atomic shards that concurrent writers share, and training that computes the same
losses with it as without it, cold or warm."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
import torch
from helpers import base_spec, build, images

from workbench.model.features import FeatureCache, encode_with_cache, fingerprint, image_key
from workbench.train.loop import train


def test_an_image_is_keyed_by_its_pixels_as_encoded():
    x = torch.rand(3, 8, 8)
    assert image_key(x) == image_key(x.clone())
    assert image_key(x) != image_key(x.flip(-1))  # a flip is another image
    assert image_key(x) != image_key(x.double())  # and so is another dtype
    assert image_key(x[:, :4]) != image_key(x[:, :4].reshape(3, 2, 16))


def test_the_fingerprint_follows_every_weight(tiny_lm_dirs):
    model, _ = build(tiny_lm_dirs["llama"])
    before = fingerprint(model.vision)
    assert fingerprint(model.vision) == before
    with torch.no_grad():
        next(model.vision.parameters()).view(-1)[0] += 1e-3
    assert fingerprint(model.vision) != before


def test_cached_tokens_are_the_encoders_and_shards_are_whole(tmp_path):
    calls: list[int] = []

    def encode(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return x.flatten(1)[:, None, :4] * 2  # (N, 1, 4)

    cache = FeatureCache(tmp_path / "fp", flush_every=3)
    x = torch.rand(4, 3, 2, 2)
    first = encode_with_cache(cache, encode, x)
    torch.testing.assert_close(first, encode(x))
    assert calls == [4, 4] and cache.misses == 4 and cache.hits == 0
    assert len(list((tmp_path / "fp").glob("*.safetensors"))) == 1  # flushed at 3+ entries
    again = encode_with_cache(cache, encode, torch.cat([x[:2], torch.rand(1, 3, 2, 2)]))
    assert calls[-1] == 1 and cache.hits == 2  # only the new image is encoded
    torch.testing.assert_close(again[:2], first[:2], rtol=0, atol=0)
    cache.flush()
    other = FeatureCache(tmp_path / "fp")  # another process: sees every shard written
    torch.testing.assert_close(other.get([image_key(x[3])])[image_key(x[3])], first[3])
    assert not list((tmp_path / "fp").glob(".*"))  # no temporary file left behind


def _fill(folder: str, seed: int, queue) -> None:
    cache = FeatureCache(Path(folder), flush_every=2)
    generator = torch.Generator().manual_seed(0)
    shared = torch.rand(6, 3, 2, 2, generator=generator)  # both processes encode these
    own = torch.rand(4, 3, 2, 2, generator=torch.Generator().manual_seed(seed))
    out = encode_with_cache(cache, lambda x: x.flatten(1)[:, None], torch.cat([shared, own]))
    cache.flush()
    queue.put(out.sum().item())


def test_two_processes_fill_one_cache_at_once(tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_fill, args=(str(tmp_path), s, queue)) for s in (1, 2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    totals = sorted(queue.get(timeout=5) for _ in workers)
    reader = FeatureCache(tmp_path)
    shared = torch.rand(6, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    keys = [image_key(x) for x in shared]
    assert set(reader.get(keys)) == set(keys) and reader.misses == 0
    own = [torch.rand(4, 3, 2, 2, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    expected = sorted(float(torch.cat([shared, o]).sum()) for o in own)
    assert totals == pytest.approx(expected)


def test_training_with_the_cache_gives_the_same_losses(tiny_world, tiny_lm_dirs, tmp_path):
    spec = base_spec(tiny_world, tiny_lm_dirs["llama"],
                     **{"train.steps": 6, "train.checkpoint_every": 0})  # fmt: skip
    plain = train(spec.override({"train.feature_cache": False}), home=tmp_path / "off",
                  show_progress=False, track=False)  # fmt: skip
    home = tmp_path / "on"
    cold = train(spec, home=home, show_progress=False, track=False)
    warm = train(spec.override({"name": "again"}), home=home, show_progress=False, track=False)
    for key in ("loss", "loss/laion", "loss/mmc4"):
        reference = [h[key] for h in plain.history]
        assert [h[key] for h in cold.history] == pytest.approx(reference, abs=1e-6, rel=0)
        assert [h[key] for h in warm.history] == pytest.approx(reference, abs=1e-6, rel=0)
    assert cold.history[-1]["features/hit_rate"] < 0.5
    assert warm.history[-1]["features/hit_rate"] == 1.0  # every image encoded by the first run
    assert list((home / "features").glob("*/*.safetensors"))
    assert "features/hit_rate" not in plain.history[-1]


def test_the_vision_encoder_reads_the_cache(tiny_lm_dirs, tmp_path):
    model, _ = build(tiny_lm_dirs["llama"])
    x = images(2, 3)[0]  # (3, 3, H, W)
    expected = model.vision(x)
    model.vision.cache = FeatureCache(tmp_path / fingerprint(model.vision))
    torch.testing.assert_close(model.vision(x), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(model.vision(x), expected, rtol=0, atol=1e-6)
    assert model.vision.cache.hits == 3
    with torch.autocast("cpu", dtype=torch.bfloat16):  # computed in bf16: other entries
        low = model.vision(x)
    assert model.vision.cache.misses == 6 and low.dtype == torch.bfloat16
    assert model.vision(x).dtype == torch.float32  # the fp32 entries are untouched
