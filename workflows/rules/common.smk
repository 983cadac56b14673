# Shared set-up of the otbio workflow: config checking (at start, before any job) and the
# small helpers the rule files use. Nothing here computes results: every rule calls `otbio`.

import copy
import glob
import os
import shlex
import shutil

import yaml
from jsonschema import Draft202012Validator, validators


class ConfigError(Exception):
    """A bad workflow config; the message names the key and the fix."""


def _with_defaults(validator_class):
    """A validator that fills in the schema's defaults while it validates."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


def _key(path):
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _describe(err):
    """One line per schema violation, naming the config key."""
    where = _key(err.absolute_path)
    inst = err.instance
    if err.validator == "additionalProperties" and isinstance(inst, dict):
        known = sorted(err.schema.get("properties", {}))
        extra = sorted(set(inst) - set(known))
        name = ", ".join(f"'{_key([*err.absolute_path, k])}'" for k in extra)
        hint = f" (known keys: {', '.join(known)})" if known else ""
        return f"unknown config key {name}{hint}"
    if "propertyNames" in err.relative_schema_path:
        if err.validator == "enum":
            known = ", ".join(map(str, err.validator_value))
            return f"unknown config key '{_key([*err.absolute_path, inst])}' (known keys: {known})"
        return f"config key '{where}': name {inst!r} is not allowed ({err.message})"
    if err.validator == "required":
        missing = err.message.split("'")[1]
        return f"config key '{_key([*err.absolute_path, missing])}' is missing"
    if err.validator in ("minimum", "exclusiveMinimum"):
        op = ">=" if err.validator == "minimum" else ">"
        return f"config key '{where}' must be {op} {err.validator_value} (got {inst!r})"
    if err.validator == "enum":
        choices = ", ".join(map(str, err.validator_value))
        return f"config key '{where}' must be one of {choices} (got {inst!r})"
    if err.validator == "type":
        want = err.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return f"config key '{where}' must be of type {want} (got {inst!r})"
    return f"config key '{where or '<top>'}': {err.message}"


def check_config(cfg, schema_path):
    """Validate `cfg` in place (defaults filled in); raise ConfigError naming each bad key."""
    if not cfg:
        msg = "no config given; pass --configfile (see workflows/config/config.yaml)"
        raise ConfigError(msg)
    with open(schema_path) as fh:
        schema = yaml.safe_load(fh)
    validator = _with_defaults(Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), e.message))
    if errors:
        lines = sorted({_describe(e) for e in errors})
        msg = "bad workflow config: " + "; ".join(lines)
        raise ConfigError(msg)


def check_command(cmd, key):
    """The program that a config key names must be on PATH."""
    prog = shlex.split(cmd)[0]
    if shutil.which(prog) is None:
        msg = f"config key '{key}': command '{prog}' not found on PATH (activate otbio's environment or give the full path)"
        raise ConfigError(msg)


def check_file(path, key):
    """A config key that names an input file must name an existing file."""
    if not os.path.isfile(path):
        msg = f"config key '{key}': file '{path}' not found (relative paths are relative to {os.getcwd()})"
        raise ConfigError(msg)


def check_dir(path, key):
    if not os.path.isdir(path):
        msg = f"config key '{key}': folder '{path}' not found (relative paths are relative to {os.getcwd()})"
        raise ConfigError(msg)


def chunks(items, size):
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def spread(items, k):
    """k items evenly spread over `items` (deterministic)."""
    if k is None or k >= len(items):
        return list(items)
    n = len(items)
    return [items[(i * n) // k] for i in range(k)]


def q(value):
    """Quote a value for the shell."""
    return shlex.quote(str(value))


# --------------------------------------------------------------------------------------------
# resources: defaults per rule, overridden by config["resources"][rule]

DEFAULT_RESOURCES = {
    "lot_reference": {"threads": 4, "mem_mb": 8000, "runtime": 60},
    "lot_embed": {"threads": 4, "mem_mb": 8000, "runtime": 120},
    "lot_concat": {"threads": 1, "mem_mb": 4000, "runtime": 30},
    "lot_classify": {"threads": 2, "mem_mb": 4000, "runtime": 60},
    "lot_distances": {"threads": 2, "mem_mb": 4000, "runtime": 60},
    "lot_report": {"threads": 1, "mem_mb": 500, "runtime": 10},
    "slices_register": {"threads": 4, "mem_mb": 8000, "runtime": 120},
    "slices_stack": {"threads": 1, "mem_mb": 8000, "runtime": 30},
    "search_chunk": {"threads": 4, "mem_mb": 4000, "runtime": 60},
    "search_merge": {"threads": 1, "mem_mb": 1000, "runtime": 10},
}


def res(rule_name, what):
    override = (config.get("resources") or {}).get(rule_name, {})
    return override.get(what, DEFAULT_RESOURCES[rule_name][what])


def otbio_cmd(threads_expr="{threads}"):
    """The otbio prefix with the global options every rule passes."""
    return f"{config['otbio']} --seed {int(config['seed'])} --jobs {threads_expr}"
