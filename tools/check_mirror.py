"""Check that xlmr/pt, xlmr/tf and xlmr/flax mirror each other: same modules, classes, functions, methods, order
and argument names, so that a diff between two backends shows only framework code.

Usage: ``python tools/check_mirror.py [ROOT]`` (ROOT holds ``xlmr/``; default: this checkout). Exit status 0 when
the skeletons agree, 1 with one line per difference (``models: pt has X, tf has Y``) otherwise. Only ``ast`` is
used: no framework is imported, so the check runs anywhere. ``check_mirror(root)`` returns the lines, for tests.

A skeleton is, per module, the public top-level classes and functions in order, each class's public methods in
order, and each signature's argument names and kinds. Leading-underscore names are a backend's own helpers and
are skipped (dunder methods such as ``__init__`` are kept). Framework idioms are normalised before comparing:
``forward`` (PyTorch), ``call`` (Keras) and ``__call__`` (NNX) are one method, and the arguments in
FRAMEWORK_ARGUMENTS are dropped. Every other difference must be listed, with its reason, in ALLOWED.

Example:
    >>> import os
    >>> check_mirror(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    []
"""

from __future__ import annotations

import ast
import itertools
import os
import sys

BACKENDS = ("pt", "tf", "flax")
# Modules every backend must have. Any other module present in all three backends is compared too.
MODULES = ("models", "layers", "heads", "losses", "checks")

# The same method under each framework's name.
METHOD_ALIASES = {"forward": "__call__", "call": "__call__"}

# Arguments that only say how a framework runs a module, dropped from every signature.
FRAMEWORK_ARGUMENTS = {
    "training",        # Keras: the train/inference mode is an argument of every call
    "deterministic",   # NNX: dropout on/off per call
    "rngs",            # NNX: random streams are handed to a module when it is made
    "dtype",           # NNX compute dtype, PyTorch parameter dtype: framework construction extras
    "param_dtype",     # NNX storage dtype
    "name",            # Keras: every layer and model has a name
    "kwargs",          # Keras: **kwargs of a layer's constructor go to keras.layers.Layer (name=...)
    "input_shape",     # Keras: build(input_shape)
}

# Modules only one or two backends have: (backend, module) -> reason.
ALLOWED_MODULES = {
    ("pt", "fast_linear"): "oneDNN prepacked matmuls: a PyTorch CPU inference path; TF and JAX fuse through XLA",
    ("tf", "runtime"): "Keras fit/compute_loss, compiled_call under XLA and SavedModel export: Keras-only services",
    ("flax", "outputs"): "output classes registered as JAX pytrees; pt and tf use xlmr.common.outputs as they are",
    ("flax", "run_stablehlo"): "the standalone loader copied into a StableHLO export: jax and numpy only, no xlmr",
}

# Modules that hold each framework's own training machinery. Torch process groups, tf.distribute strategies and jax
# meshes differ in shape, and so do a torch loop, Keras fit and an optax step: mirroring them line by line would
# force fake methods. What the driver (xlmr/cli/tasks.py) calls must exist in all three with the same arguments;
# the rest is compared by tests/test_training_parity.py and tests/test_distributed.py, which require the same
# losses and parameters from every backend.
IDIOM_MODULES = {
    "training": ("train",),
    "distributed": ("Engine", "Engine.from_options", "Engine.scope", "Engine.save", "Engine.load", "Engine.close"),
}

# Entries one backend may have that the others lack: "module:backend:path" -> reason. A path is ``Class``,
# ``Class.method``, ``function``, or ``Class.method(argument)`` / ``function(argument)`` for one argument.
ALLOWED = {
    # ---- export: each format's own exporter (ONNX traces examples, SavedModel and jax.export take signatures)
    "export:pt:sample_inputs": "torch.onnx.export traces the model on example tensors",
    "export:pt:export(external_data)": "ONNX's 2 GB protobuf limit: weights go to model.onnx.data past it",
    "export:flax:export_program": "jax.export returns a program object, which the loader and --verify run directly",
    "export:flax:export(platforms)": "jax.export lowers for named platforms (cpu, cuda, tpu)",
    # ---- models: framework services on the base class
    "models:pt:XLMRobertaPreTrainedModel.tie_weights":
        "PyTorch ties by sharing one Parameter (HF's state dict names both); tf/flax pass the table to the head",
    "models:tf:XLMRobertaPreTrainedModel.get_variable": "Keras variables are found by path, not by name",
    "models:tf:XLMRobertaPreTrainedModel.named_variables": "Keras has no named_parameters()",
    "models:flax:XLMRobertaPreTrainedModel.config": "NNX: the config is held hashable for jax.jit (a property)",
    "models:flax:XLMRobertaPreTrainedModel.init_cache": "JAX decodes under jit with a fixed-length KVCache",
    "models:flax:attention_bias(key_length)": "a fixed-length KVCache has more key slots than filled positions",
    "models:pt:attention_bias(device)": "PyTorch places tensors on a device",
    "models:pt:XLMRobertaPreTrainedModel.checkpoint_dtype":
        "PyTorch parameters may be half precision and are saved so; tf/flax save float32 (common default)",
    # ---- layers: each framework's way to make a parameterised layer, and the KV cache
    "layers:pt:SelfAttention.eager": "SDPA cannot do relative positions, head_mask or return probabilities",
    "layers:flax:tiled_attention": "XLA CPU's batched softmax streams (batch, heads, q, k) through memory; one "
                                   "(batch, head) at a time is 0.85x the time at 8x512 (tf's XLA: no gain)",
    "layers:tf:Embedding": "keras.layers.Embedding wraps negative ids; a plain gather behind the input checks",
    "layers:tf:build": "Keras: build a child layer once",
    "layers:tf:dense": "a Keras Dense with zero initialisers (the weights always come from common.init)",
    "layers:tf:layer_norm": "a Keras LayerNormalization with the config's epsilon",
    "layers:flax:linear": "an nnx.Linear with zero initialisers (the weights always come from common.init)",
    "layers:flax:layer_norm": "an nnx.LayerNorm with PyTorch's variance",
    "layers:flax:embed": "an nnx.Embed with zero initialisers",
    "layers:flax:dropout": "an nnx.Dropout made in eval mode",
    "layers:flax:KVCache": "JAX decodes under jit with a fixed-length cache written in place",
    "layers:flax:past_length_of": "cached length of a legacy tuple or a KVCache (pt: in checks.py)",
    # PyTorch picks SDPA unless probabilities are asked; Keras passes the flag down as HF's TF port does;
    # XLA computes the probabilities either way. NNX writes a KVCache in place instead.
    "layers:flax:SelfAttention.__call__(in_place)": "a KVCache is written in place (jit keeps one shape)",
    "layers:flax:Attention.__call__(in_place)": "a KVCache is written in place (jit keeps one shape)",
    "layers:flax:Layer.__call__(in_place)": "a KVCache is written in place (jit keeps one shape)",
    # ---- losses: torch.nn.functional has these two
    "losses:tf:mse": "torch.nn.functional.mse_loss in pt",
    "losses:flax:mse": "torch.nn.functional.mse_loss in pt",
    "losses:tf:binary_cross_entropy_with_logits": "torch.nn.functional has it in pt",
    "losses:flax:binary_cross_entropy_with_logits": "torch.nn.functional has it in pt",
    # ---- checks: each framework's execution modes need their own checks (xlmr.common.inputs holds the rules)
    "checks:pt:host_view": "a device tensor's min/max come to the host, not the tensor",
    "checks:pt:past_length_of": "cached length of HF's legacy tuple (flax: in layers.py, with its KVCache)",
    "checks:pt:index_tensors": "nn.Embedding takes int32/int64 indices only (tf casts ids in call, JAX takes any)",
    "checks:flax:is_traced": "JAX tracers: values unknown under jit",
    "checks:flax:cache_overflow_message": "a fixed-length KVCache (JAX) can overflow; a growing cache cannot",
    "checks:flax:traced_checks": "checkify's checks on device under jit",
    "checks:flax:checked_call": "one jitted program with checkify checks",
    "checks:tf:in_xla_context": "XLA drops asserts: the checks change form",
    "checks:tf:is_concrete": "eager tensors vs tf.function graph tensors",
    "checks:tf:check_concrete": "eager check (pt/flax: check_model_inputs); tf also runs traced asserts",
    "checks:tf:traced_checks": "tf.debugging asserts inside tf.function",
    "checks:tf:checked_call": "host checks before the XLA function",
    "checks:pt:check_model_inputs": "tf checks per execution mode: check_concrete, traced_checks",
    "checks:flax:check_model_inputs": "tf checks per execution mode: check_concrete, traced_checks",
}
for _name in ("SelfAttention", "Attention", "Layer"):
    for _backend in ("pt", "tf"):
        ALLOWED[f"layers:{_backend}:{_name}.__call__(output_attentions)"] = \
            "pt picks the SDPA kernel unless probabilities are asked; XLA (flax) computes them either way"
# Keras builds variables in build(); every tf model and layer class has one.
_HEADS = ("XLMRobertaForCausalLM", "XLMRobertaForMaskedLM", "XLMRobertaForSequenceClassification",
          "XLMRobertaForMultipleChoice", "XLMRobertaForTokenClassification", "XLMRobertaForQuestionAnswering")
for _cls in ("XLMRobertaModel", *_HEADS):
    ALLOWED[f"models:tf:{_cls}.build"] = "Keras creates variables in build()"
for _cls in _HEADS:
    ALLOWED[f"models:tf:{_cls}.hf_loss"] = "Keras' compute_loss (fit) asks the class for its loss"
for _cls in ("Embeddings", "SelfAttention", "SelfOutput", "Attention", "Intermediate", "Layer", "Encoder", "Pooler"):
    ALLOWED[f"layers:tf:{_cls}.build"] = "Keras creates variables in build()"
for _cls in ("LMHead", "ClassificationHead"):
    ALLOWED[f"heads:tf:{_cls}.build"] = "Keras creates variables in build()"


def _arguments(node: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> list[str]:
    a = node.args
    out = [f"{x.arg}/" for x in a.posonlyargs] + [x.arg for x in a.args]
    if method and out and out[0].rstrip("/") in ("self", "cls"):
        out = out[1:]
    if a.vararg:
        out.append(f"*{a.vararg.arg}")
    elif a.kwonlyargs:
        out.append("*")
    out += [x.arg for x in a.kwonlyargs]
    if a.kwarg:
        out.append(f"**{a.kwarg.arg}")
    out = [x for x in out if x.strip("*/") not in FRAMEWORK_ARGUMENTS]
    return out[:-1] if out and out[-1] == "*" else out  # "*" alone marks nothing once extras are dropped


def _public(name: str) -> bool:
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))


def skeleton(path: str) -> list[tuple[str, list[str], list[tuple[str, list[str]]]]]:
    """[(name, arguments, [(method, arguments)])] of a module's public classes (arguments: those of __init__)
    and functions, in file order."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    entries = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _public(node.name):
            entries.append((node.name, _arguments(node, method=False), None))
        elif isinstance(node, ast.ClassDef) and _public(node.name):
            methods = []
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and _public(item.name):
                    name = METHOD_ALIASES.get(item.name, item.name)
                    methods.append((name, _arguments(item, method=True)))
            entries.append((node.name, None, methods))
    return entries


_used: set[str] = set()  # ALLOWED entries that matched something in this run


def _allowed(module: str, backend: str, path: str) -> bool:
    key = f"{module}:{backend}:{path}"
    if key in ALLOWED:
        _used.add(key)
        return True
    return False


def _filter(module: str, backend: str, entries: list) -> dict[str, tuple]:
    """Entries by name with the allow-listed ones (and allow-listed arguments) taken out."""
    out = {}
    for name, arguments, methods in entries:
        if _allowed(module, backend, name):
            continue
        if methods is None:
            out[name] = ("function", [a for a in arguments if not _allowed(module, backend, f"{name}({a.strip('*/')})")])
            continue
        kept = []
        for method, margs in methods:
            if _allowed(module, backend, f"{name}.{method}"):
                continue
            kept.append((method, [a for a in margs if not _allowed(module, backend, f"{name}.{method}({a.strip('*/')})")]))
        out[name] = ("class", kept)
    return out


def _describe(kind: str, name: str, arguments: list[str] | None = None) -> str:
    return f"{kind} {name}" + ("" if arguments is None else f"({', '.join(arguments)})")


def _compare(module: str, a: str, left: dict, b: str, right: dict) -> list[str]:
    problems = []
    say = lambda x, y: problems.append(f"{module}: {a} has {x}, {b} has {y}")  # noqa: E731
    for name in left:
        if name not in right:
            say(_describe(left[name][0], name), "nothing of that name")
    for name in right:
        if name not in left:
            say("nothing of that name", _describe(right[name][0], name))
    common = [n for n in left if n in right]
    order_b = [n for n in right if n in left]
    if common != order_b:
        say("order " + ", ".join(common), "order " + ", ".join(order_b))
    for name in common:
        (kind_a, body_a), (kind_b, body_b) = left[name], right[name]
        if kind_a != kind_b:
            say(_describe(kind_a, name), _describe(kind_b, name))
        elif kind_a == "function":
            if body_a != body_b:
                say(_describe("function", name, body_a), _describe("function", name, body_b))
        else:
            methods_a, methods_b = dict(body_a), dict(body_b)
            for m in methods_a:
                if m not in methods_b:
                    say(f"method {name}.{m}", "nothing of that name")
            for m in methods_b:
                if m not in methods_a:
                    say("nothing of that name", f"method {name}.{m}")
            order_a = [m for m, _ in body_a if m in methods_b]
            order_b = [m for m, _ in body_b if m in methods_a]
            if order_a != order_b:
                say(f"{name} methods in order " + ", ".join(order_a), "order " + ", ".join(order_b))
            for m in order_a:
                if methods_a[m] != methods_b[m]:
                    say(_describe("method", f"{name}.{m}", methods_a[m]), _describe("method", f"{name}.{m}", methods_b[m]))
    return problems


def _modules(root: str, backend: str) -> set[str]:
    folder = os.path.join(root, "xlmr", backend)
    return {f[:-3] for f in os.listdir(folder) if f.endswith(".py") and f != "__init__.py"}


def _entry_points(path: str) -> dict[str, list[str] | None]:
    """``name`` / ``Class.method`` -> argument names (None for a class) of a module's skeleton."""
    found: dict[str, list[str] | None] = {}
    for name, arguments, methods in skeleton(path):
        found[name] = arguments
        for method, method_arguments in methods or ():
            found[f"{name}.{method}"] = method_arguments
    return found


def _check_entry_points(root: str, module: str) -> list[str]:
    """An idiom module: the driver's entry points exist in every backend, with the same arguments for functions."""
    problems = []
    points = {b: _entry_points(os.path.join(root, "xlmr", b, module + ".py")) for b in BACKENDS}
    for name in IDIOM_MODULES[module]:
        missing = [b for b in BACKENDS if name not in points[b]]
        if missing:
            problems.append(f"{module}: {', '.join(missing)} lack(s) {name}, which xlmr/cli/tasks.py calls")
        elif "." not in name and len({tuple(points[b][name] or ()) for b in BACKENDS}) > 1:
            problems.append(f"{module}: {name} takes different arguments: " +
                            "; ".join(f"{b} ({', '.join(points[b][name] or ())})" for b in BACKENDS))
    return problems


def check_mirror(root: str = ".") -> list[str]:
    """Every difference between the backends' skeletons that ALLOWED does not list, one line each."""
    problems = []
    _used.clear()
    present = {b: _modules(root, b) for b in BACKENDS}
    for backend in BACKENDS:
        for module in MODULES:
            if module not in present[backend]:
                problems.append(f"{module}: {backend} has no module xlmr/{backend}/{module}.py")
    for module in sorted(set.union(*present.values())):
        holders = [b for b in BACKENDS if module in present[b]]
        if len(holders) < len(BACKENDS) and module not in MODULES:
            for b in holders:
                if (b, module) not in ALLOWED_MODULES:
                    others = ", ".join(x for x in BACKENDS if x not in holders)
                    problems.append(f"{module}: {b} has module xlmr/{b}/{module}.py, {others} has nothing")
    compared = [m for m in sorted(set.intersection(*present.values())) if m not in IDIOM_MODULES]
    for module in sorted(set(IDIOM_MODULES) & set.intersection(*present.values())):
        problems += _check_entry_points(root, module)
    for module in compared:
        skeletons = {b: _filter(module, b, skeleton(os.path.join(root, "xlmr", b, module + ".py"))) for b in BACKENDS}
        for a, b in itertools.combinations(BACKENDS, 2):
            problems += _compare(module, a, skeletons[a], b, skeletons[b])
    # A stale entry would hide the next real difference of that name: the list must stay exact.
    problems += [f"{key.split(':')[0]}: ALLOWED entry {key} matches nothing; remove it"
                 for key in ALLOWED if key not in _used and key.split(":")[0] in compared]
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = args[0] if args else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    problems = check_mirror(root)
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} difference(s) between the backends; fix them or list them in ALLOWED "
              f"(tools/check_mirror.py) with the reason", file=sys.stderr)
        return 1
    print(f"the {', '.join(BACKENDS)} backends mirror each other")
    return 0


if __name__ == "__main__":
    sys.exit(main())
