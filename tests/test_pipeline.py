"""A run's data from its DataSpec: the checks, the steps, their metrics, the sources table, and
the mixture helpers the ``mixture`` ablation axis asks."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest
import torch

import workbench.components  # noqa: F401  (RunSpec's defaults are registered components)
from workbench.axes import AXES, load_ablations
from workbench.data.batch import TokenIds
from workbench.data.filters import TopK
from workbench.data.laion import LaionSource
from workbench.data.loader import MixtureDataset, StreamTracker, make_loader
from workbench.data.mixture import (
    MIXTURES,
    mixture_for_ratio,
    samples_per_step,
    single_source_mixture,
)
from workbench.data.mmc4 import MMC4Source
from workbench.data.pipeline import PART_NAMES, build_steps, check_data, data_metrics
from workbench.data.scenes import FILLER, caption, random_scene
from workbench.data.shapes import write_shapes_world
from workbench.data.sources import SOURCES
from workbench.data.stream import expand_shards, shard_pattern
from workbench.model.factory import load_tokenizer
from workbench.model.tiny import train_tiny_tokenizer
from workbench.model.vision import load_vision
from workbench.spec import Choice, DataSpec, RunSpec, SpecError


def data_with(**changes) -> DataSpec:
    return dataclasses.replace(DataSpec(), **changes)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("world")
    shards = write_shapes_world(out, n_pairs=60, n_docs=40, n_eval=0, image_size=32, per_shard=20)
    return {name: shard_pattern(paths) for name, paths in shards.items()}


# --------------------------------------------------------------------------- the sources table


def test_sources_are_named_once_with_their_fields_and_salts():
    assert list(SOURCES) == ["laion", "mmc4"]
    assert {name: kind.salt for name, kind in SOURCES.items()} == {"laion": 0, "mmc4": 1}
    data_fields = {f.name for f in dataclasses.fields(DataSpec)}
    for name, kind in SOURCES.items():
        assert kind.reader.name == name  # the name its examples carry
        assert {kind.shards_field, kind.options_field, *kind.component_fields} <= data_fields
    assert PART_NAMES == ("laion", "mmc4", "mixed")


def test_every_mixture_draws_from_known_sources_only():
    for name in MIXTURES.names():
        assert set(Choice.of("mixture", name).options.sources) <= set(SOURCES), name


# --------------------------------------------------------------------------- check_data


def test_check_data_names_the_missing_shard_keys():
    with pytest.raises(SpecError) as error:
        check_data(DataSpec())
    assert str(error.value) == (
        "mixture 'paired' reads ['laion', 'mmc4']: set data.laion_shards and data.mmc4_shards "
        "(brace patterns)"
    )
    with pytest.raises(SpecError, match=r"reads \['mmc4'\]: set data.mmc4_shards \(brace"):
        check_data(data_with(mixture=Choice.of("mixture", "mmc4_only")))


def test_check_data_reads_only_the_mixtures_sources(world):
    check_data(data_with(laion_shards=world["laion"], mixture=Choice.of("mixture", "laion_only")))


def test_check_data_finds_shards_that_do_not_exist(world, tmp_path):
    pattern = str(tmp_path / "mmc4-{000000..000002}.tar")
    data = data_with(laion_shards=world["laion"], mmc4_shards=pattern)
    with pytest.raises(SpecError) as error:
        check_data(data)
    assert str(error.value) == (
        f"data.mmc4_shards: 3 of 3 shards do not exist, e.g. {tmp_path / 'mmc4-000000.tar'}"
    )


def test_check_data_refuses_every_kind_of_bad_shard_pattern_in_one_line(world, tmp_path):
    (tmp_path / "notes.tar").write_text("not a tar archive")
    cases = {
        str(tmp_path): f"data.mmc4_shards: {tmp_path} is a directory; give its .tar shards as "
        f"a brace pattern, e.g. {tmp_path}/{{000000..000009}}.tar",
        str(tmp_path / "notes.tar"): f"data.mmc4_shards: {tmp_path / 'notes.tar'} is not a tar "
        "archive (webdataset shards are tars)",
        str(tmp_path / "*.tar"): "data.mmc4_shards: 1 of 1 shards do not exist (a brace pattern, "
        f"not a glob), e.g. {tmp_path / '*.tar'}",
        "": "mixture 'paired' reads ['mmc4']: set data.mmc4_shards (brace patterns)",
    }
    for pattern, message in cases.items():
        with pytest.raises(SpecError) as error:
            check_data(data_with(laion_shards=world["laion"], mmc4_shards=pattern))
        assert str(error.value) == message


def test_check_data_needs_a_row_per_process(world):
    mixture = Choice.of("mixture", "paired", laion_batch_size=8, mmc4_batch_size=3)
    data = data_with(laion_shards=world["laion"], mmc4_shards=world["mmc4"], mixture=mixture)
    check_data(data)
    check_data(data, world_size=3)
    with pytest.raises(SpecError) as error:
        check_data(data, world_size=4)
    assert str(error.value) == (
        "data.mixture.mmc4_batch_size=3 is smaller than the 4 processes: batch sizes are "
        "global, so each process needs at least one row"
    )


# --------------------------------------------------------------------------- data_metrics


def test_data_metrics_of_a_hand_made_tracker():
    stream = StreamTracker(
        num_workers=2,
        counts=Counter({"laion": 30, "mmc4": 10}),
        skipped=Counter({"mmc4/dropped/no_images_above_threshold": 4, "laion/bad/no_image": 1}),
    )
    assert data_metrics(stream) == {
        "data/realised_mmc4_fraction": 0.25,
        "data/skipped/mmc4/dropped/no_images_above_threshold": 4.0,
        "data/skipped/laion/bad/no_image": 1.0,
    }
    assert data_metrics(StreamTracker(num_workers=1)) == {}  # nothing read: no fraction
    assert data_metrics(StreamTracker(1, counts=Counter({"laion": 5}))) == {
        "data/realised_mmc4_fraction": 0.0
    }


# --------------------------------------------------------------------------- build_steps


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    rng = np.random.default_rng(0)
    corpus = [caption(random_scene(rng), rng) for _ in range(500)] + list(FILLER)
    directory = tmp_path_factory.mktemp("tokenizer")
    train_tiny_tokenizer(corpus, vocab_size=400).save_pretrained(directory)
    _, processor = load_vision("wb-tiny-vit")
    return load_tokenizer(str(directory)), processor


def test_build_steps_is_the_mixture_dataset_of_the_spec(world, kit):
    """The steps are those of a MixtureDataset built by hand from the same parts: the sources'
    options, the mmc4 filter, the seed and the shuffle buffer all reach the stream."""
    tokenizer, processor = kit
    spec = RunSpec().override(
        {
            "data.laion_shards": world["laion"],
            "data.mmc4_shards": world["mmc4"],
            "data.mixture.laion_batch_size": 4,
            "data.mixture.mmc4_batch_size": 2,
            "data.mmc4.min_image_bytes": 0,
            "data.mmc4_filter": "top_k",
            "data.mmc4_filter.k": 1,
            "data.shuffle_buffer": 5,
        }
    )
    data = spec.data
    check_data(data)
    steps = build_steps(data, tokenizer, processor, seed=3, resume=None)
    by_hand = MixtureDataset(
        data.mixture.options,
        {
            "laion": LaionSource(tokenizer, processor, data.laion),
            "mmc4": MMC4Source(tokenizer, processor, data.mmc4, TopK(k=1)),
        },
        {name: expand_shards(pattern) for name, pattern in world.items()},
        TokenIds.from_tokenizer(tokenizer),
        seed=3,
        shuffle_buffer=5,
    )
    for ours, theirs in zip(steps, make_loader(by_hand), strict=False):
        assert [p.name for p in ours.parts] == ["laion", "mmc4"]
        assert [len(p.batch) for p in ours.parts] == [4, 2]
        for a, b in zip(ours.parts, theirs.parts, strict=True):
            assert a.batch.keys == b.batch.keys and a.loss_multiplier == b.loss_multiplier
            assert torch.equal(a.batch.input_ids, b.batch.input_ids)
            assert torch.equal(a.batch.images, b.batch.images)
        assert ours.state == theirs.state
        if ours.state["steps"] == 3:
            break


# --------------------------------------------------------------------------- mixture helpers


def test_samples_per_step_of_every_mixture():
    paired = Choice.of("mixture", "paired", laion_batch_size=6, mmc4_batch_size=3)
    assert samples_per_step(paired) == 9
    assert samples_per_step(Choice.of("mixture", "paired")) == 96
    for name in ("sampled", "laion_only", "mmc4_only"):
        assert samples_per_step(Choice.of("mixture", name, batch_size=7)) == 7
    assert set(MIXTURES.names()) == {"paired", "sampled", "laion_only", "mmc4_only"}


def test_mixture_for_ratio_splits_the_samples():
    mixture = mixture_for_ratio({"laion": 2, "mmc4": 1}, 96)
    assert mixture == Choice.of("mixture", "paired", laion_batch_size=64, mmc4_batch_size=32)
    assert mixture.options.laion_loss_multiplier == 0.2  # the defaults
    assert mixture.options.mmc4_loss_multiplier == 1.0
    assert mixture_for_ratio({"laion": 3, "mmc4": 1}, 6).options.laion_batch_size == 4  # 4.5
    assert mixture_for_ratio({"laion": 1, "mmc4": 5}, 6).options.mmc4_batch_size == 5


@pytest.mark.parametrize(("laion", "mmc4", "samples"), [(1, 5, 2), (3, 1, 2), (1, 20, 6)])
def test_mixture_for_ratio_refuses_to_leave_a_source_empty(laion, mmc4, samples):
    with pytest.raises(SpecError) as error:
        mixture_for_ratio({"laion": laion, "mmc4": mmc4}, samples)
    assert str(error.value) == (
        f"mixture {laion}:{mmc4} leaves a source empty at {samples} samples"
    )


def test_mixture_for_ratio_needs_both_sources():
    with pytest.raises(SpecError, match="must name"):
        mixture_for_ratio({"laion": 1}, 6)


def test_single_source_mixture():
    assert single_source_mixture("laion", 10) == Choice.of("mixture", "laion_only", batch_size=10)
    assert single_source_mixture("mmc4", 3) == Choice.of("mixture", "mmc4_only", batch_size=3)
    with pytest.raises(SpecError, match="no single-source mixture for 'cc3m'"):
        single_source_mixture("cc3m", 3)


BASES = {
    "paired": {},
    "small": {"data.mixture.laion_batch_size": 4, "data.mixture.mmc4_batch_size": 2},
    "sampled": {"data.mixture": "sampled", "data.mixture.batch_size": 12},
    "mmc4_only": {"data.mixture": "mmc4_only", "data.mixture.batch_size": 5},
}


def _by_dotted_keys(spec: RunSpec, value: str) -> RunSpec:
    """The mixture axis as it was written before the helpers, by the fields' dotted keys."""
    options = spec.data.mixture.options
    total = (
        options.laion_batch_size + options.mmc4_batch_size
        if spec.data.mixture.name == "paired"
        else options.batch_size
    )
    if value.endswith("_only"):
        return spec.override({"data.mixture": value, "data.mixture.batch_size": total})
    laion, mmc4 = map(int, value.split(":"))
    laion_size = round(total * laion / (laion + mmc4))
    return spec.override(
        {
            "data.mixture": "paired",
            "data.mixture.laion_batch_size": laion_size,
            "data.mixture.mmc4_batch_size": total - laion_size,
        }
    )


@pytest.mark.parametrize("base", list(BASES))
def test_the_mixture_axis_gives_the_same_specs_as_before(base):
    load_ablations()
    axis = AXES.get("mixture")
    spec = RunSpec().override(BASES[base])
    for value in [*axis.values(), "3:1", "1:3", "7:2"]:
        assert axis.apply(spec, value) == _by_dotted_keys(spec, value), value


def test_a_filter_that_drops_every_record_stops_the_stream_in_one_line(world, kit, monkeypatch):
    """Threshold 0.99 keeps no image of any document: the endless resampled stream used to spin
    forever; it stops once the filter has dropped a bounded number of records in a row."""
    import workbench.data.loader as loader

    monkeypatch.setattr(loader, "MAX_DROPPED_IN_A_ROW", 100)  # the world holds 40 documents
    tokenizer, processor = kit
    spec = RunSpec().override({
        "data.laion_shards": world["laion"], "data.mmc4_shards": world["mmc4"],
        "data.mixture.laion_batch_size": 4, "data.mixture.mmc4_batch_size": 2,
        "data.mmc4.min_image_bytes": 0, "data.mmc4_filter.threshold": 0.99})  # fmt: skip
    steps = build_steps(spec.data, tokenizer, processor, seed=0, resume=None)
    with pytest.raises(loader.DataError) as error:
        next(steps)
    message = str(error.value)
    assert message.startswith("mmc4: the filters dropped 100 records in a row (0 kept before; ")
    assert "'no_images_above_threshold': 100" in message and "\n" not in message
    assert message.endswith("loosen data.mmc4_filter or data.mmc4 (e.g. the similarity threshold)")
