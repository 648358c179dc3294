"""Data pipelines read real shards written to a temp dir: shapes, labels, filters, mixtures,
splitting across ranks and workers, save/restore, and every kind of bad record."""

from __future__ import annotations

import io
import json
import math
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from workbench.data.batch import IGNORE_INDEX, TokenIds
from workbench.data.filters import SimilarityThreshold, TopK
from workbench.data.formats import BadRecord, document_json, iter_tar, write_shards
from workbench.data.laion import LaionOptions, LaionSource
from workbench.data.loader import MixtureDataset, StreamTracker, make_loader
from workbench.data.mixture import LaionOnly, MMC4Only, Paired, Sampled
from workbench.data.mmc4 import MMC4Options, MMC4Source, interleave
from workbench.data.scenes import FILLER, caption, random_scene
from workbench.data.shapes import png_bytes, write_shapes_world
from workbench.data.stream import expand_shards
from workbench.model.factory import load_tokenizer
from workbench.model.tiny import train_tiny_tokenizer
from workbench.model.vision import load_vision


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    shards = write_shapes_world(out, n_pairs=400, n_docs=240, n_eval=0, per_shard=50)
    return {name: [str(p) for p in paths] for name, paths in shards.items()}


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """(tokenizer, image processor, token ids, sources) as a training run builds them, with a
    BPE tokenizer trained on shapes text (short sequences, like the shapes LM's)."""
    rng = np.random.default_rng(0)
    corpus = [caption(random_scene(rng), rng) for _ in range(2000)] + list(FILLER)
    tokenizer_dir = tmp_path_factory.mktemp("tokenizer")
    train_tiny_tokenizer(corpus, vocab_size=600).save_pretrained(tokenizer_dir)
    tokenizer = load_tokenizer(str(tokenizer_dir))
    _, processor = load_vision("wb-tiny-vit")
    sources = {
        "laion": LaionSource(tokenizer, processor, LaionOptions(hflip_prob=0.0)),
        "mmc4": MMC4Source(
            tokenizer,
            processor,
            MMC4Options(min_image_bytes=0, hflip_prob=0.0, single_image_keep_prob=1.0),
        ),
    }
    return tokenizer, processor, TokenIds.from_tokenizer(tokenizer), sources


def steps(dataset, n, num_workers=0):
    out = []
    for step in make_loader(dataset, num_workers):
        out.append(step)
        if len(out) == n:
            break
    return out


def test_laion_batches_and_labels(world, kit):
    tokenizer, _, ids, sources = kit
    dataset = MixtureDataset(LaionOnly(batch_size=8), sources, world, ids, seed=1)
    (step,) = steps(dataset, 1)
    (part,) = step.parts
    batch = part.batch
    assert part.name == "laion" and step.counts == {"laion": 8}
    assert batch.images.shape == (8, 1, 3, 32, 32) and batch.image_mask.all()
    assert batch.input_ids.shape[1] <= 32
    expected = batch.input_ids.masked_fill(batch.attention_mask == 0, IGNORE_INDEX)
    expected = expected.masked_fill(batch.input_ids == ids.media, IGNORE_INDEX)
    assert torch.equal(batch.labels, expected)
    for row in range(len(batch)):
        text = tokenizer.decode(batch.input_ids[row][batch.attention_mask[row].bool()])
        assert text.startswith("<image>")
        truncated = int(batch.attention_mask[row].sum()) == 32  # the tiny BPE is verbose
        assert truncated or text.endswith(f"<|endofchunk|>{tokenizer.eos_token}")


def test_mmc4_batches_and_labels(world, kit):
    tokenizer, _, ids, sources = kit
    dataset = MixtureDataset(MMC4Only(batch_size=6), sources, world, ids, seed=2)
    for step in steps(dataset, 3):
        batch = step.parts[0].batch
        assert batch.images.shape[1] <= 6 and batch.images.shape[2:] == (3, 32, 32)
        n_tokens = (batch.input_ids == ids.media).sum(1)
        assert torch.equal(n_tokens, batch.image_mask.sum(1))  # one real image per <image>
        for row in range(len(batch)):
            tokens, labels = batch.input_ids[row], batch.labels[row]
            length = int(batch.attention_mask[row].sum())
            first_image = int((tokens == ids.media).nonzero()[0])
            last_eoc = int((tokens[:length] == ids.eoc).nonzero()[-1])
            assert (labels[: first_image + 1] == IGNORE_INDEX).all()  # text before the first image
            assert (labels[last_eoc + 1 :] == IGNORE_INDEX).all()  # eos tail and padding
            assert labels[last_eoc] == ids.eoc
            assert (labels[tokens == ids.media] == IGNORE_INDEX).all()
            inside = labels[first_image + 1 : last_eoc]
            assert (inside != IGNORE_INDEX).float().mean() > 0.5
            assert tokenizer.decode(tokens[:length]).endswith(
                f"<|endofchunk|>{tokenizer.eos_token}"
            )


def test_threshold_filter_is_per_image_and_keeps_sentences():
    sim = np.array([[0.30, 0.10, 0.05], [0.20, 0.10, 0.26], [0.10, 0.23, 0.10]])
    assert SimilarityThreshold(0.24)(sim) == [(0, 0), (1, 2)]  # image 2 (0.23) dropped alone
    assert SimilarityThreshold(0.22)(sim) == [(0, 0), (1, 2), (2, 1)]
    assert SimilarityThreshold(0.99)(sim) == []
    shared = np.array([[0.30, 0.10], [0.29, 0.10]])
    assert SimilarityThreshold(0.24, "best_sentence")(shared) == [(0, 0), (1, 0)]
    assert SimilarityThreshold(0.24)(shared) == [(0, 0)]  # one to one: image 1 gets sentence 1
    assert TopK(k=1)(sim) == [(0, 0)]
    text = interleave(["A red one.", "Filler.", "A blue one."], [2], "</s>")
    assert text == "A red one. Filler.<image>A blue one.<|endofchunk|></s>"


def two_image_document() -> dict[str, object]:
    """Image 0 (red) describes sentence 1 and image 1 (blue) sentence 0: a non-monotone
    assignment, where the reference stacks red first although the blue <image> comes first."""
    red, blue = Image.new("RGB", (40, 40), "red"), Image.new("RGB", (40, 40), "blue")
    sim = np.array([[0.1, 0.1, 0.4], [0.4, 0.1, 0.1]])
    doc = document_json(
        ["A blue square.", "Some filler.", "A red square."], [png_bytes(red), png_bytes(blue)], sim
    )
    return {"__key__": "order", "json": json.dumps(doc).encode()}, red, blue


def test_images_follow_the_order_of_their_image_tokens(kit):
    tokenizer, processor, _, sources = kit
    sample, red, blue = two_image_document()
    example = sources["mmc4"].example(sample, np.random.default_rng(0))
    text = tokenizer.decode(example.input_ids)
    assert text.index("<image>A blue") < text.index("<image>A red")
    assert torch.equal(example.images[0], processor(blue))
    assert torch.equal(example.images[1], processor(red))


@pytest.mark.parametrize("p", [0.3, 0.75])
def test_sampled_mixture_realises_its_fraction(world, kit, p):
    _, _, ids, sources = kit
    dataset = MixtureDataset(
        Sampled(batch_size=50, mmc4_probability=p), sources, world, ids, seed=3
    )
    tracker = StreamTracker(num_workers=1)
    for step in steps(dataset, 40):
        tracker.update(step)
        assert torch.equal(
            torch.tensor([s == "mmc4" for s in step.parts[0].batch.source]).sum(),
            torch.tensor(step.counts.get("mmc4", 0)),
        )
    n = tracker.counts["laion"] + tracker.counts["mmc4"]
    realised = tracker.counts["mmc4"] / n
    assert n == 2000
    assert abs(realised - p) <= 2.576 * math.sqrt(p * (1 - p) / n)  # binomial 99% interval


def test_paired_mixture_gives_both_sources_with_their_multipliers(world, kit):
    _, _, ids, sources = kit
    (step,) = steps(MixtureDataset(Paired(8, 4), sources, world, ids), 1)
    assert [(p.name, len(p.batch), p.loss_multiplier) for p in step.parts] == [
        ("laion", 8, 0.2),
        ("mmc4", 4, 1.0),
    ]
    assert step.counts == {"laion": 8, "mmc4": 4}


def test_ranks_and_workers_see_disjoint_samples_in_one_pass(world, kit):
    _, _, ids, sources = kit
    seen: list[str] = []
    for rank in range(2):
        dataset = MixtureDataset(
            LaionOnly(batch_size=7), sources, world, ids, rank=rank, world_size=2, resampled=False
        )
        for step in make_loader(dataset, num_workers=2):
            seen += step.parts[0].batch.keys
    assert len(seen) == len(set(seen)) == 400  # every pair exactly once


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_restored_stream_continues_the_same_steps(world, kit, num_workers):
    _, _, ids, sources = kit

    def dataset(resume=None):
        return MixtureDataset(
            Paired(3, 2), sources, world, ids, seed=4, shuffle_buffer=10, resume=resume
        )

    tracker = StreamTracker(num_workers=max(num_workers, 1))
    uninterrupted = steps(dataset(), 10, num_workers)
    for step in uninterrupted[:5]:
        tracker.update(step)
    saved = json.loads(json.dumps(tracker.state_dict()))  # what a checkpoint stores
    resumed = steps(dataset(StreamTracker.from_state_dict(saved)), 5, num_workers)
    keys = [[p.batch.keys for p in s.parts] for s in uninterrupted[5:]]
    assert [[p.batch.keys for p in s.parts] for s in resumed] == keys
    for a, b in zip(uninterrupted[5:], resumed, strict=True):
        assert torch.equal(a.parts[1].batch.images, b.parts[1].batch.images)


# --- robustness: real broken files ---------------------------------------------------------


def good_pair(key: str) -> dict[str, object]:
    return {
        "__key__": key,
        "png": png_bytes(Image.new("RGB", (40, 40), "green")),
        "txt": "A green square.",
    }


def good_doc(key: str) -> dict[str, object]:
    sample, _, _ = two_image_document()
    return {**sample, "__key__": key}


def member_offset(tar: Path, name: str) -> int:
    """Where the header of member ``name`` starts: a cut there leaves whole samples only."""
    with tarfile.open(tar) as archive:
        return archive.getmember(name).offset


@pytest.mark.parametrize("cut", ["inside_data", "at_member_boundary"])
def test_truncated_tars_are_detected(tmp_path, cut):
    whole = write_shards([good_pair(f"t{i}") for i in range(6)], tmp_path / "whole")[0]
    with tarfile.open(whole) as archive:
        member = archive.getmember("t3.png")
        end = member.offset  # the header of t3.png: a clean cut between members
    end = member.offset_data + 10 if cut == "inside_data" else end
    truncated = tmp_path / "cut.tar"
    truncated.write_bytes(whole.read_bytes()[:end])
    keys = []
    with pytest.raises(BadRecord) as err:
        keys.extend(sample["__key__"] for sample in iter_tar(truncated))
    assert err.value.reason == "truncated_tar"
    assert keys[:3] == ["t0", "t1", "t2"]
    assert [s["__key__"] for s in iter_tar(whole)] == [f"t{i}" for i in range(6)]


def test_every_bad_record_is_skipped_and_counted(tmp_path, kit):
    _, _, ids, sources = kit
    laion = write_shards(
        [
            good_pair("a"),
            {"__key__": "badimage", "png": b"\x89PNG not really", "txt": "broken"},
            {"__key__": "nocaption", "png": png_bytes(Image.new("RGB", (8, 8)))},
            good_pair("b"),
        ],
        tmp_path / "laion",
    )
    truncated = tmp_path / "laion" / "truncated.tar"
    whole = write_shards([good_pair(f"t{i}") for i in range(20)], tmp_path / "whole")[0]
    truncated.write_bytes(whole.read_bytes()[: member_offset(whole, "t10.png")])
    doc = json.loads(good_doc("x")["json"])
    wrong_shape = {**doc, "similarity_matrix": [[0.3, 0.3]]}
    no_matrix = {k: v for k, v in doc.items() if k != "similarity_matrix"}
    mmc4 = write_shards(
        [
            good_doc("d1"),
            {"__key__": "malformed", "json": b"{not json"},
            {"__key__": "shape", "json": json.dumps(wrong_shape).encode()},
            {"__key__": "nomatrix", "json": json.dumps(no_matrix).encode()},
            {"__key__": "nojson", "txt": b"where is the json?"},
            good_doc("d2"),
        ],
        tmp_path / "mmc4",
    )
    shards = {"laion": [str(p) for p in [*laion, truncated]], "mmc4": [str(p) for p in mmc4]}
    tracker = StreamTracker(num_workers=1)
    keys = []
    for mixture in (LaionOnly(batch_size=2), MMC4Only(batch_size=1)):  # read every record once
        for step in make_loader(MixtureDataset(mixture, sources, shards, ids, resampled=False)):
            tracker.update(step)
            keys += [k for p in step.parts for k in p.batch.keys]
    assert tracker.skipped == {
        "laion/bad/undecodable_image": 1,
        "laion/bad/missing_key": 1,
        "laion/bad/truncated_tar": 1,
        "mmc4/bad/malformed_json": 1,
        "mmc4/bad/similarity_shape": 1,
        "mmc4/bad/missing_key": 2,
    }
    assert {"a", "b", "d1", "d2"} <= set(keys)
    assert {f"t{i}" for i in range(10)} <= set(keys)  # what the truncated tar held before the cut


def test_a_source_without_any_valid_record_is_a_clear_error(tmp_path, kit):
    _, _, ids, sources = kit
    bad = write_shards(
        [{"__key__": f"b{i}", "png": b"garbage", "txt": "x"} for i in range(3)], tmp_path / "bad"
    )
    shards = {"laion": [str(p) for p in bad]}
    for resampled in (True, False):
        dataset = MixtureDataset(LaionOnly(batch_size=2), sources, shards, ids, resampled=resampled)
        with pytest.raises(RuntimeError, match=r"laion: no valid record in shards .*000000000.tar"):
            steps(dataset, 1)


def test_brace_patterns_expand_to_shard_lists():
    assert expand_shards("d/{000..002}.tar") == ["d/000.tar", "d/001.tar", "d/002.tar"]
    assert expand_shards(["a.tar", "b/{0..1}.tar"]) == ["a.tar", "b/0.tar", "b/1.tar"]


def test_undecodable_image_bytes_name_their_reason():
    from workbench.data.formats import decode_image

    with pytest.raises(BadRecord) as err:
        decode_image(io.BytesIO(b"nope").getvalue())
    assert err.value.reason == "undecodable_image"
