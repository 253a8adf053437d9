"""The original XLM-R release: a fairseq folder (``model.pt`` + ``dict.txt`` + ``sentencepiece.bpe.model``), read
without fairseq or torch and turned into a Hugging Face checkpoint by ``xlmr convert``.

Layout (facts from fairseq's ``RobertaModel`` / ``RobertaEncoder`` / ``TransformerSentenceEncoder`` and
``TransformerEncoder``, and from HF's ``convert_roberta_original_pytorch_checkpoint_to_pytorch.py``):

``model.pt`` is ``torch.save`` of a dict: ``"model"`` (the state dict), ``"args"`` (an ``argparse.Namespace`` of
the training command line; ``None`` in fairseq >= 0.10, which saves ``"cfg"``, a dict from
``OmegaConf.to_container`` or, in some versions, a pickled omegaconf ``DictConfig``), and training state
(``optimizer_history``, ``extra_state``, ``last_optimizer_state``: plain containers and tensors). State-dict names:

    {P}.sentence_encoder.embed_tokens.weight                      (vocab, H)       word embeddings
    {P}.sentence_encoder.embed_positions.weight                   (max_positions + 2, H), padding_idx 1
    {P}.sentence_encoder.emb_layer_norm.{weight,bias}             fairseq < 0.10; ``layernorm_embedding`` after
    {P}.sentence_encoder.layers.N.self_attn.in_proj_{weight,bias} (3H, H): query, key, value stacked in that order
    {P}.sentence_encoder.layers.N.self_attn.{q,k,v}_proj.*        newer fairseq: already split
    {P}.sentence_encoder.layers.N.self_attn.out_proj.*            attention output
    {P}.sentence_encoder.layers.N.self_attn_layer_norm.*          post-attention LayerNorm
    {P}.sentence_encoder.layers.N.fc1.* / fc2.*                   feed-forward
    {P}.sentence_encoder.layers.N.final_layer_norm.*              post-feed-forward LayerNorm
    {P}.lm_head.{dense,layer_norm}.*, {P}.lm_head.weight, .bias   MLM head; ``weight`` is embed_tokens unless
                                                                  ``untie_weights_roberta``
    classification_heads.NAME.{dense,out_proj}.*                  sentence classification head (tanh pooler)

with ``P`` = ``decoder`` (fairseq < 0.10) or ``encoder``; ``{P}.sentence_encoder.version`` is a buffer. RoBERTa has
no token types: HF's converter gives ``token_type_embeddings`` one zero row, and so does this reader. The
dictionary is fairseq's: ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3, then one id per ``dict.txt`` line
(``piece count``), then ``<mask>``; XLM-R's lines are the sentencepiece pieces from index 3 on, which is what
HF's XLM-R tokenizer assumes and what is checked here.

Only post-LayerNorm models are read: ``encoder_normalize_before=True`` (XLM-R XL and XXL, ``roberta_prenorm``)
is refused by name, as are scaled or sinusoidal embeddings and activations other than GELU.

The unpickler is ``xlmr.common.checkpoint.pytorch``'s, allowed a few more globals, each built as plain data:
``argparse.Namespace`` (a dict of its fields), omegaconf's ``DictConfig``/``ListConfig``/value nodes and their
metadata (plain dicts, lists and values; ``${a.b}`` interpolations resolved against the root), ``typing`` and
builtin type names (inert markers), numpy scalars of number dtypes (Python numbers; their bytes pickle as
``_codecs.encode(text, 'latin1')``, allowed with exactly that encoding), and names in ``fairseq.*``
(inert markers; "called" with one value, as an enum member is rebuilt, they give that value). Nothing else is
built or called.

Example:
    >>> is_fairseq_folder("xlmr/assets/default")
    False
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from xlmr.common.checkpoint import pytorch
from xlmr.common.checkpoint.base import CheckpointError
from xlmr.common.config import XLMRobertaConfig

MODEL_FILE, DICT_FILE, SPM_FILE = "model.pt", "dict.txt", "sentencepiece.bpe.model"
FAIRSEQ_SYMBOLS = ("<s>", "<pad>", "</s>", "<unk>")

# fairseq name (after the ``decoder.``/``encoder.`` prefix) -> canonical name; ``{n}`` is the layer.
_ENC = r"sentence_encoder\."
_LAYER = _ENC + r"layers\.(\d+)\."
NAMES: list[tuple[str, str]] = [
    (_ENC + r"embed_tokens\.weight", "roberta.embeddings.word_embeddings.weight"),
    (_ENC + r"embed_positions\.weight", "roberta.embeddings.position_embeddings.weight"),
    (_ENC + r"(?:emb_layer_norm|layernorm_embedding)\.(weight|bias)", "roberta.embeddings.LayerNorm.{0}"),
    (_LAYER + r"self_attn\.in_proj_(weight|bias)", "roberta.encoder.layer.{0}.attention.self.{{qkv}}.{1}"),
    (_LAYER + r"self_attn\.q_proj\.(weight|bias)", "roberta.encoder.layer.{0}.attention.self.query.{1}"),
    (_LAYER + r"self_attn\.k_proj\.(weight|bias)", "roberta.encoder.layer.{0}.attention.self.key.{1}"),
    (_LAYER + r"self_attn\.v_proj\.(weight|bias)", "roberta.encoder.layer.{0}.attention.self.value.{1}"),
    (_LAYER + r"self_attn\.out_proj\.(weight|bias)", "roberta.encoder.layer.{0}.attention.output.dense.{1}"),
    (_LAYER + r"self_attn_layer_norm\.(weight|bias)", "roberta.encoder.layer.{0}.attention.output.LayerNorm.{1}"),
    (_LAYER + r"fc1\.(weight|bias)", "roberta.encoder.layer.{0}.intermediate.dense.{1}"),
    (_LAYER + r"fc2\.(weight|bias)", "roberta.encoder.layer.{0}.output.dense.{1}"),
    (_LAYER + r"final_layer_norm\.(weight|bias)", "roberta.encoder.layer.{0}.output.LayerNorm.{1}"),
    (r"lm_head\.dense\.(weight|bias)", "lm_head.dense.{0}"),
    (r"lm_head\.layer_norm\.(weight|bias)", "lm_head.layer_norm.{0}"),
    (r"lm_head\.weight", "lm_head.decoder.weight"),
    (r"lm_head\.bias", "lm_head.bias"),
]
_COMPILED = [(re.compile(r"(?:decoder|encoder)\." + p + r"\Z"), t) for p, t in NAMES]
_HEAD = re.compile(r"classification_heads\.([^.]+)\.(dense|out_proj)\.(weight|bias)\Z")
_IGNORED = re.compile(r"(?:decoder|encoder)\.sentence_encoder\.(?:version|embed_positions\._float_tensor)\Z")
# Heads per architecture when the arguments leave the count out (fairseq's architecture defaults).
_ARCH_HEADS = {"roberta": 12, "roberta_base": 12, "roberta_large": 16, "xlm": 16}


def is_fairseq_folder(path: str | os.PathLike) -> bool:
    """True for a folder holding fairseq's ``model.pt`` and ``dict.txt`` (and no HF ``config.json``)."""
    path = os.fspath(path)
    return (os.path.isdir(path) and all(os.path.isfile(os.path.join(path, n)) for n in (MODEL_FILE, DICT_FILE))
            and not os.path.isfile(os.path.join(path, "config.json")))


# ------------------------------------------------------------------------------------------------ unpickling
class _Marker:
    """An allowed global that is only a name (a type annotation, a fairseq class): never built, never run."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: Any) -> Any:
        if len(args) == 1 and isinstance(args[0], (str, int, float, bool, type(None))):
            return args[0]  # an enum member pickles as EnumClass(value): keep the value
        raise CheckpointError(f"refused to call {self.name}{args!r:.60}: only tensors and configuration values "
                              "are read from model.pt")

    def __repr__(self) -> str:
        return self.name


class _Namespace:
    """argparse.Namespace, as the dict of its fields."""

    def __setstate__(self, state: Any) -> None:
        self.fields = dict(state) if isinstance(state, dict) else {}


class _OmegaContainer:
    """omegaconf's DictConfig/ListConfig/ValueNode: only ``_content`` (containers) or ``_val`` (values) is kept."""

    def __setstate__(self, state: Any) -> None:
        state = state if isinstance(state, dict) else {}
        self.value = state.get("_content", state.get("_val"))


class _Ignored:
    """omegaconf metadata (types, flags, parent links): nothing a model needs."""

    def __setstate__(self, state: Any) -> None:
        pass


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:  # copyreg._reconstructor, pickle protocols 0 and 1
    if not (isinstance(cls, type) and cls in (_Namespace, _OmegaContainer, _Ignored)) or state is not None:
        raise CheckpointError(f"refused to rebuild {cls!r} from {base!r}")
    return cls.__new__(cls)


class _DType:
    def __init__(self, code: Any, align: Any = False, copy: Any = True) -> None:
        self.code, self.order = str(code), "="
        if np.dtype(self.code).kind not in "biuf":
            raise CheckpointError(f"refused numpy dtype {self.code!r}: only numbers are read")

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) > 1 and state[1] in "<>|=":
            self.order = state[1]


def _scalar(dtype: Any, data: Any = b"") -> Any:
    if not isinstance(dtype, _DType) or not isinstance(data, bytes):
        raise CheckpointError("refused a numpy scalar that is not a number")
    return np.frombuffer(data, np.dtype(dtype.code).newbyteorder(dtype.order), count=1)[0].item()


def _latin1(text: Any, encoding: Any = "latin1") -> bytes:  # how pickle protocol 2 writes a bytes object
    if not isinstance(text, str) or encoding != "latin1":
        raise CheckpointError(f"refused _codecs.encode({text!r:.40}, {encoding!r})")
    return text.encode("latin1")


_OMEGA_NODES = ("AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode", "EnumNode", "BytesNode",
                "PathNode", "ValueNode")
GLOBALS: dict[tuple[str, str], Any] = {
    ("argparse", "Namespace"): _Namespace,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("_codecs", "encode"): _latin1,
    ("omegaconf.dictconfig", "DictConfig"): _OmegaContainer,
    ("omegaconf.listconfig", "ListConfig"): _OmegaContainer,
    **{("omegaconf.nodes", n): _OmegaContainer for n in _OMEGA_NODES},
    ("omegaconf.base", "Metadata"): _Ignored,
    ("omegaconf.base", "ContainerMetadata"): _Ignored,
    ("collections", "defaultdict"): lambda *args: {},  # omegaconf's resolver cache
    ("numpy", "dtype"): _DType,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    **{("typing", n): _Marker(f"typing.{n}") for n in ("Any", "Dict", "List", "Tuple", "Optional", "Union")},
    **{("builtins", n): _Marker(n) for n in ("dict", "list", "tuple", "int", "float", "str", "bool", "object")},
}


class _Unpickler(pytorch._Unpickler):
    """torch's state-dict unpickler, plus the globals above; every other global is refused by the base class."""

    def find_class(self, module: str, name: str) -> Any:
        # Protocol 2 keeps Python 2's module names, which the default find_class would map (fix_imports).
        module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)
        if self.storages is not None:
            if (module, name) in GLOBALS:
                return GLOBALS[module, name]
            if module == "fairseq" or module.startswith("fairseq."):
                return _Marker(f"{module}.{name}")
        return super().find_class(module, name)

    found: dict[str, Any] = {}  # each read uses its own subclass (see read_model_pt) to hand the arguments back

    @classmethod
    def state_dict(cls, path: str, obj: Any) -> list[tuple[str, Any]]:
        if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
            raise CheckpointError(f"{path}: not a fairseq checkpoint (expected a dict with a 'model' state dict)")
        tensors = list(obj["model"].items())
        for name, value in tensors:
            if not isinstance(name, str) or not isinstance(value, pytorch._Tensor):
                raise CheckpointError(f"{path}: model entry {name!r} is not a tensor")
        cls.found.update(args=_plain(obj.get("args")), cfg=_plain(obj.get("cfg")))
        return tensors


def _plain(value: Any, depth: int = 0) -> Any:
    """Namespaces and omegaconf containers as plain dicts, lists and values."""
    if depth > 50:
        raise CheckpointError("configuration nested more than 50 levels deep")
    if isinstance(value, _Namespace):
        value = getattr(value, "fields", {})
    elif isinstance(value, _OmegaContainer):
        value = getattr(value, "value", None)
    if isinstance(value, dict):
        return {k: _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, (_Marker, _Ignored, pytorch._Tensor)):
        return None
    return value


def _resolve(value: Any, root: dict) -> Any:
    """Resolve omegaconf's ``${a.b}`` interpolations (whole-value, dotted paths) against ``root``."""
    for _ in range(10):
        if not (isinstance(value, str) and re.fullmatch(r"\$\{[\w.]+\}", value)):
            return value
        node: Any = root
        for part in value[2:-1].split("."):
            node = node.get(part) if isinstance(node, dict) else None
        value = node
    return value


def read_model_pt(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(model arguments as a plain dict, {fairseq name: array}) of a fairseq ``model.pt``."""
    unpickler = type("_Unpickler", (_Unpickler,), {"found": {}})
    tensors = dict(pytorch.read(path, unpickler=unpickler))
    args, cfg = unpickler.found["args"], unpickler.found["cfg"]
    if isinstance(args, dict) and args:
        fields = args
    elif isinstance(cfg, dict) and isinstance(cfg.get("model"), dict):
        fields = {k: _resolve(v, cfg) for k, v in cfg["model"].items()}
    else:
        raise CheckpointError(f"{path}: holds neither 'args' nor 'cfg' with the model's arguments")
    return fields, tensors


# ------------------------------------------------------------------------------------------------ vocabulary
def read_dictionary(path: str) -> list[str]:
    """The symbols of a fairseq ``dict.txt`` (``symbol count`` per line, optionally ``#fairseq:overwrite``).

    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "dict.txt")
    >>> _ = open(path, "w", encoding="utf-8").write("\u2581the 100\\n, 90 #fairseq:overwrite\\n")
    >>> read_dictionary(path)
    ['▁the', ',']
    """
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    symbols = []
    for number, line in enumerate(lines, 1):
        text = line[: -len(" #fairseq:overwrite")] if line.endswith(" #fairseq:overwrite") else line
        symbol, _, count = text.rpartition(" ")
        if not symbol or not count.lstrip("-").isdigit():
            raise CheckpointError(f"{path}:{number}: expected 'symbol count', got {line[:60]!r}")
        symbols.append(symbol)
    return symbols


def check_dictionary(symbols: list[str], pieces: list[str], dict_path: str, spm_path: str) -> None:
    """Refuse a dict.txt whose line k is not sentencepiece piece k + 3, naming the first differing entry.

    >>> pieces = ["<unk>", "<s>", "</s>", "\u2581the", ","]
    >>> check_dictionary(["\u2581the", ","], pieces, "dict.txt", "spm.model")
    >>> try:
    ...     check_dictionary(["\u2581the", "."], pieces, "dict.txt", "spm.model")
    ... except CheckpointError as e:
    ...     print(e)  # doctest: +ELLIPSIS
    dict.txt:2: '.' (fairseq id 5) but spm.model has ',' at piece 4; ...
    """
    spm_pieces = pieces[3:]
    for k, (symbol, piece) in enumerate(zip(symbols, spm_pieces)):
        if symbol != piece:
            raise CheckpointError(f"{dict_path}:{k + 1}: {symbol!r} (fairseq id {k + 4}) but {spm_path} has "
                                  f"{piece!r} at piece {k + 3}; the dictionary does not match the sentencepiece model")
    if len(symbols) < len(spm_pieces):
        raise CheckpointError(f"{dict_path} ends after {len(symbols)} lines but {spm_path} has piece "
                              f"{len(symbols) + 3} {spm_pieces[len(symbols)]!r} next")
    if len(symbols) > len(spm_pieces):
        raise CheckpointError(f"{dict_path}:{len(spm_pieces) + 1}: {symbols[len(spm_pieces)]!r} has no "
                              f"sentencepiece piece ({spm_path} has {len(pieces)} pieces)")


# ------------------------------------------------------------------------------------------------ model
def _refuse_architecture(fields: dict[str, Any], source: str) -> None:
    arch = fields.get("arch") or fields.get("_name") or "roberta"
    problems = [
        (fields.get("encoder_normalize_before") is True,
         "encoder_normalize_before=True (pre-LayerNorm, as XLM-R XL and XXL)"),
        (fields.get("layernorm_embedding") is False, "layernorm_embedding=False"),
        (fields.get("no_scale_embedding") is False, "no_scale_embedding=False (embeddings scaled by sqrt(dim))"),
        (fields.get("encoder_learned_pos") is False, "encoder_learned_pos=False (sinusoidal positions)"),
        (fields.get("no_token_positional_embeddings") is True, "no_token_positional_embeddings=True"),
        (fields.get("adaptive_input") is True, "adaptive_input=True"),
        (fields.get("activation_fn", "gelu") != "gelu", f"activation_fn={fields.get('activation_fn')!r}"),
    ]
    for bad, what in problems:
        if bad:
            raise CheckpointError(f"{source}: fairseq architecture {arch!r} with {what} is not an architecture xlmr "
                                  "implements (post-LayerNorm XLM-R/RoBERTa with learned positions and GELU)")


def _qkv(array: np.ndarray, hidden: int, name: str, source: str) -> list[np.ndarray]:
    if array.shape[0] != 3 * hidden:
        raise CheckpointError(f"{source}: tensor {name} has {array.shape[0]} rows, expected 3 x {hidden} "
                              "(query, key, value)")
    return [array[i * hidden:(i + 1) * hidden] for i in range(3)]


def fairseq_to_hf(fields: dict[str, Any], tensors: dict[str, np.ndarray], source: str
                  ) -> tuple[XLMRobertaConfig, dict[str, np.ndarray], str]:
    """(config, canonical state dict, architecture) of a fairseq RoBERTa/XLM-R model."""
    _refuse_architecture(fields, source)
    embed = next((v for k, v in tensors.items() if k.endswith("sentence_encoder.embed_tokens.weight")), None)
    if embed is None:
        raise CheckpointError(f"{source}: no sentence_encoder.embed_tokens.weight; not a fairseq RoBERTa model")
    vocab, hidden = embed.shape
    state: dict[str, np.ndarray] = {}
    heads: dict[str, dict[str, np.ndarray]] = {}
    for name, array in tensors.items():
        if _IGNORED.match(name):
            continue
        head = _HEAD.match(name)
        if head:
            heads.setdefault(head[1], {})[f"classifier.{head[2]}.{head[3]}"] = array
            continue
        for pattern, template in _COMPILED:
            match = pattern.match(name)
            if match:
                target = template.format(*match.groups())
                if "{qkv}" in target:
                    for part, piece in zip(("query", "key", "value"), _qkv(array, hidden, name, source)):
                        state[target.replace("{qkv}", part)] = piece
                else:
                    state[target] = array
                break
        else:
            raise CheckpointError(f"{source}: tensor {name!r} {tuple(array.shape)} has no place in XLM-R (is this "
                                  f"a fairseq RoBERTa / XLM-R checkpoint of an architecture xlmr implements?)")
    layers = sorted({int(m[1]) for k in state for m in [re.match(r"roberta\.encoder\.layer\.(\d+)\.", k)] if m})
    if layers != list(range(len(layers))) or not layers:
        raise CheckpointError(f"{source}: encoder layers {layers[:8]} are not numbered 0..N-1")
    heads_count = fields.get("encoder_attention_heads") or _ARCH_HEADS.get(fields.get("arch"))
    if not isinstance(heads_count, int) or hidden % heads_count:
        raise CheckpointError(f"{source}: encoder_attention_heads={heads_count!r} in the arguments does not divide "
                              f"the hidden size {hidden}")
    dense = state.get("roberta.encoder.layer.0.intermediate.dense.weight")
    positions = state.get("roberta.embeddings.position_embeddings.weight")
    if dense is None or positions is None:
        raise CheckpointError(f"{source}: the encoder lacks {'fc1' if dense is None else 'embed_positions'}")
    config = dict(vocab_size=int(vocab), hidden_size=int(hidden), num_hidden_layers=len(layers),
                  num_attention_heads=int(heads_count), intermediate_size=int(dense.shape[0]),
                  max_position_embeddings=int(positions.shape[0]), type_vocab_size=1, layer_norm_eps=1e-5,
                  hidden_act="gelu", pad_token_id=1, bos_token_id=0, eos_token_id=2)
    for ours, theirs in (("hidden_dropout_prob", "dropout"), ("attention_probs_dropout_prob", "attention_dropout")):
        if isinstance(fields.get(theirs), (int, float)):
            config[ours] = float(fields[theirs])
    state["roberta.embeddings.token_type_embeddings.weight"] = np.zeros((1, hidden), embed.dtype)
    decoder = state.pop("lm_head.decoder.weight", None)
    if decoder is not None and not np.array_equal(decoder, embed):
        state["lm_head.decoder.weight"] = decoder
        config["tie_word_embeddings"] = False
    if len(heads) > 1:
        raise CheckpointError(f"{source}: {len(heads)} classification heads ({', '.join(sorted(heads))}); a Hugging "
                              "Face checkpoint holds one, so convert a copy with the others removed")
    if heads:
        (name, head), = heads.items()
        if fields.get("pooler_activation_fn", "tanh") != "tanh":
            raise CheckpointError(f"{source}: classification head {name!r} uses pooler_activation_fn="
                                  f"{fields['pooler_activation_fn']!r}; XLM-R's head uses tanh")
        if head.get("classifier.dense.weight") is None or head["classifier.dense.weight"].shape[0] != hidden:
            raise CheckpointError(f"{source}: classification head {name!r} has an inner size other than the hidden "
                                  f"size {hidden}, which Hugging Face's head cannot hold")
        state = {k: v for k, v in state.items() if not k.startswith("lm_head.")} | head
        config.update(num_labels=int(head["classifier.out_proj.weight"].shape[0]), tie_word_embeddings=True)
        if isinstance(fields.get("pooler_dropout"), (int, float)):
            config["classifier_dropout"] = float(fields["pooler_dropout"])
        architecture = "XLMRobertaForSequenceClassification"
    elif any(k.startswith("lm_head.") for k in state):
        architecture = "XLMRobertaForMaskedLM"
    else:
        architecture = "XLMRobertaModel"
        state = {k[len("roberta."):]: v for k, v in state.items()}
    return XLMRobertaConfig(**config, architectures=[architecture]), state, architecture


def read_fairseq(folder: str) -> tuple[XLMRobertaConfig, dict[str, np.ndarray], str, str]:
    """(config, canonical state dict, architecture, sentencepiece model path) of a fairseq folder, after checking
    ``dict.txt`` against the sentencepiece model and the embedding size against both."""
    from xlmr.common.tokenization.sentencepiece_model import read_sentencepiece_model

    model_path, dict_path, spm_path = (os.path.join(folder, n) for n in (MODEL_FILE, DICT_FILE, SPM_FILE))
    if not os.path.isfile(spm_path):
        raise CheckpointError(f"{folder} has {MODEL_FILE} and {DICT_FILE} but no {SPM_FILE}: the tokenizer needs it")
    with open(spm_path, "rb") as f:
        pieces = [p for p, _, _ in read_sentencepiece_model(f.read())[0]]
    symbols = read_dictionary(dict_path)
    check_dictionary(symbols, pieces, dict_path, spm_path)
    fields, tensors = read_model_pt(model_path)
    config, state, architecture = fairseq_to_hf(fields, tensors, model_path)
    expected = len(FAIRSEQ_SYMBOLS) + len(symbols) + 1  # + <mask>
    if config.vocab_size != expected:
        raise CheckpointError(f"{model_path}: embed_tokens has {config.vocab_size} rows but {dict_path} gives "
                              f"{expected} symbols (4 specials + {len(symbols)} lines + <mask>)")
    return config, state, architecture, spm_path
