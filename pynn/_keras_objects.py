"""What pynn.regularizers and pynn.constraints share: Keras's serialized form of their
objects ({"module": "keras.<kind>s", "class_name", "config", "registered_name": None}) and
the way back, with the refusals naming the layer and the argument."""
from .checks import shown


def where_text(where, default, arg):
    where = where or default
    return f"{where}: received an invalid value for `{arg}`" if arg else where


def serialize(obj, base, kind):
    """Keras's serialized form of `obj`, an instance of `base` (a pynn.<kind>s class);
    None for None."""
    if obj is None:
        return None
    if not isinstance(obj, base):
        raise ValueError(f"{kind}s.serialize: cannot serialize {shown(obj)}: only "
                         f"pynn.{kind}s objects can be saved")
    return {"module": f"keras.{kind}s", "class_name": type(obj).__name__,
            "config": obj.get_config(), "registered_name": None}


def deserialize(config, kind, classes, all_objects, custom_objects, ctx):
    """The object a serialize() dict (or Keras's) describes, its class looked up in
    custom_objects, then all_objects; ValueError starting with `ctx` for anything else."""
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise ValueError(f"{ctx}: expected a {kind} as {{'class_name': ..., 'config': "
                         f"{{...}}}}, received {shown(config)}")
    name = config["class_name"]
    cls = (custom_objects or {}).get(name) or all_objects.get(name)
    inner = config.get("config", {})
    if cls is None or not isinstance(inner, dict):
        raise ValueError(f"{ctx}: could not interpret {kind} identifier {shown(config)}; "
                         f"expected class_name one of {', '.join(sorted(classes))}")
    try:
        return cls.from_config(dict(inner))
    except TypeError as exc:
        raise ValueError(f"{ctx}: {exc}") from None
