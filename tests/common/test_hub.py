"""Checkpoint names: the embedded default by name, and Hub model ids through a Hugging Face cache built by hand."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from xlmr.common.hub import DEFAULT_FOLDER, DEFAULT_NAME, HubError, is_hub_id, resolve

pytest.importorskip("huggingface_hub")

REPO = "FacebookAI/xlm-roberta-base"
MAIN_SHA = "a" * 40
OLD_SHA = "b" * 40


def _snapshot(cache, sha, files):
    folder = cache / "models--FacebookAI--xlm-roberta-base" / "snapshots" / sha
    folder.mkdir(parents=True)
    for name in files:
        shutil.copyfile(os.path.join(DEFAULT_FOLDER, name), folder / name)
    return folder


@pytest.fixture
def hub_cache(tmp_path):
    """The layout huggingface_hub documents: models--ORG--NAME/{refs/main, snapshots/SHA/...}."""
    cache = tmp_path / "hub"
    main = _snapshot(cache, MAIN_SHA, ["config.json", "model.safetensors", "sentencepiece.bpe.model",
                                       "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"])
    old = _snapshot(cache, OLD_SHA, ["config.json", "sentencepiece.bpe.model"])  # no weights at that revision
    refs = cache / "models--FacebookAI--xlm-roberta-base" / "refs"
    refs.mkdir()
    (refs / "main").write_text(MAIN_SHA)
    return cache, main, old


def test_default_checkpoint_has_a_name_that_works_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve(DEFAULT_NAME) == DEFAULT_FOLDER
    assert os.path.isfile(os.path.join(resolve(DEFAULT_NAME), "model.safetensors"))


def test_hub_id_resolves_to_the_cached_snapshot_offline(hub_cache):
    cache, main, _ = hub_cache
    assert resolve(REPO, cache_dir=str(cache), local_files_only=True) == str(main)


def test_revision_selects_another_snapshot(hub_cache):
    cache, _, old = hub_cache
    assert resolve(REPO, cache_dir=str(cache), local_files_only=True, revision=OLD_SHA, weights=False) == str(old)


def test_revision_without_weights_is_a_one_line_error(hub_cache):
    cache, _, _ = hub_cache
    with pytest.raises(HubError, match=r"revision b{40}\) has no weights .* in the local cache") as info:
        resolve(REPO, cache_dir=str(cache), local_files_only=True, revision=OLD_SHA)
    assert "\n" not in str(info.value)


def test_missing_id_offline_says_it_is_not_cached_and_how_to_fetch_it(hub_cache):
    cache, _, _ = hub_cache
    with pytest.raises(HubError) as info:
        resolve("FacebookAI/xlm-roberta-large", cache_dir=str(cache), local_files_only=True)
    message = str(info.value)
    assert "not in the Hugging Face cache" in message and "huggingface-cli download FacebookAI/xlm-roberta-large" \
        in message and "\n" not in message


def test_hf_hub_offline_environment_is_honoured(hub_cache):
    cache, main, _ = hub_cache
    code = ("from xlmr.common.hub import resolve, HubError\n"
            f"print(resolve({REPO!r}, cache_dir={str(cache)!r}))\n"
            "try:\n    resolve('someone/else', cache_dir=%r)\nexcept HubError as e:\n    print(e)\n" % str(cache))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.strip().splitlines()
    assert first == str(main) and "offline (HF_HUB_OFFLINE or local_files_only)" in second


@pytest.mark.parametrize("name,hub", [("FacebookAI/xlm-roberta-base", True), ("xlm-roberta-base", True),
                                      ("./models/x", False), ("a/b/c", False), ("/abs/path", False),
                                      ("config.json", False), ("../up", False)])
def test_paths_are_never_mistaken_for_hub_ids(name, hub):
    assert is_hub_id(name) is hub


def test_a_missing_path_is_a_missing_folder_not_a_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint folder .*/nope/deeper does not exist"):
        resolve(str(tmp_path / "nope" / "deeper"))
