"""Training on data larger than the memory budget: batches streamed from a memory-mapped uint8 cache."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vaekit.cli import main
from vaekit.data.dataset import ImageDataset
from vaekit.errors import ConfigError
from vaekit.models.spec import ArchSpec, ConvLayer
from vaekit.training import TrainingInterrupted, train
from vaekit.training.batches import (
    ResidentBatches,
    StreamedBatches,
    batch_source,
    choose_placement,
    memory_budget,
    step_indices,
)
from vaekit.training.config import TrainConfig

CPU = torch.device("cpu")
N_TRAIN, N_TEST = 1024, 64
SHAPE = (1, 28, 28)
#: 128 KiB: far smaller than the 0.8 MB training cache file, so "auto" must stream.
TINY_BUDGET_GB = 1 / 8192
#: A small convolutional VAE, so that the end-to-end runs take seconds on two cores.
TINY = ArchSpec(name="tiny28", input_shape=SHAPE, latent_dim=2, encoder_convs=(ConvLayer(8, 3, 2), ConvLayer(16, 3, 2)),
                encoder_dense=(32,), decoder_start=(16, 7, 7), decoder_convs=(ConvLayer(8, 3, 2), ConvLayer(1, 3, 2)))
RUN = dict(epochs=2, batch_size=128, seed=5, device="cpu", precision="fp32",
           compile="off", memory_budget_gb=TINY_BUDGET_GB)


def _memmap_cache(path, n: int, seed: int) -> torch.Tensor:
    """A uint8 ``(n, 1, 28, 28)`` cache file on disk, mapped copy-on-write as the real cache is."""
    rng = np.random.default_rng(seed)
    writer = np.memmap(path, dtype=np.uint8, mode="w+", shape=(n, *SHAPE))
    # Blobs on a dark background: something a VAE can learn, not white noise.
    yy, xx = np.mgrid[0:28, 0:28]
    centres = rng.integers(6, 22, size=(n, 2))
    radius = rng.integers(3, 8, size=n)
    inside = (yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2
    writer[:, 0] = np.where(inside <= radius[:, None, None] ** 2, 230, 10).astype(np.uint8)
    writer.flush()
    del writer
    return torch.from_numpy(np.memmap(path, dtype=np.uint8, mode="c", shape=(n, *SHAPE)))


def _dataset(images: torch.Tensor, split: str) -> ImageDataset:
    labels = torch.zeros(len(images), dtype=torch.int64)
    return ImageDataset(images=images, labels=labels, class_names=("blob",), name="blobs", split=split)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Training and test datasets whose images stay memory-mapped from files on disk."""
    folder = tmp_path_factory.mktemp("cache")
    train_images = _memmap_cache(folder / "train.u8", N_TRAIN, seed=1)
    test_images = _memmap_cache(folder / "test.u8", N_TEST, seed=2)
    train_set, test_set = _dataset(train_images, "train"), _dataset(test_images, "test")
    assert train_set.images.data_ptr() == train_images.data_ptr()  # ImageDataset kept the mapping
    return train_set, test_set


def _train(cache, out, **kwargs):
    train_set, test_set = cache
    return train(TrainConfig(**{**RUN, **kwargs}), out=out, progress=False, model=TINY, dataset=train_set,
                 test_dataset=test_set)


def _saved_weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "model.safetensors")


def _assert_same_weights(a, b) -> None:
    wa, wb = _saved_weights(a), _saved_weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def _placement(run_dir) -> str:
    return json.loads((run_dir / "config.json").read_text())["resolved"]["data_placement"]


@pytest.fixture(scope="module")
def streamed_run(cache, tmp_path_factory):
    """An uninterrupted run whose placement ``auto`` resolved to streaming under the tiny budget."""
    return _train(cache, tmp_path_factory.mktemp("runs") / "auto", data_placement="auto")


# ----------------------------------------------------------------------------- end to end


def test_auto_streams_a_cache_larger_than_the_budget_and_trains(cache, streamed_run):
    train_set, _ = cache
    assert train_set.images.numel() > TINY_BUDGET_GB * 2**30
    assert _placement(streamed_run.run_dir) == "stream"
    config = json.loads((streamed_run.run_dir / "config.json").read_text())
    assert config["status"] == "complete" and config["epochs_done"] == 2
    assert len(streamed_run.metrics) == 2
    assert all(torch.isfinite(w).all() for w in _saved_weights(streamed_run.run_dir).values())


def test_streamed_and_resident_runs_end_with_identical_weights(cache, streamed_run, tmp_path):
    resident = _train(cache, tmp_path / "resident", data_placement="resident")
    assert _placement(resident.run_dir) == "resident"
    _assert_same_weights(streamed_run.run_dir, resident.run_dir)
    assert [r["test_elbo"] for r in streamed_run.metrics] == [r["test_elbo"] for r in resident.metrics]


def test_an_interrupted_streamed_run_resumes_to_the_same_weights(cache, streamed_run, tmp_path):
    def interrupt(epoch, step):
        if epoch == 1 and step == 3:  # mid-way through the second epoch
            raise KeyboardInterrupt

    train_set, test_set = cache
    with pytest.raises(TrainingInterrupted):
        train(TrainConfig(**RUN, data_placement="stream"), out=tmp_path / "cut", progress=False,
              on_step=interrupt, model=TINY, dataset=train_set, test_dataset=test_set)
    config = json.loads((tmp_path / "cut" / "config.json").read_text())
    assert config["status"] == "interrupted"
    assert not [t for t in threading.enumerate() if t.name == "vaekit-prefetch"]
    resumed = train(out=tmp_path / "cut", resume=True, progress=False, model=TINY, dataset=train_set,
                    test_dataset=test_set)
    assert _placement(resumed.run_dir) == "stream"
    _assert_same_weights(streamed_run.run_dir, resumed.run_dir)


# ----------------------------------------------------------------------------- the sources


def test_streaming_keeps_the_mapping_and_serves_rows_in_the_batch_order(cache):
    images = cache[0].images
    source = batch_source(images, CPU, "auto", TINY_BUDGET_GB)
    assert isinstance(source, StreamedBatches)
    assert source.images.data_ptr() == images.data_ptr()  # no copy of the dataset
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    batches = list(source.epoch(order, 0, 300))
    assert [len(b) for b in batches] == [300] * 3 + [124]
    for step, batch in enumerate(batches):
        expected = images[order[step * 300:(step + 1) * 300]]
        assert batch.dtype == torch.uint8 and batch.is_contiguous()
        assert torch.equal(batch, expected), step
        assert batch.data_ptr() != images.data_ptr()
    # From a later step on, as a resumed epoch asks.
    later = list(source.epoch(order, 2, 300))
    assert len(later) == 2 and torch.equal(later[0], batches[2]) and torch.equal(later[1], batches[3])


def test_resident_and_streamed_sources_serve_the_same_batches(cache):
    images = cache[0].images[:500]
    order = torch.tensor([7, 3, 3, 499, 0, 250, 1, 2, 498, 5] * 7)  # unsorted, repeated, uneven last batch
    for rank, world in [(0, 1), (1, 3), (2, 3)]:
        resident = list(ResidentBatches(images, CPU).epoch(order, 1, 16, rank, world))
        streamed = list(StreamedBatches(images, CPU).epoch(order, 1, 16, rank, world))
        assert len(resident) == len(streamed) == 4
        for a, b in zip(resident, streamed):
            assert torch.equal(a, b)


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_rank_shares_cover_each_global_batch_once_and_differ_by_at_most_one(world_size):
    n, batch_size = 103, 10  # an uneven last batch of 3 (smaller than some world sizes)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(world_size))
    shares = [list(step_indices(order, 0, batch_size, rank, world_size)) for rank in range(world_size)]
    assert all(len(s) == 11 for s in shares)
    for step in range(11):
        parts = [shares[rank][step] for rank in range(world_size)]
        together = torch.cat(parts)
        assert sorted(together.tolist()) == sorted(order[step * batch_size:(step + 1) * batch_size].tolist())
        sizes = [len(p) for p in parts]
        assert max(sizes) - min(sizes) <= 1
    resumed = list(step_indices(order, 4, batch_size, world_size - 1, world_size))
    assert len(resumed) == 7 and all(torch.equal(a, b) for a, b in zip(resumed, shares[world_size - 1][4:]))


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "vaekit-prefetch" and t.is_alive()]


def test_the_prefetch_thread_ends_when_an_epoch_is_left_early(cache):
    images = cache[0].images
    source = StreamedBatches(images, CPU)
    epoch = source.epoch(torch.arange(len(images)), 0, 8)  # many steps: the producer fills the queue
    first = next(epoch)
    assert torch.equal(first, images[:8])
    assert len(_prefetch_threads()) == 1
    epoch.close()
    assert _prefetch_threads() == []
    # Breaking out of a for loop and dropping the generator ends it too.
    for _ in source.epoch(torch.arange(len(images)), 0, 8):
        break
    assert _prefetch_threads() == []


def test_the_producer_stays_a_bounded_number_of_batches_ahead(cache):
    images = cache[0].images
    source = StreamedBatches(images, CPU, prefetch=2)
    gathered = []
    gather = source._gather
    source._gather = lambda index: gathered.append(len(index)) or gather(index)
    epoch = source.epoch(torch.arange(len(images)), 0, 8)  # 128 steps
    next(epoch)
    deadline = time.monotonic() + 10
    while len(gathered) < 3 and time.monotonic() < deadline:  # the queue fills up (slowly on a busy machine)
        time.sleep(0.01)
    time.sleep(0.3)  # ample time for an unbounded producer to read far ahead
    # The batch handed out, two queued, at most one more waiting for room: never the dataset.
    assert 3 <= len(gathered) <= 4
    epoch.close()
    assert _prefetch_threads() == []


def test_an_error_in_the_producer_reaches_the_consumer(cache):
    images = cache[0].images[:100]
    source = StreamedBatches(images, CPU)
    order = torch.cat([torch.arange(40), torch.tensor([100_000]), torch.arange(40, 60)])
    seen = []
    with pytest.raises(IndexError):
        for batch in source.epoch(order, 0, 20):
            seen.append(batch)
    assert len(seen) == 2  # the good batches before the bad one arrive first
    assert _prefetch_threads() == []


# ----------------------------------------------------------------------------- choosing


def test_choose_placement():
    assert choose_placement(10**12, CPU, "resident") == "resident"
    assert choose_placement(1, CPU, "stream") == "stream"
    assert choose_placement(2**30, CPU, "auto", budget_gb=1.0) == "resident"
    assert choose_placement(2**30 + 1, CPU, "auto", budget_gb=1.0) == "stream"
    assert choose_placement(1, CPU, "auto") == "resident"  # the measured budget: half the available RAM
    assert 0 < memory_budget(CPU) and memory_budget(CPU, 0.5) == 2**29
    with pytest.raises(ConfigError) as error:
        choose_placement(1, CPU, "disk")
    assert error.value.param == "data_placement" and "disk" in str(error.value)


def test_a_bad_data_placement_is_a_one_line_cli_error(tmp_path, capsys):
    argv = ["train", "--dataset", "shapes", "--quiet", "--out", str(tmp_path / "run"), "--data-placement", "disk"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data-placement" in err[0] and "disk" in err[0], err
    assert not (tmp_path / "run").exists()
