"""Where a checkpoint name points: a local folder, the embedded default, or a Hugging Face Hub model id.

Every ``from_pretrained`` (config, both tokenizers, the model classes of all three backends) and every command
(``xlmr convert``, ``parity``, ``finetune``, ``export``, ...) passes its ``path`` through ``resolve``:

* an existing folder is used as it is;
* ``"xlmr-default"`` is the small checkpoint shipped inside the package (2 layers, 64 wide, the 8000-piece test
  sentencepiece model, trained briefly on the UDHR as a masked LM: its answers are not xlm-roberta-base's);
* anything shaped like a Hub id (``FacebookAI/xlm-roberta-base``, ``xlm-roberta-base``) is fetched through
  ``huggingface_hub`` (imported only then), downloading only what is needed: ``config.json``, the tokenizer files
  and ONE weights format (safetensors first, then pytorch_model.bin, tf_model.h5, flax_model.msgpack; sharded
  indexes included). ``revision``, ``cache_dir``, ``token`` and ``local_files_only`` are huggingface_hub's, and
  ``HF_HUB_OFFLINE=1`` works as there.

Example:
    >>> import os
    >>> from xlmr.common.hub import DEFAULT_NAME, resolve
    >>> folder = resolve(DEFAULT_NAME)
    >>> sorted(f for f in os.listdir(folder) if f.endswith((".json", ".safetensors")))[:2]
    ['config.json', 'model.safetensors']
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

DEFAULT_NAME = "xlmr-default"
DEFAULT_FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "default")

CONFIG_FILES = ("config.json", "generation_config.json")
TOKENIZER_FILES = ("sentencepiece.bpe.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json")
# One weights format is downloaded: the first of these the repository has (the order checkpoints are read in).
WEIGHT_PATTERNS = (
    ("safetensors", ("model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors")),
    ("pt", ("pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin")),
    ("tf", ("tf_model.h5", "tf_model.h5.index.json", "tf_model-*-of-*.h5")),
    ("flax", ("flax_model.msgpack", "flax_model.msgpack.index.json", "flax_model-*-of-*.msgpack")),
)
# HF's repo-id rule: an optional namespace, then a name; letters, digits, '-', '_', '.'; no '--' or '..'.
_REPO_ID = re.compile(r"(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}")


# The keyword arguments every from_pretrained accepts for Hub ids (huggingface_hub's names).
HUB_OPTIONS = ("revision", "cache_dir", "token", "local_files_only")


def pop_hub_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Take the Hub options out of a from_pretrained's keyword arguments (the rest are config overrides)."""
    return {k: kwargs.pop(k) for k in HUB_OPTIONS if k in kwargs}


class HubError(OSError):
    """A name that is neither a folder nor a model id that could be fetched; the message says what to do."""


def is_hub_id(name: str) -> bool:
    """True when ``name`` can only mean a Hub model id (not a path: no leading ./, ~ or /, at most one '/')."""
    return (_REPO_ID.fullmatch(name) is not None and "--" not in name and ".." not in name
            and not name.startswith((".", "~")) and not name.endswith((".json", ".bin", ".h5", ".msgpack")))


def _weights_present(folder: str, format: str | None) -> str | None:
    names = os.listdir(folder)
    for fmt, patterns in WEIGHT_PATTERNS:
        if format not in (None, fmt):
            continue
        for pattern in patterns:
            regex = re.compile(re.escape(pattern).replace(r"\*", r"\d+"))
            if any(regex.fullmatch(n) for n in names):
                return fmt
    return None


def resolve(name: str | os.PathLike, *, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
            token: str | bool | None = None, local_files_only: bool | None = None, weights: bool = True,
            format: str | None = None) -> str:
    """The local folder ``name`` stands for, fetching a Hub id into huggingface_hub's cache when needed.

    ``weights=False`` fetches only config and tokenizer files (what a tokenizer needs); ``format`` asks for one
    weights format. A name that is neither an existing folder nor a Hub id raises FileNotFoundError naming it; a Hub
    id that cannot be had (offline and not cached, unknown, gated) raises HubError saying why and how to fetch it.
    """
    name = os.fspath(name)
    if name == DEFAULT_NAME:
        return DEFAULT_FOLDER
    if os.path.isdir(name):
        return name
    if os.path.exists(name):
        return name  # a file (e.g. config.json itself): the caller decides what it accepts
    if not is_hub_id(name):
        raise FileNotFoundError(f"checkpoint folder {name} does not exist")
    return _download(name, revision=revision, cache_dir=cache_dir, token=token, local_files_only=local_files_only,
                     weights=weights, format=format)


def _download(repo_id: str, *, weights: bool, format: str | None, **hub: Any) -> str:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError:
        raise HubError(f"{repo_id} is not a local folder, and loading a Hub model id needs huggingface_hub: "
                       f"pip install 'xlmr[hub]' (or pass the path of a downloaded folder)") from None
    hub = {k: v for k, v in hub.items() if v is not None}
    offline = hub.get("local_files_only") or os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    where = hub.get("revision") or "main"
    base = list(CONFIG_FILES + TOKENIZER_FILES)
    candidates = [p for fmt, p in WEIGHT_PATTERNS if format in (None, fmt)] if weights else [()]
    try:
        for patterns in candidates:
            folder = snapshot_download(repo_id, allow_patterns=base + list(patterns), **hub)
            if not weights or _weights_present(folder, format):
                return folder
    except LocalEntryNotFoundError:
        how = (f"huggingface-cli download {repo_id}" + (f" --revision {hub['revision']}" if "revision" in hub else ""))
        why = "offline (HF_HUB_OFFLINE or local_files_only)" if offline else "the Hub could not be reached"
        raise HubError(f"{repo_id} (revision {where}) is not a local folder and not in the Hugging Face cache "
                       f"({hub.get('cache_dir') or _cache_dir()}), and {why}; fetch it with `{how}` on a machine "
                       f"with network access, or pass a local folder") from None
    except RepositoryNotFoundError:
        raise HubError(f"{repo_id}: no such model on the Hugging Face Hub (or it is private: pass token=...)") \
            from None
    except HfHubHTTPError as e:
        raise HubError(f"{repo_id}: the Hugging Face Hub refused the download: {str(e).splitlines()[0]}") from None
    wanted = f"{format} weights" if format else "weights in any of safetensors, pytorch_model.bin, tf_model.h5, " \
                                               "flax_model.msgpack"
    raise HubError(f"{repo_id} (revision {where}) has no {wanted}" +
                   (" in the local cache" if offline else ""))


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning point at the first caller outside the xlmr package (the user's
    ``from_pretrained`` line), however many xlmr frames lie in between. Call it from the function that warns."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return constants.HF_HUB_CACHE
    except ImportError:  # pragma: no cover - only reached with huggingface_hub installed
        return "~/.cache/huggingface/hub"
