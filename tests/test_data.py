"""The data layer: the TinyImageNet reader, the decoded cache, both pipelines, download and every bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from speedlab import cli, config
from speedlab.data import cache, download, images, patterns
from speedlab.data.build import build_data
from speedlab.data.fake import write_fake_tinyimagenet
from speedlab.data.sources import tinyimagenet
from speedlab.errors import DataError
from tests.conftest import FAKE_CLASSES, FAKE_TRAIN, FAKE_VAL

TIN = "tiny-imagenet-200"


def data_cfg(root: Path | None = None, *overrides: str) -> config.DataCfg:
    base = [f"data.root={root}"] if root is not None else ["data=synthetic"]
    return cli.compose("train", [*base, "data.resolution=32", "data.workers=0", *overrides]).data


def decoded_arrays(cfg: config.DataCfg) -> tuple[dict[str, cache.DecodedSplit], list[str], dict]:
    """The decoded cache of a TinyImageNet config, as the source builds it."""
    dataset = images.subset(tinyimagenet.index(cfg.root), cfg)
    decoded, info = images.decoded_arrays(cfg, dataset, 3)
    return decoded, dataset.classes, info


def corrupt_one(root: Path) -> Path:
    victim = sorted((root / TIN / "train").rglob("*.JPEG"))[3]
    victim.write_bytes(victim.read_bytes()[:200])  # a truncated JPEG
    return victim


# --- reading the official layout -------------------------------------------------------------------------------


def test_tinyimagenet_index_reads_the_official_layout(fake_tin):
    ds = tinyimagenet.index(fake_tin)
    assert len(ds.classes) == FAKE_CLASSES and ds.classes == sorted(ds.classes)
    assert len(ds.train) == FAKE_CLASSES * FAKE_TRAIN and len(ds.val) == FAKE_CLASSES * FAKE_VAL
    # train labels come from the folder, val labels from val_annotations.txt
    assert all(ds.train.files[i].split("/")[1] == ds.classes[ds.train.labels[i]] for i in range(len(ds.train)))
    annotations = dict(
        line.split("\t")[:2] for line in (fake_tin / TIN / "val" / "val_annotations.txt").read_text().splitlines()
    )
    assert all(annotations[Path(f).name] == ds.classes[y] for f, y in zip(ds.val.files, ds.val.labels, strict=True))


def test_missing_root_names_the_path_and_the_download_command(tmp_path):
    with pytest.raises(DataError) as err:
        build_data(data_cfg(tmp_path / "nowhere"), seed=0, batch_size=8)
    message = str(err.value)
    assert str(tmp_path / "nowhere" / TIN / "wnids.txt") in message
    assert "python -m speedlab data download" in message


def test_incomplete_dataset_names_the_missing_folder(fake_tin):
    wnid = tinyimagenet.index(fake_tin).classes[2]
    shutil.rmtree(fake_tin / TIN / "train" / wnid)
    with pytest.raises(DataError, match=f"{wnid}/images is missing"):
        tinyimagenet.index(fake_tin)


# --- the decoded cache ------------------------------------------------------------------------------------------


def test_cache_is_built_once_memory_mapped_and_reused(fake_tin):
    cfg = data_cfg(fake_tin)
    first, _, info = decoded_arrays(cfg)
    assert all(d.built for d in first.values())
    train = first["train"]
    assert train.images.shape == (FAKE_CLASSES * FAKE_TRAIN, 3, 64, 64) and train.images.dtype == np.uint8
    assert isinstance(train.images, np.memmap)
    assert Path(info["cache_dir"]) == fake_tin / "speedlab_cache"  # beside the data
    second, _, _ = decoded_arrays(cfg)
    assert not any(d.built for d in second.values())
    np.testing.assert_array_equal(second["train"].images, train.images)
    # the cache holds exactly what the classic path decodes
    ds = tinyimagenet.index(fake_tin)
    from speedlab.data.decode import decode_chw

    np.testing.assert_array_equal(train.images[5], decode_chw(ds.train.path(5), 64))


def test_cache_of_changed_data_is_rebuilt_not_reused(fake_tin, capsys):
    cfg = data_cfg(fake_tin)
    decoded_arrays(cfg)
    victim = sorted((fake_tin / TIN / "val" / "images").glob("*.JPEG"))[0]
    os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 10**9))
    again, _, _ = decoded_arrays(cfg)
    assert again["val"].built and not again["train"].built
    assert "image files changed" in again["val"].rebuild_reason
    assert "building (built from other data" in capsys.readouterr().out


def test_cache_from_another_version_is_rebuilt(fake_tin, monkeypatch):
    cfg = data_cfg(fake_tin)
    decoded_arrays(cfg)
    monkeypatch.setattr(cache, "CACHE_FORMAT", cache.CACHE_FORMAT + 1)
    again, _, _ = decoded_arrays(cfg)
    assert again["train"].built and "format was" in again["train"].rebuild_reason


def test_interrupted_cache_build_leaves_no_valid_looking_cache(fake_tin, monkeypatch):
    cfg = data_cfg(fake_tin)

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache, "_decode_all", boom)
    with pytest.raises(KeyboardInterrupt):
        decoded_arrays(cfg)
    cache_dir = fake_tin / "speedlab_cache"
    assert not list(cache_dir.glob("*.meta.json")) and not list(cache_dir.glob("*.tmp*"))


# --- corrupt images ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("feed", ["device", "loader"])
def test_corrupt_image_is_an_error_naming_the_file(fake_tin, feed):
    victim = corrupt_one(fake_tin)
    with pytest.raises(DataError) as err:
        data = build_data(data_cfg(fake_tin, f"data.feed={feed}"), seed=0, batch_size=8)
        for _ in data.train.epoch(0):
            pass
    assert str(victim) in str(err.value) and "data.skip_corrupt=true" in str(err.value)


@pytest.mark.parametrize("feed", ["device", "loader"])
def test_skip_corrupt_skips_and_counts(fake_tin, feed):
    corrupt_one(fake_tin)
    data = build_data(data_cfg(fake_tin, f"data.feed={feed}", "data.skip_corrupt=true"), seed=0, batch_size=8)
    seen = sum(len(y) for _, y in data.train.epoch(0))
    assert data.record()["skipped_corrupt"] == 1
    assert seen == FAKE_CLASSES * FAKE_TRAIN - 1 - (0 if feed == "loader" else (FAKE_CLASSES * FAKE_TRAIN - 1) % 8)


def test_cache_with_skipped_images_is_refused_without_skip_corrupt(fake_tin):
    victim = corrupt_one(fake_tin)
    decoded_arrays(data_cfg(fake_tin, "data.skip_corrupt=true"))
    with pytest.raises(DataError, match="skip_corrupt=true"):
        decoded_arrays(data_cfg(fake_tin))
    assert (
        victim.name
        in json.loads((fake_tin / "speedlab_cache" / "tinyimagenet-train-64px-3ch.meta.json").read_text())["skipped"][0]
    )


# --- the two pipelines ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("feed", ["device", "loader"])
def test_pipelines_yield_normalised_batches_at_the_resolution(fake_tin, feed):
    data = build_data(data_cfg(fake_tin, f"data.feed={feed}"), seed=0, batch_size=8)
    x, y = next(iter(data.train.epoch(0)))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert -3 < x.mean() < 3 and 0.2 < x.std() < 3  # normalised, not 0..255
    assert data.spec.num_outputs == FAKE_CLASSES and int(y.max()) < FAKE_CLASSES
    xv, _ = next(iter(data.val.epoch(0)))
    assert xv.shape[1:] == (3, 32, 32)


def test_both_pipelines_see_the_same_minibatches(fake_tin):
    labels = {}
    for feed in ("device", "loader"):
        data = build_data(data_cfg(fake_tin, f"data.feed={feed}"), seed=3, batch_size=8)
        labels[feed] = [y.tolist() for _, y in data.train.epoch(1)]
    assert labels["device"] == labels["loader"]


def test_same_seed_same_batches_other_seed_other_order(fake_tin):
    def run(seed: int) -> list[torch.Tensor]:
        data = build_data(data_cfg(fake_tin), seed=seed, batch_size=8)
        return [x for x, _ in data.train.epoch(0)]

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a, c, strict=True))


def test_rank_shards_are_disjoint_and_equal_sized(fake_tin):
    cfg = data_cfg(fake_tin)
    shards = [build_data(cfg, seed=0, batch_size=4, rank=r, world=2).train for r in (0, 1)]
    idx = [np.concatenate(s.plan.batches(0)) for s in shards]
    assert len(shards[0]) == len(shards[0].plan.batches(0))
    assert len(idx[0]) == len(idx[1]) and not set(idx[0]) & set(idx[1])


def test_imagefolder_layout(tmp_path):
    base = tmp_path / "folder"
    write_fake_tinyimagenet(tmp_path / "src", classes=3, train_per_class=4, val_per_class=2)
    src = tmp_path / "src" / TIN
    for split in ("train", "val"):
        for i, wnid in enumerate(sorted(p.name for p in (src / "train").iterdir())):
            (base / split / f"cls{i}").mkdir(parents=True)
            pattern = f"train/{wnid}/images/*.JPEG" if split == "train" else "val/images/*.JPEG"
            for img in sorted(src.glob(pattern))[:2]:
                shutil.copy(img, base / split / f"cls{i}" / img.name)
    cfg = cli.compose("train", ["data=imagefolder", f"data.root={base}", "data.resolution=32"]).data
    data = build_data(cfg, seed=0, batch_size=2)
    assert data.classes == ["cls0", "cls1", "cls2"] and data.record()["train_samples"] == 6
    x, _ = next(iter(data.train.epoch(0)))
    assert x.shape == (2, 3, 32, 32)


# --- synthetic data ---------------------------------------------------------------------------------------------


def test_synthetic_is_deterministic_balanced_and_tinyimagenet_shaped():
    a_x, a_y = patterns.generate(400, 200, dataset_seed=0)
    b_x, b_y = patterns.generate(400, 200, dataset_seed=0)
    np.testing.assert_array_equal(a_x, b_x)
    np.testing.assert_array_equal(a_y, b_y)
    assert a_x.shape == (400, 3, 64, 64) and a_x.dtype == np.uint8
    assert np.bincount(a_y, minlength=200).tolist() == [2] * 200
    v_x, _ = patterns.generate(400, 200, dataset_seed=0, split="val")
    assert not np.array_equal(a_x, v_x)


def test_synthetic_is_learnable_well_above_chance():
    """A tiny ConvNet, one short epoch on the quick preset's data, reaches many times chance (0.5%)."""
    torch.manual_seed(0)
    cfg = cli.compose("train", ["+preset=quick", "data.train_size=3200", "data.val_size=400", "data.resolution=32"])
    data = build_data(cfg.data, seed=0, batch_size=64)

    def block(i: int, o: int) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Conv2d(i, o, 3, padding=1), torch.nn.BatchNorm2d(o), torch.nn.ReLU(),
                                   torch.nn.MaxPool2d(2))  # fmt: skip

    model = torch.nn.Sequential(block(3, 32), block(32, 64), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(64, 200))  # fmt: skip
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for x, y in data.train.epoch(0):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        hits = sum(int((model(x).argmax(1) == y).sum()) for x, y in data.val.epoch(0))
    assert hits / 400 > 0.05  # 10x chance


# --- download ---------------------------------------------------------------------------------------------------


def test_download_from_a_local_zip(fake_tin_pristine, tmp_path):
    target = download.download(str(fake_tin_pristine / f"{TIN}.zip"), tmp_path / "root")
    assert target == (tmp_path / "root" / TIN).resolve()
    assert len(tinyimagenet.index(tmp_path / "root").train) == FAKE_CLASSES * FAKE_TRAIN
    assert [p.name for p in (tmp_path / "root").iterdir()] == [TIN]  # no staging folder left


def test_download_from_a_url_with_hash_check(fake_tin_pristine, tmp_path):
    archive = fake_tin_pristine / f"{TIN}.zip"
    digest = download.md5sum(archive)
    download.download(archive.as_uri(), tmp_path / "root", md5=digest)
    assert (tmp_path / "root" / TIN / "wnids.txt").is_file()
    with pytest.raises(DataError, match="MD5"):
        download.download(archive.as_uri(), tmp_path / "other", md5="0" * 32)


def test_download_without_network_says_where_to_put_the_zip(tmp_path):
    with pytest.raises(DataError) as err:
        download.download("http://127.0.0.1:9/tiny-imagenet-200.zip", tmp_path, timeout=5)
    message = str(err.value)
    assert "could not download" in message and str(tmp_path / f"{TIN}.zip") in message
    assert "python -m speedlab data download" in message


def test_download_refuses_a_zip_that_is_not_tinyimagenet(tmp_path):
    bogus = tmp_path / "bogus.zip"
    shutil.make_archive(str(bogus.with_suffix("")), "zip", tmp_path, ".")
    with pytest.raises(DataError, match="not a TinyImageNet zip"):
        download.download(str(bogus), tmp_path / "root")
    not_zip = tmp_path / "nozip.zip"
    not_zip.write_text("hello")
    with pytest.raises(DataError, match="not a valid zip"):
        download.download(str(not_zip), tmp_path / "root")


# --- the data command -------------------------------------------------------------------------------------------


def test_data_synth_download_prepare_commands(run_main, tmp_path):
    out = run_main("data", "synth", "--out", str(tmp_path / "src"), "--classes", "3", "--train-per-class", "4",
                  "--val-per-class", "2", "--zip")  # fmt: skip
    assert out.returncode == 0, out.stderr
    out = run_main("data", "download", str(tmp_path / "src" / f"{TIN}.zip"), "--root", str(tmp_path / "root"))
    assert out.returncode == 0, out.stderr
    run_dir = tmp_path / "run"
    out = run_main("data", "prepare", f"data.root={tmp_path / 'root'}", f"hydra.run.dir={run_dir}")
    assert out.returncode == 0, out.stderr
    result = json.loads((run_dir / "result.json").read_text())
    assert result["kind"] == "data" and result["status"] == "ok"
    assert result["data"]["skipped_corrupt"] == 0 and result["config"]["data"]["root"] == str(tmp_path / "root")
    assert (run_dir / ".hydra" / "config.yaml").is_file()  # the resolved config beside the result


def test_data_prepare_on_a_missing_root_fails_with_one_clear_error(run_main, tmp_path):
    out = run_main("data", "prepare", f"data.root={tmp_path / 'nothing'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert out.returncode == 1
    assert "TinyImageNet not found" in out.stderr and "Traceback" not in out.stderr
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "failed"


def test_data_prepare_multirun_writes_one_result_per_job(run_main, fake_tin_pristine, tmp_path):
    out = run_main("data", "prepare", "-m", f"data.root={fake_tin_pristine}", f"data.cache_dir={tmp_path / 'cache'}",
                  "data.image_size=32,48")  # fmt: skip
    assert out.returncode == 0, out.stderr
    results = sorted((tmp_path / "artifacts" / "sweeps").glob("*-data_prepare/*/result.json"))
    assert len(results) == 2
    assert {json.loads(r.read_text())["config"]["data"]["image_size"] for r in results} == {32, 48}
