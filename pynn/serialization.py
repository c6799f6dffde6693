"""Objects as JSON and back: layers, models, losses, optimizers.

An object is written as Keras 3 writes it, {"module", "class_name", "config",
"registered_name"} (plus a layer's "build_config"), and read back by looking its class
up in an allow-list (pynn's own layers, models, losses and optimizers: nothing named in a
file is imported or run) and calling `cls.from_config(config)`.  Models register their
classes here when pynn.models is imported, so this module depends on no model code.
"""


class ModelFileError(ValueError):
    """A file or config that is not a readable pynn model or weights file (truncated,
    corrupt, foreign, or describing something this pynn cannot rebuild)."""


MAX_LAYERS = 5_000        # layers in one model config: 5x the most any Keras application has

_MODEL_CLASSES = {}       # "Functional" / "Sequential" -> class (registered by pynn.models)


def register_model_class(cls, *names):
    for name in names:
        _MODEL_CLASSES[name] = cls


def model_base_class():
    """pynn.Model (every model class is one)."""
    return _MODEL_CLASSES["Functional"]


def check_layer_count(entries, where):
    if len(entries) > MAX_LAYERS:
        raise ModelFileError(f"{where}: the config lists {len(entries)} layers, more than the "
                             f"{MAX_LAYERS} a pynn model may have")


def layer_classes():
    """The allow-list of layer (and model) classes, by the names files use."""
    from . import layers
    from .layers.base import Layer
    found = {}
    for name in layers.__all__:
        cls = getattr(layers, name, None)
        if isinstance(cls, type) and issubclass(cls, Layer) and cls is not Layer:
            found[cls.__name__] = cls
    found.update(_MODEL_CLASSES)
    from .layers.embedding import NotEqual        # Keras's mask op in saved graphs (G)
    found["NotEqual"] = NotEqual
    return found


def optimizer_classes():
    from . import optimizers
    return dict(optimizers.CLASSES)


def metric_classes():
    from . import metrics
    return dict(metrics.CLASSES)


def loss_classes():
    from . import losses
    return dict(losses.CLASSES)


def class_name(obj):
    """The name a file uses for obj's class (Keras calls a functional model "Functional")."""
    for name, cls in _MODEL_CLASSES.items():
        if type(obj) is cls:
            return name
    return type(obj).__name__


def serialize(obj):
    """{"module", "class_name", "config", "registered_name"} for a layer, model, loss or
    optimizer; layers add "build_config" with the input shape they were built for."""
    module = "pynn.models" if class_name(obj) in _MODEL_CLASSES else \
        f"pynn.{type(obj).__module__.split('.')[1]}"
    entry = {"module": module, "class_name": class_name(obj), "config": obj.get_config(),
             "registered_name": None}
    build_shape = getattr(obj, "build_input_shape", None)
    if class_name(obj) not in _MODEL_CLASSES and isinstance(build_shape, tuple):
        entry["build_config"] = {"input_shape": list(build_shape)}
    return entry


def deserialize(entry, classes, what, where):
    """The object an entry of `serialize` describes, its class looked up in `classes`;
    ModelFileError for anything else (a constructor's refusal of a config value included)."""
    from .checks import is_int, shown
    from .layers.base import check_shape_arg
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str) or \
            not isinstance(entry.get("config", {}), dict):
        raise ModelFileError(f"{where}: expected {what} as {{'class_name': ..., 'config': {{...}}}}, "
                             f"found {shown(entry, 200)}")
    cls = classes.get(entry["class_name"])
    if cls is None:
        raise ModelFileError(f"{where}: unknown {what} class {shown(entry['class_name'], 100)}; "
                             f"this pynn knows {', '.join(sorted(classes))}")
    config = dict(entry.get("config", {}))
    name = config.get("name")
    described = f"{what} {entry['class_name']}" + (f" {shown(name)}" if isinstance(name, str) else "")
    try:
        obj = cls.from_config(config)
    except ModelFileError:
        raise
    except (TypeError, ValueError, LookupError, AttributeError, ArithmeticError,
            RecursionError) as exc:
        raise ModelFileError(f"{where}: cannot rebuild {described}: {exc}") from None
    build = entry.get("build_config")
    if isinstance(build, dict) and build.get("input_shape") is not None and \
            not getattr(obj, "built", True):
        shape = build["input_shape"]
        try:
            if not isinstance(shape, list) or len(shape) < 2 or \
                    not (shape[0] is None or is_int(shape[0]) and shape[0] > 0):
                raise ValueError(f"expected build_config input_shape as [batch, ...features], "
                                 f"found {shown(shape)}")
            features = check_shape_arg(shape[1:], "build_config input_shape", described,
                                       allow_none=True)
            obj._maybe_build((shape[0],) + features)
        except ModelFileError:
            raise
        except (TypeError, ValueError, LookupError, ArithmeticError) as exc:
            raise ModelFileError(f"{where}: cannot build {described}: {exc}") from None
    return obj


def deserialize_layer(entry, where="from_config"):
    """A layer or model from its serialized entry (a bare model config is taken as one)."""
    if isinstance(entry, dict) and "class_name" not in entry and "layers" in entry:
        entry = {"class_name": "Functional" if "input_layers" in entry else "Sequential",
                 "config": entry}
    return deserialize(entry, layer_classes(), "layer", where)
